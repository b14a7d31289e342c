"""Chat template families: recognising a model's Jinja chat template and giving Ollama's equivalent.

Ollama renders prompts with Go templates over `.Messages` (`.Role`, `.Content`); a Modelfile's
SYSTEM becomes a leading system message when a request has none. Each family here gives such a
template, written to render the same text as the family's Jinja template (minus the BOS token,
which llama.cpp adds), and its stop words. A family is recognised by the special tokens its Jinja
template spells out, most specific family first (Phi-4 and ChatML share `<|im_start|>`; Phi-3 and
Zephyr share `<|user|>`; Mixtral and Mistral share `[INST]`). The mixture-of-experts families use their
dense relatives' formats: Qwen3-MoE is ChatML (Qwen3's template), Mixtral 8x7B its own `mixtral-instruct`.

A default system prompt is one the Jinja template writes as a literal string when the conversation
has no system message (SmolLM2's "You are a helpful AI assistant named SmolLM…", Qwen2.5's "You
are Qwen…"): found in the template's string literals by the family's system-turn pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ChatFamily:
    """A chat format: how to recognise its Jinja template, its Go template and its stop words."""

    name: str
    """Ollama's name for the template (chatml, llama3-instruct, …)."""
    template: str
    stop: tuple[str, ...]
    requires: tuple[str, ...]
    """Every one of these must appear in the Jinja template."""
    any_of: tuple[str, ...] = ()
    """At least one of these must appear too (when given)."""
    system_turn: str | None = None
    """A regex over a decoded string literal whose group 1 is a literal system prompt."""

    def matches(self, jinja: str) -> bool:
        return all(m in jinja for m in self.requires) and (not self.any_of or any(m in jinja for m in self.any_of))


# A system message is kept aside and put where the family wants it (the first user turn after it).
_MERGED_SYSTEM = '{{- $system := "" }}\n{{- range .Messages }}\n{{- if eq .Role "system" }}{{ $system = .Content }}\n'

