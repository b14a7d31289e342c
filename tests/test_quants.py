"""Quant labels, choosing a repo's GGUF, and `mreg pull --quant` fetching only what it needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mreg.registry.errors import FormatError, UsageError
from mreg.registry.gguf.quants import (
    QuantSet,
    aliases,
    default_quant,
    find_quant,
    gguf_sets,
    labels_agree,
    metadata_files,
    normalize_quant,
    pick,
)
from tests.ggufs import gguf_bytes, gguf_repo, quant_files, split_files
from tests.mreg_cli import mreg
from tests.testhub import TestHub

pytest_plugins = ("tests.mreg_env",)

REPO = "acme/Widget-7B-GGUF"
LABELS = ["Q2_K", "Q4_K_S", "Q4_K_M", "Q8_0", "UD-Q4_K_XL"]
LISTING = [
    ("README.md", 100), ("LICENSE", 11_000), ("config.json", 500), ("tokenizer.json", 9_000_000),
    ("big/tokenizer.json", 10), ("m-Q4_K_M.gguf", 4_000), ("m-q8_0.gguf", 8_000),
    ("Q6_K/m-Q6_K-00002-of-00002.gguf", 3_000), ("Q6_K/m-Q6_K-00001-of-00002.gguf", 3_000),
    ("m-UD-Q4_K_XL.gguf", 4_100), ("mmproj-m-F16.gguf", 600), ("m-IQ4_XS-00001-of-00003.gguf", 1_000),
    ("model.gguf", 5_000), ("imatrix.gguf", 10), ("weights.bin", 10**9),
]


def sets_of(*labels: str | None) -> list[QuantSet]:
    return [QuantSet(f"m{i}.gguf", label, (f"m{i}.gguf",), 1, 1) for i, label in enumerate(labels)]


def test_sets_group_split_parts_and_skip_projectors() -> None:
    sets = {s.name: s for s in gguf_sets(LISTING)}
    assert set(sets) == {"m-Q4_K_M.gguf", "m-q8_0.gguf", "Q6_K/m-Q6_K.gguf", "m-UD-Q4_K_XL.gguf",
                         "m-IQ4_XS.gguf", "model.gguf"}
    assert sets["m-q8_0.gguf"].label == "Q8_0" and sets["m-UD-Q4_K_XL.gguf"].label == "UD-Q4_K_XL"
    split = sets["Q6_K/m-Q6_K.gguf"]
    assert (split.label, split.files, split.size, split.complete) == (
        "Q6_K", ("Q6_K/m-Q6_K-00001-of-00002.gguf", "Q6_K/m-Q6_K-00002-of-00002.gguf"), 6_000, True)
    partial = sets["m-IQ4_XS.gguf"]
    assert not partial.complete and partial.display == "IQ4_XS (only 1 of 3 parts)"
    assert sets["model.gguf"].label is None and sets["model.gguf"].display == "model.gguf"


@pytest.mark.parametrize(("text", "normal"), [
    ("q4_k_m", "Q4_K_M"), (" Q8_0 ", "Q8_0"), ("q4-k-m", "Q4_K_M"), ("ud-q4_k_xl", "UD-Q4_K_XL"),
    ("UD_Q2_K_XL", "UD-Q2_K_XL"), ("iq4_xs", "IQ4_XS"), ("bf16", "BF16"),
])
def test_requests_are_normalised(text: str, normal: str) -> None:
    assert normalize_quant(text) == normal


@pytest.mark.parametrize("text", ["", "q4 k m", "../x", "Q4_K_M;rm", "Q" * 40, "q4__k"])
def test_bad_requests_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="invalid quant"):
        normalize_quant(text)


def test_aliases_follow_ollama() -> None:
    assert aliases("Q4_K") == ("Q4_K", "Q4_K_M", "Q4_K_S", "UD-Q4_K", "UD-Q4_K_M", "UD-Q4_K_S")
    assert aliases("Q8_0") == ("Q8_0", "UD-Q8_0") and aliases("UD-Q4_K_XL") == ("UD-Q4_K_XL",)
    assert find_quant(sets_of("Q4_K_S", "Q4_K_M"), "Q4_K").label == "Q4_K_M"
    assert find_quant(sets_of("Q4_K_S", "Q8_0"), "Q4_K").label == "Q4_K_S"
    assert find_quant(sets_of("UD-Q4_K_XL"), "Q4_K_XL").label == "UD-Q4_K_XL"
    assert find_quant(sets_of("Q2_K", "Q2_K_S"), "Q2_K").label == "Q2_K"
    assert find_quant(sets_of("Q8_0"), "Q6_K") is None


@pytest.mark.parametrize(("labels", "default"), [
    (("Q2_K", "Q4_K_S", "Q4_K_M", "Q8_0"), "Q4_K_M"),
    (("Q8_0", "Q4_0", "Q4_K_S"), "Q4_K_S"),
    (("Q8_0", "IQ4_XS", "Q4_1"), "Q4_1"),
    (("Q8_0", "UD-Q4_K_XL", "Q6_K"), "UD-Q4_K_XL"),
    (("Q8_0", "IQ4_NL", "Q2_K"), "IQ4_NL"),
    (("F16", "Q8_0"), "F16"),
    ((None, "Q8_0"), None),
])
def test_default_quant(labels: tuple[str | None, ...], default: str | None) -> None:
    assert default_quant(sets_of(*labels)).label == default


def test_incomplete_sets_are_never_chosen() -> None:
    sets = [QuantSet("a.gguf", "Q4_K_M", ("a-00001-of-00002.gguf",), 1, 2), *sets_of("Q8_0")]
    assert find_quant(sets, "Q4_K_M") is None and default_quant(sets).label == "Q8_0"


def test_labels_agree_with_headers() -> None:
    assert labels_agree("Q4_K_M", "Q4_K_M") and labels_agree("UD-Q4_K_XL", "Q4_K_M")
    assert labels_agree("Q3_K_XL", "Q3_K_S") and labels_agree(None, "Q8_0") and labels_agree("Q8_0", None)
    assert not labels_agree("Q4_K_M", "Q8_0") and not labels_agree("UD-Q4_K_XL", "Q8_0")


def test_metadata_files_are_small_top_level_ones() -> None:
    assert metadata_files(LISTING) == ["LICENSE", "README.md", "config.json", "tokenizer.json"]
    assert metadata_files([("tokenizer.json", 10**9), ("chat_template.jinja", 10), ("USE_POLICY.md", 5)]) == [
        "USE_POLICY.md", "chat_template.jinja"]


async def test_pick_labels_sets_by_header_and_confirms_the_choice() -> None:
    types = {"model.gguf": "Q8_0", "m-Q4_K_M.gguf": "Q4_K_M"}
    read: list[str] = []

    async def reader(path: str) -> str | None:
        read.append(path)
        return types.get(path)

    sets = gguf_sets([("model.gguf", 10), ("m-Q4_K_M.gguf", 10)])
    choice = await pick(sets, "Q8_0", reader)
    assert choice.quant.files == ("model.gguf",) and choice.file_type == "Q8_0" and read == ["model.gguf"]
    assert choice.available == ("Q4_K_M", "Q8_0")
    choice = await pick(sets, None, reader)
    assert choice.quant.label == "Q4_K_M" and read == ["model.gguf", "model.gguf", "m-Q4_K_M.gguf"]
    assert (await pick(sets, "Q6_K", reader)).quant is None


async def test_pick_refuses_a_name_its_header_contradicts() -> None:
    async def reader(path: str) -> str | None:
        return "Q8_0"

    with pytest.raises(FormatError, match="m-Q4_K_M.gguf is named Q4_K_M but its header says general.file_type Q8_0"):
        await pick(gguf_sets([("m-Q4_K_M.gguf", 10)]), "Q4_K_M", reader)


# -- against the test hub ------------------------------------------------------------------------------

def add_widget(hub: TestHub, extra: dict[str, bytes | str] | None = None) -> dict[str, bytes | str]:
    files: dict[str, bytes | str] = {
        "README.md": "---\nlicense: mit\n---\n# Widget GGUF\n", "config.json": '{"model_type": "llama"}\n',
        "notes/big.bin": b"x" * 100_000, **quant_files("Widget-7B", LABELS), **(extra or {})}
    hub.add_repo(gguf_repo(REPO, files))
    return files


def served(hub: TestHub, files: dict[str, bytes | str], path: str) -> int:
    """Body bytes the hub and its CDN sent of one file of REPO."""
    return hub.stats.bytes_by_sha256[hub.repo(REPO).head.files[path].blob.sha256]


def test_pull_quant_fetches_only_that_gguf_and_small_files(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    files = add_widget(test_hub)
    code, out, err = mreg("pull", REPO, "--quant", "q4_k", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["quant"] == "Q4_K_M" and data["gguf"] == ["Widget-7B-Q4_K_M.gguf"] and data["repo"] == REPO
    assert sorted(f["path"] for f in data["files"]) == ["README.md", "Widget-7B-Q4_K_M.gguf", "config.json"]
    assert f"mreg: {REPO}: Q4_K_M (Widget-7B-Q4_K_M.gguf) for Q4_K (Q4_K_M or Q4_K_S)\n" in err
    for path in files:
        if path.endswith(".gguf") and "Q4_K_M" not in path or path == "notes/big.bin":
            assert served(test_hub, files, path) == 0, path
    chosen = len(files["Widget-7B-Q4_K_M.gguf"])
    assert chosen <= served(test_hub, files, "Widget-7B-Q4_K_M.gguf") <= 2 * chosen  # header check + download
    snapshot = Path(data["path"])
    assert (snapshot / "Widget-7B-Q4_K_M.gguf").read_bytes() == files["Widget-7B-Q4_K_M.gguf"]


def test_plain_pull_of_a_repo_of_quants_takes_the_default(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    files = add_widget(test_hub)
    code, out, err = mreg("pull", REPO, "--json")
    assert code == 0, err
    assert json.loads(out)["gguf"] == ["Widget-7B-Q4_K_M.gguf"] and "the default quant among" in err
    assert served(test_hub, files, "Widget-7B-Q8_0.gguf") == 0
    code, out, err = mreg("pull", REPO, "--include", "*", "--json")
    assert code == 0 and "quant" not in json.loads(out)
    assert {f["path"] for f in json.loads(out)["files"]} == set(files)


def test_pull_quant_of_a_split_set_and_of_an_unlabelled_file(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    add_widget(test_hub, {**split_files("Widget-7B", "Q6_K", 3, folder="Q6_K/"), "model.gguf": gguf_bytes("Q5_K_M")})
    code, out, err = mreg("pull", REPO, "--quant", "Q6_K", "--json")
    assert code == 0, err
    assert json.loads(out)["gguf"] == [f"Q6_K/Widget-7B-Q6_K-{n:05d}-of-00003.gguf" for n in (1, 2, 3)]
    code, out, err = mreg("pull", REPO, "--quant", "q5_k_m", "--json")
    assert code == 0 and json.loads(out)["gguf"] == ["model.gguf"], err


def test_missing_quant_lists_what_there_is(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    add_widget(test_hub)
    code, out, err = mreg("pull", REPO, "--quant", "Q3_K_L")
    assert code == 3 and out == "" and err.count("\n") == 1
    assert err == (f"mreg: error: {REPO} has no Q3_K_L GGUF; it has Q2_K, Q4_K_M, Q4_K_S, Q8_0, UD-Q4_K_XL\n")
    code, _, err = mreg("pull", REPO, "--quant", "Q4_K_M", "--include", "*.gguf")
    assert code == 2 and "--quant picks the files itself" in err
    code, _, err = mreg("pull", REPO, "--quant", "not a quant")
    assert code == 2 and "invalid quant" in err


def test_a_lying_file_name_is_refused(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    test_hub.add_repo(gguf_repo(REPO, {"m-Q4_K_M.gguf": gguf_bytes("Q8_0"), "m-Q8_0.gguf": gguf_bytes("Q8_0", seed=1)}))
    code, _, err = mreg("pull", REPO, "--quant", "Q4_K_M")
    assert code == 4 and "named Q4_K_M but its header says general.file_type Q8_0" in err


def test_offline_quant_pull_answers_from_the_store(test_hub: TestHub, mreg_env: dict[str, str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    add_widget(test_hub)
    code, first, err = mreg("pull", REPO, "--quant", "Q4_K_M")
    assert code == 0, err
    test_hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = mreg("pull", REPO, "--quant", "q4_k_m")
    assert code == 0 and out == first, err
    code, _, err = mreg("pull", REPO, "--quant", "Q8_0")
    assert code == 5 and "not in the local store" in err
