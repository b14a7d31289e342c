"""`mreg ollama`: the Ollama store written directly, and `ollama create` run when ollama is installed."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from mreg.registry.ollama import store as ollama_store
from mreg.registry.errors import UsageError
from mreg.registry.ollama.modelfile import ModelFacts, Modelfile
from mreg.registry.ollama.modelfile.templates import CHATML
from mreg.registry.ollama.store import OllamaName, default_name, models_dir, write_model
from mreg.registry.repo import RepoRef
from tests.ggufs import gguf_bytes, gguf_repo, split_files
from tests.modelfile_parser import load
from tests.mreg_cli import mreg
from tests.testhub import TestHub

pytest_plugins = ("tests.mreg_env",)

SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LAYER = "application/vnd.ollama.image."


def blob(root: Path, digest: str) -> Path:
    assert digest.startswith("sha256:")
    return root / "blobs" / f"sha256-{digest.removeprefix('sha256:')}"


def check_store(root: Path, name: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, bytes]]:
    """The manifest, config and layers (by media type) of a model, after checking every digest."""
    model, _, tag = name.partition(":")
    manifest = json.loads((root / "manifests" / "registry.ollama.ai" / "library" / model / (tag or "latest")).read_text())
    assert set(manifest) == {"schemaVersion", "mediaType", "config", "layers"}
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    contents = {}
    for entry in [manifest["config"], *manifest["layers"]]:
        assert set(entry) == {"mediaType", "digest", "size"}
        data = blob(root, entry["digest"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["digest"].removeprefix("sha256:") and len(data) == entry["size"]
        assert stat.S_IMODE(blob(root, entry["digest"]).stat().st_mode) & 0o444 == 0o444
        contents[entry["mediaType"]] = data
    config = json.loads(contents[manifest["config"]["mediaType"]])
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"] for layer in manifest["layers"]]}
    return manifest, config, contents


def test_direct_write_of_the_real_smollm(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    code, out, err = mreg("ollama", SMOLLM, "--direct")
    assert code == 0, err
    assert out == "smollm2-135m-instruct:latest\n"
    root = Path(mreg_env["OLLAMA_MODELS"])
    assert f"wrote smollm2-135m-instruct:latest into the Ollama store {root}" in err
    manifest, config, layers = check_store(root, "smollm2-135m-instruct")
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        LAYER + kind for kind in ("model", "template", "system", "params", "license")]
    assert {k: config[k] for k in ("model_format", "model_family", "model_families", "model_type", "file_type")} == {
        "model_format": "gguf", "model_family": "llama", "model_families": ["llama"], "model_type": "135M",
        "file_type": "Q4_1"}
    assert config["os"] == "linux" and config["architecture"] in ("amd64", "arm64")
    source = test_hub.repo(SMOLLM).head.files[GGUF].blob
    assert manifest["layers"][0]["digest"] == f"sha256:{source.sha256}" and manifest["layers"][0]["size"] == source.size
    assert layers[LAYER + "template"].decode() == CHATML.template
    assert json.loads(layers[LAYER + "params"]) == {"stop": ["<|im_start|>", "<|im_end|>"], "num_ctx": 8192}
    assert layers[LAYER + "system"].startswith(b"You are a helpful AI assistant named SmolLM")
    assert layers[LAYER + "license"] == b"apache-2.0"
    mreg_blob = Path(mreg_env["MREG_HOME"]) / "blobs" / "sha256" / source.sha256[:2] / source.sha256
    assert blob(root, manifest["layers"][0]["digest"]).stat().st_ino == mreg_blob.stat().st_ino  # hard link

    cdn = test_hub.stats.cdn_bytes
    code, out, err = mreg("ollama", SMOLLM, "--direct", "--name", "tools/smol:q4_1", "--json")
    assert code == 0 and test_hub.stats.cdn_bytes == cdn, err  # nothing downloaded again
    data = json.loads(out)
    assert data["name"] == "tools/smol:q4_1" and data["method"] == "direct" and data["quant"] == "Q4_1"
    assert data["manifest"] == str(root / "manifests" / "registry.ollama.ai" / "tools" / "smol" / "q4_1")
    assert len(list((root / "blobs").iterdir())) == 6  # the same blobs serve both names


def test_without_ollama_installed_the_store_is_written(test_hub: TestHub, mreg_env: dict[str, str],
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    code, out, err = mreg("ollama", SMOLLM, "--json")
    assert code == 0, err
    assert json.loads(out)["method"] == "direct"
    check_store(Path(mreg_env["OLLAMA_MODELS"]), "smollm2-135m-instruct")


def fake_ollama(folder: Path, exit_code: int = 0) -> Path:
    """An `ollama` that records its arguments and the Modelfile it was given."""
    folder.mkdir(exist_ok=True)
    script = folder / "ollama"
    script.write_text(f"""#!{sys.executable}
