'''Modelfiles as Ollama's parser (parser/parser.go) reads them, and their exact text.

The parser's rules: one instruction per line, its name case-insensitive; `#` opens a comment only at
the start of a line; a value runs to the end of its line, is trimmed, then unquoted — `"""…"""` or
`"…"`, with no escapes — and while a quote is still open at the end of a line the value goes on
over the next one. Only printable characters, spaces, tabs and line breaks survive. So `quote`
writes a value bare, in `"…"` or in `"""…"""` (in the order asked), keeping the first form that
reads back unchanged the parser's way; a value no form carries (a line inside it ending in `"""`)
is refused.
'''

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mreg.registry.errors import FormatError

ParameterValue = str | int | float | bool
Form = Literal["bare", "double", "triple"]

PARAMETER_TYPES: dict[str, type] = {
    "num_ctx": int, "num_predict": int, "num_keep": int, "num_batch": int, "num_gpu": int, "main_gpu": int,
    "num_thread": int, "seed": int, "top_k": int, "top_p": float, "min_p": float, "typical_p": float,
    "temperature": float, "repeat_last_n": int, "repeat_penalty": float, "presence_penalty": float,
    "frequency_penalty": float, "stop": str, "use_mmap": bool, "draft_num_predict": int,
}
"""The PARAMETER names Ollama accepts and their types (an unknown name fails `ollama create`)."""


@dataclass(frozen=True)
class Modelfile:
    """What an Ollama model is made of; `render` writes it."""

    model: str
    """FROM: the absolute path of the GGUF file (or a model name)."""
    template: str | None = None
    system: str | None = None
    parameters: tuple[tuple[str, ParameterValue], ...] = ()
    """(name, value) in order; `stop` may repeat."""
    license: str | None = None
    comments: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, value in self.parameters:
            kind = PARAMETER_TYPES.get(name)
            if kind is None:
                raise FormatError(f"unknown Modelfile parameter {name!r}")
            if type(value) is not kind and not (kind is float and type(value) is int):
                raise FormatError(f"Modelfile parameter {name} takes a {kind.__name__}, not {value!r}")

    @property
    def stop(self) -> list[str]:
        return [str(value) for name, value in self.parameters if name == "stop"]

    def options(self) -> dict[str, ParameterValue | list[str]]:
        """The parameters as Ollama keeps them in a model's params layer: `stop` as a list."""
        options: dict[str, ParameterValue | list[str]] = {}
        for name, value in self.parameters:
            if name == "stop":
                options.setdefault("stop", []).append(str(value))  # type: ignore[union-attr]
            else:
                options[name] = value
        return options


def _unquote(text: str) -> tuple[str, bool]:
    """parser.go's unquote of a trimmed value."""
    if text.startswith('"""'):
        return (text[3:-3], True) if len(text) >= 6 and text.endswith('"""') else ("", False)
    if text.startswith('"'):
        return (text[1:-1], True) if len(text) >= 2 and text.endswith('"') else ("", False)
    return text, True


def read_value(text: str) -> tuple[str, int] | None:
    """What the parser reads as a value from ``text`` (all that follows the instruction and its
    space): the value and the characters it took, or None if a quote is still open at the end."""
    kept: list[str] = []
    for i, ch in enumerate(text):
        if ch in "\r\n":
            value, ok = _unquote("".join(kept).strip())
            if ok:
                return value, i
        if ch in " \t\r\n" or ch.isprintable():
            kept.append(ch)
    value, ok = _unquote("".join(kept).strip())
    return (value, len(text)) if ok else None


def quote(value: str, forms: Sequence[Form], what: str) -> str:
    """``value`` in the first of ``forms`` that the parser reads back unchanged, up to its line's end."""
    for form in forms:
        text = {"bare": value, "double": f'"{value}"', "triple": f'"""{value}"""'}[form]
        if read_value(text + "\n") == (value, len(text)):
            return text
    raise FormatError(f"the {what} cannot be written in a Modelfile (it has a line ending in \"\"\" or "
                      f"characters Ollama drops)")


def _parameter(value: ParameterValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return quote(value, ("double", "triple"), "stop word") if isinstance(value, str) else repr(value)


def render(modelfile: Modelfile) -> str:
    """The Modelfile's text: comments, FROM, TEMPLATE, PARAMETER…, SYSTEM, LICENSE."""
    lines = [f"# {line}" for comment in modelfile.comments for line in comment.splitlines()]
    lines.append(f"FROM {quote(modelfile.model, ('bare', 'double'), 'model path')}")
    if modelfile.template is not None:
        lines.append(f"TEMPLATE {quote(modelfile.template, ('triple', 'double'), 'template')}")
    lines += [f"PARAMETER {name} {_parameter(value)}" for name, value in modelfile.parameters]
    if modelfile.system is not None:
        lines.append(f"SYSTEM {quote(modelfile.system, ('triple', 'double'), 'system prompt')}")
    if modelfile.license is not None:
        lines.append(f"LICENSE {quote(modelfile.license, ('triple', 'double'), 'license')}")
    return "\n".join(lines) + "\n"