CHATML = ChatFamily(
    name="chatml",
    template="{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n",
    stop=("<|im_start|>", "<|im_end|>"),
    requires=("<|im_start|>", "<|im_end|>"),
    system_turn=r"<\|im_start\|>system\n(.+?)<\|im_end\|>",
)
PHI4 = ChatFamily(
    name="phi-4",
    template=("{{- range .Messages }}<|im_start|>{{ .Role }}<|im_sep|>{{ .Content }}<|im_end|>\n{{- end }}"
              "<|im_start|>assistant<|im_sep|>"),
    stop=("<|im_start|>", "<|im_end|>", "<|im_sep|>"),
    requires=("<|im_start|>", "<|im_sep|>"),
    system_turn=r"<\|im_start\|>system<\|im_sep\|>(.+?)<\|im_end\|>",
)
LLAMA3 = ChatFamily(
    name="llama3-instruct",
    template=("{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>\n"
              "{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"),
    stop=("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    requires=("<|start_header_id|>", "<|eot_id|>"),
    system_turn=r"<\|start_header_id\|>system<\|end_header_id\|>\n\n(.+?)<\|eot_id\|>",
)
LLAMA2 = ChatFamily(
    name="llama2-chat",
    template=(_MERGED_SYSTEM + '{{- else if eq .Role "user" }}[INST] {{ if $system }}<<SYS>>\n{{ $system }}\n'
              '<</SYS>>\n\n{{ $system = "" }}{{ end }}{{ .Content }} [/INST]\n'
              '{{- else if eq .Role "assistant" }} {{ .Content }} </s><s>\n{{- end }}\n{{- end }}'),
    stop=("[INST]", "[/INST]", "<<SYS>>", "<</SYS>>"),
    requires=("[INST]", "<<SYS>>"),
    system_turn=r"<<SYS>>\n(.+?)\n<</SYS>>",
)
MISTRAL = ChatFamily(
    name="mistral-instruct",
    template=(_MERGED_SYSTEM + '{{- else if eq .Role "user" }}[INST] {{ if $system }}{{ $system }}\n\n'
              '{{ $system = "" }}{{ end }}{{ .Content }} [/INST]\n'
              '{{- else if eq .Role "assistant" }}{{ .Content }}</s>\n{{- end }}\n{{- end }}'),
    stop=("[INST]", "[/INST]"),
    requires=("[INST]", "[/INST]"),
    system_turn=r"\[SYSTEM_PROMPT\](.+?)\[/SYSTEM_PROMPT\]",
)
MIXTRAL = ChatFamily(
    name="mixtral-instruct",
    template=(_MERGED_SYSTEM + '{{- else if eq .Role "user" }} [INST] {{ if $system }}{{ $system }}\n\n'
              '{{ $system = "" }}{{ end }}{{ .Content }} [/INST]\n'
              '{{- else if eq .Role "assistant" }} {{ .Content }}</s>\n{{- end }}\n{{- end }}'),
    stop=("[INST]", "[/INST]"),
    requires=("[INST]", "[/INST]"),
    any_of=("' [INST] '", '" [INST] "'),
)
"""Mixtral 8x7B Instruct's template: Mistral's, with a space before each `[INST]` and each answer."""
_GEMMA_TEMPLATE = (_MERGED_SYSTEM + '{{- else if eq .Role "user" }}<start_of_turn>user\n{{ if $system }}{{ $system }}\n\n'
                   '{{ $system = "" }}{{ end }}{{ .Content }}<end_of_turn>\n'
                   '{{ else if eq .Role "assistant" }}<start_of_turn>model\n{{ .Content }}<end_of_turn>\n'
                   "{{ end }}\n{{- end }}<start_of_turn>model\n")
GEMMA3 = ChatFamily(
    name="gemma3-instruct",
    template=_GEMMA_TEMPLATE,
    stop=("<start_of_turn>", "<end_of_turn>"),
    requires=("<start_of_turn>",),
    any_of=("first_user_prefix", "<start_of_image>"),
)
GEMMA = ChatFamily(name="gemma-instruct", template=_GEMMA_TEMPLATE, stop=("<start_of_turn>", "<end_of_turn>"),
                   requires=("<start_of_turn>",))
PHI3 = ChatFamily(
    name="phi-3",
    template="{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n",
    stop=("<|end|>", "<|system|>", "<|user|>", "<|assistant|>", "<|endoftext|>"),
    requires=("<|user|>", "<|end|>"),
    system_turn=r"<\|system\|>\n(.+?)<\|end\|>",
)
ZEPHYR = ChatFamily(
    name="zephyr",
    template="{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}</s>\n{{ end }}<|assistant|>\n",
    stop=("<|system|>", "<|user|>", "<|assistant|>", "</s>"),
    requires=("<|user|>", "<|assistant|>"),
    system_turn=r"<\|system\|>\n(.+?)</s>",
)
COMMAND_R = ChatFamily(
    name="command-r",
    template=('{{- range .Messages }}<|START_OF_TURN_TOKEN|>\n{{- if eq .Role "system" }}<|SYSTEM_TOKEN|>\n'
              '{{- else if eq .Role "user" }}<|USER_TOKEN|>\n{{- else }}<|CHATBOT_TOKEN|>\n{{- end }}'
              "{{ .Content }}<|END_OF_TURN_TOKEN|>\n{{- end }}<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"),
    stop=("<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>"),
    requires=("<|START_OF_TURN_TOKEN|>", "<|CHATBOT_TOKEN|>"),
    system_turn=r"<\|START_OF_TURN_TOKEN\|><\|SYSTEM_TOKEN\|>(.+?)<\|END_OF_TURN_TOKEN\|>",
)
DEEPSEEK = ChatFamily(
    name="deepseek",
    template=('{{- range .Messages }}\n{{- if eq .Role "system" }}{{ .Content }}\n'
              '{{- else if eq .Role "user" }}<｜User｜>{{ .Content }}\n'
              '{{- else if eq .Role "assistant" }}<｜Assistant｜>{{ .Content }}<｜end▁of▁sentence｜>\n'
              "{{- end }}\n{{- end }}<｜Assistant｜>"),
    stop=("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"),
    requires=("<｜User｜>", "<｜Assistant｜>"),
)

FAMILIES: tuple[ChatFamily, ...] = (DEEPSEEK, COMMAND_R, LLAMA3, PHI4, CHATML, GEMMA3, GEMMA, PHI3, ZEPHYR,
                                    LLAMA2, MIXTRAL, MISTRAL)
"""Tried in this order: a family whose markers another's include comes first."""

_LITERAL = re.compile(r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)\"""", re.S)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}
_DEFAULT_SYSTEM = re.compile(r"""(?:default_)?system_(?:message|prompt)\s*=\s*(?=['"])""")


def recognise(jinja: str) -> ChatFamily | None:
    """The family of a Jinja chat template, or None when it is none of those known."""
    return next((family for family in FAMILIES if family.matches(jinja)), None)


def _decode(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], "\\" + m[1]), body)


def _literals(jinja: str) -> list[tuple[int, str]]:
    """(offset, decoded text) of every quoted string literal of a Jinja template."""
    return [(m.start(), _decode(m[1] if m[1] is not None else m[2])) for m in _LITERAL.finditer(jinja)]


def default_system(jinja: str, family: ChatFamily | None) -> str | None:
    """The system prompt the template writes itself when a conversation has none, if it has one."""
    literals = _literals(jinja)
    if family is not None and family.system_turn is not None:
        turn = re.compile(family.system_turn, re.S)
        for _, text in literals:
            match = turn.search(text)
            if match and match[1].strip():
                return match[1].strip()
    assigned = {m.end() for m in _DEFAULT_SYSTEM.finditer(jinja)}
    return next((text.strip() for offset, text in literals if offset in assigned and text.strip()), None)
