"""Ollama's Modelfile parser, ported rune by rune from parser/parser.go, plus the parameter checks
`ollama create` makes (api.FormatParams): what every Modelfile mreg writes must get through."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

INSTRUCTIONS = frozenset({"from", "parameter", "template", "system", "adapter", "license", "message", "requires",
                          "draft", "renderer", "parser"})
ROLES = frozenset({"system", "user", "assistant"})
PARAMETERS: dict[str, str] = {
    "num_ctx": "int", "num_predict": "int", "num_keep": "int", "num_batch": "int", "num_gpu": "int",
    "main_gpu": "int", "num_thread": "int", "seed": "int", "top_k": "int", "top_p": "float", "min_p": "float",
    "typical_p": "float", "temperature": "float", "repeat_last_n": "int", "repeat_penalty": "float",
    "presence_penalty": "float", "frequency_penalty": "float", "stop": "[]string", "use_mmap": "bool",
    "draft_num_predict": "int",
}
NIL, NAME, VALUE, PARAMETER, MESSAGE, COMMENT = range(6)


class ModelfileError(ValueError):
    pass


def _is_alpha(r: str) -> bool:
    return "a" <= r <= "z" or "A" <= r <= "Z"


def _state(r: str, current: int) -> tuple[int, str | None]:
    """parseRuneForState: the next state and the rune to keep (None: keep nothing)."""
    space, newline = r in " \t", r in "\r\n"
    if current == NIL:
        return (COMMENT, None) if r == "#" else (NIL, None) if space or newline else (NAME, r)
    if current == NAME:
        if _is_alpha(r):
            return NAME, r
        if space:
            return VALUE, None
        raise ModelfileError("invalid command")
    if current == VALUE:
        return (NIL, r) if newline or space else (VALUE, r)
    if current in (PARAMETER, MESSAGE):
        if _is_alpha(r) or (current == PARAMETER and (r.isdigit() and r.isascii() or r == "_")):
            return current, r
        if space:
            return VALUE, None
        raise ModelfileError("unexpected EOF")
    return (NIL, None) if newline else (COMMENT, None)


def _unquote(s: str) -> tuple[str, bool]:
    if s.startswith('"""'):
        return (s[3:-3], True) if len(s) >= 6 and s.endswith('"""') else ("", False)
    if s.startswith('"'):
        return (s[1:-1], True) if len(s) >= 2 and s.endswith('"') else ("", False)
    return s, True


def parse(text: str) -> list[tuple[str, str]]:
    """(name, args) of every command: `model` for FROM, the parameter's name for PARAMETER."""
    commands: list[tuple[str, str]] = []
    current, buf, name, role = NIL, "", "", ""
    for r in text:
        nxt, kept = _state(r, current)
        if nxt != current:
            if current == NAME:
                word = buf.lower()
                if word not in INSTRUCTIONS:
                    raise ModelfileError(f"invalid command {buf!r}")
                if word == "parameter":
                    nxt = PARAMETER
                else:
                    nxt = MESSAGE if word == "message" else nxt
                    name = "model" if word == "from" else word
            elif current == PARAMETER:
                name = buf
            elif current == MESSAGE:
                if buf not in ROLES:
                    raise ModelfileError(f"invalid message role {buf!r}")
                role = buf
            elif current == VALUE:
                value, ok = _unquote(buf.strip())
                if not ok or r in " \t":
                    buf += r
                    continue
                commands.append((name, f"{role}: {value}" if role else value))
                role = ""
            buf, current = "", nxt
        if kept is not None and kept.isprintable():
            buf += kept
    if current == VALUE:
        value, ok = _unquote(buf.strip())
        if not ok:
            raise ModelfileError("unexpected EOF in a quoted value")
        commands.append((name, f"{role}: {value}" if role else value))
    elif current not in (NIL, COMMENT):
        raise ModelfileError("unexpected EOF")
    if not any(n == "model" for n, _ in commands):
        raise ModelfileError("no FROM line")
    return commands


@dataclass
class ParsedModelfile:
    """A Modelfile as `ollama create` takes it in."""

    model: str
    template: str | None = None
    system: str | None = None
    licenses: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)


def _typed(name: str, value: str) -> object:
    kind = PARAMETERS.get(name)
    if kind is None:
        raise ModelfileError(f"unknown parameter {name!r}")
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        if value.lower() not in ("1", "t", "true", "0", "f", "false"):
            raise ModelfileError(f"bad bool {value!r}")
        return value.lower() in ("1", "t", "true")
    return value


def load(text: str) -> ParsedModelfile:
    """Parse and check a Modelfile as `ollama create` does (parameters typed, unknown names refused)."""
    commands = parse(text)
    parsed = ParsedModelfile(model=next(v for n, v in commands if n == "model"))
    for name, value in commands:
        if name == "template":
            parsed.template = value
        elif name == "system":
            parsed.system = value
        elif name == "license":
            parsed.licenses.append(value)
        elif name not in ("model", "adapter", "message", "requires", "draft", "renderer", "parser"):
            typed = _typed(name, value)
            if name == "stop":
                parsed.parameters.setdefault("stop", []).append(typed)
            else:
                parsed.parameters[name] = typed
    return parsed