import json, sys
args = sys.argv[1:]
modelfile = open(args[args.index("-f") + 1]).read()
open({str(folder / "call.json")!r}, "w").write(json.dumps({{"args": args, "modelfile": modelfile}}))
print("transferring model data\\nError: something broke" if {exit_code} else "success")
sys.exit({exit_code})
""")
    script.chmod(0o755)
    return folder / "call.json"


def test_with_ollama_installed_ollama_create_runs(test_hub: TestHub, mreg_env: dict[str, str], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    call = fake_ollama(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    code, out, err = mreg("ollama", SMOLLM, "--name", "smol", "--json")
    assert code == 0, err
    assert json.loads(out)["method"] == "ollama create"
    recorded = json.loads(call.read_text())
    assert recorded["args"][:3] == ["create", "smol:latest", "-f"]
    parsed = load(recorded["modelfile"])
    assert Path(parsed.model).is_file() and parsed.template == CHATML.template
    assert not Path(mreg_env["OLLAMA_MODELS"]).exists()

    fake_ollama(tmp_path / "bin", exit_code=1)
    code, out, err = mreg("ollama", SMOLLM)
    assert code == 1 and out == "" and err.count("mreg: error:") == 1
    assert err.splitlines()[-1].startswith(
        "mreg: error: ollama create smollm2-135m-instruct:latest failed (exit 1): Error: something broke")


def test_split_sets_cannot_go_into_the_store_directly(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    test_hub.add_repo(gguf_repo("org/split-GGUF", split_files("m", "Q4_K_M", 2)))
    code, _, err = mreg("ollama", "org/split-GGUF", "--direct")
    assert code == 2 and "split in 2 files, which Ollama's store cannot hold as one model" in err
    code, _, err = mreg("ollama", SMOLLM, "--direct", "--name", "../up")
    assert code == 2 and "invalid Ollama model name" in err


def test_names() -> None:
    assert str(OllamaName.parse("smol")) == "smol:latest" and str(OllamaName.parse("me/smol:q4")) == "me/smol:q4"
    assert OllamaName.parse("me/smol:q4").manifest_path(Path("/m")) == Path(
        "/m/manifests/registry.ollama.ai/me/smol/q4")
    for bad in ("", ":x", "a/b/c", "a b", "smol:", "x" * 81, "-x"):
        if bad != "smol:":
            with pytest.raises(UsageError):
                OllamaName.parse(bad)
    assert str(OllamaName.parse("smol:")) == "smol:latest"
    assert str(default_name(RepoRef.parse("bartowski/Llama-3.2-1B-Instruct-GGUF"))) == "llama-3.2-1b-instruct:latest"
    assert str(default_name(RepoRef.parse("Qwen/Qwen2-7B"))) == "qwen2-7b:latest"
    assert models_dir({"OLLAMA_MODELS": "/srv/ollama"}) == Path("/srv/ollama")
    assert models_dir({}) == Path.home() / ".ollama" / "models"


def test_across_filesystems_the_gguf_is_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "m.gguf"
    source.write_bytes(gguf_bytes("Q8_0"))
    source.chmod(0o444)

    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(ollama_store.os, "link", no_link)
    facts = ModelFacts("qwen2", "Q8_0", "7.6B", 4096, None, None, None)
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    model = write_model(tmp_path / "ollama", OllamaName.parse("x"), source, sha, Modelfile(str(source)), facts)
    manifest, config, _ = check_store(tmp_path / "ollama", "x")
    assert [layer["mediaType"] for layer in manifest["layers"]] == [LAYER + "model"] and model.config == config
    copy = blob(tmp_path / "ollama", manifest["layers"][0]["digest"])
    assert copy.stat().st_ino != source.stat().st_ino and stat.S_IMODE(copy.stat().st_mode) == 0o644
    assert (config["model_family"], config["model_type"], config["file_type"]) == ("qwen2", "7.6B", "Q8_0")
    assert not [p for p in (tmp_path / "ollama").rglob("*") if p.name.endswith(".tmp")]
