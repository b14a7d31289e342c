"""A small Go text/template interpreter: the subset Ollama chat templates use, for tests.

Supported: text; actions with `{{- ` / ` -}}` trimming; `.`, `.Field`, `$`, `$.Field`, `$x`,
`$x.Field`; string and integer literals; `$x := …` and `$x = …`; the functions eq, ne, and, or, not,
len, slice, index, with parenthesised arguments; `if` / `else if` / `else` / `end`;
`range [$i, $v :=] …` / `end`. Variables are scoped to their block, assignment reaches the
declaring scope, as in Go. Anything else raises TemplateError, so a template needing more fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

_ACTION = re.compile(r"\{\{(-[ \t\r\n])?(.*?)([ \t\r\n]-)?\}\}", re.S)
_TOKEN = re.compile(r"""\s*(?:("(?:[^"\\]|\\.)*")|(-?\d+)|(:=|=|\(|\)|,)|(\$?[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*|\$(?:\.[A-Za-z_]\w*)*|\.(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)?))""")
_GO_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}

Node = tuple[Any, ...]


class TemplateError(Exception):
    pass


def _tokens(action: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(action.rstrip()):
        match = _TOKEN.match(action, pos)
        if not match or match.end() == pos:
            raise TemplateError(f"cannot read {action[pos:]!r}")
        tokens.append(next(g for g in match.groups() if g is not None))
        pos = match.end()
    return tokens


def _lex(source: str) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    pos = 0
    for match in _ACTION.finditer(source):
        text = source[pos : match.start()]
        if match[1]:
            text = text.rstrip(" \t\r\n")
        items.append(("text", text))
        items.append(("action", _tokens(match[2])))
        pos = match.end()
        if match[3]:
            while pos < len(source) and source[pos] in " \t\r\n":
                pos += 1
    items.append(("text", source[pos:]))
    return [(kind, value) for kind, value in items if kind == "action" or value]


class _Parser:
    def __init__(self, source: str) -> None:
        self.items, self.pos = _lex(source), 0

    def block(self, stops: tuple[str, ...]) -> tuple[list[Node], list[str] | None]:
        nodes: list[Node] = []
        while self.pos < len(self.items):
            kind, value = self.items[self.pos]
            self.pos += 1
            if kind == "text":
                nodes.append(("text", value))
            elif value[0] in ("end", "else"):
                if value[0] not in stops:
                    raise TemplateError(f"unexpected {value[0]}")
                return nodes, value
            elif value[0] == "if":
                nodes.append(self._if(value[1:]))
            elif value[0] == "range":
                nodes.append(self._range(value[1:]))
            else:
                nodes.append(("action", value))
        if stops:
            raise TemplateError("unclosed block")
        return nodes, None

    def _if(self, condition: list[str]) -> Node:
        branches: list[tuple[list[str], list[Node]]] = []
        otherwise: list[Node] = []
        body, end = self.block(("end", "else"))
        branches.append((condition, body))
        while end is not None and end[0] == "else":
            if end[1:2] == ["if"]:
                condition = end[2:]
                body, end = self.block(("end", "else"))
                branches.append((condition, body))
            else:
                otherwise, end = self.block(("end",))
        return ("if", branches, otherwise)

    def _range(self, tokens: list[str]) -> Node:
        names: list[str] = []
        if ":=" in tokens:
            split = tokens.index(":=")
            names = [t for t in tokens[:split] if t != ","]
            tokens = tokens[split + 1 :]
        body, _ = self.block(("end",))
        return ("range", names, tokens, body)


def _truth(value: Any) -> bool:
    return bool(value)


FUNCS: dict[str, Callable[..., Any]] = {
    "eq": lambda a, *rest: any(a == b for b in rest),
    "ne": lambda a, b: a != b,
    "not": lambda a: not _truth(a),
    "len": len,
    "slice": lambda x, *ij: x[slice(*ij)],
    "index": lambda x, i: x[i],
}


class _Run:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.out: list[str] = []

    def lookup(self, scopes: list[dict[str, Any]], name: str) -> dict[str, Any]:
        for scope in reversed(scopes):
            if name in scope:
                return scope
        raise TemplateError(f"undefined variable {name}")

    def operand(self, token: str, dot: Any, scopes: list[dict[str, Any]]) -> Any:
        if token.startswith('"'):
            return re.sub(r"\\(.)", lambda m: _GO_ESCAPES[m[1]], token[1:-1])
        if re.fullmatch(r"-?\d+", token):
            return int(token)
        head, *fields = token.split(".")
        if token.startswith("$"):
            value = self.root if head == "$" else self.lookup(scopes, head)[head]
        elif token.startswith("."):
            value, fields = dot, [f for f in fields if f]
        else:
            raise TemplateError(f"unknown function or value {token!r}")
        for field in fields:
            if not isinstance(value, Mapping) or field not in value:
                raise TemplateError(f"no field {field} in {value!r}")
            value = value[field]
        return value

    def command(self, tokens: list[str], dot: Any, scopes: list[dict[str, Any]]) -> Any:
        args: list[Any] = []
        i = 0
        while i < len(tokens):
            if tokens[i] == "(":
                depth, j = 1, i + 1
                while depth:
                    depth += {"(": 1, ")": -1}.get(tokens[j], 0)
                    j += 1
                args.append(("value", self.command(tokens[i + 1 : j - 1], dot, scopes)))
                i = j
            else:
                args.append(("token", tokens[i]))
                i += 1
        kind, first = args[0]
        if kind == "token" and first in ("and", "or"):
            values = [self.evaluate(a, dot, scopes) for a in args[1:]]
            pick = (lambda v: not _truth(v)) if first == "and" else _truth
            return next((v for v in values if pick(v)), values[-1])
        if kind == "token" and first in FUNCS:
            return FUNCS[first](*(self.evaluate(a, dot, scopes) for a in args[1:]))
        if len(args) != 1:
            raise TemplateError(f"cannot call {first!r}")
        return self.evaluate(args[0], dot, scopes)

    def evaluate(self, arg: tuple[str, Any], dot: Any, scopes: list[dict[str, Any]]) -> Any:
        kind, value = arg
        return value if kind == "value" else self.operand(value, dot, scopes)

    def execute(self, nodes: list[Node], dot: Any, scopes: list[dict[str, Any]]) -> None:
        for node in nodes:
            if node[0] == "text":
                self.out.append(node[1])
            elif node[0] == "action":
                tokens = node[1]
                if len(tokens) > 1 and tokens[0].startswith("$") and tokens[1] in (":=", "="):
                    value = self.command(tokens[2:], dot, scopes)
                    target = scopes[-1] if tokens[1] == ":=" else self.lookup(scopes, tokens[0])
                    target[tokens[0]] = value
                else:
                    value = self.command(tokens, dot, scopes)
                    self.out.append(("true" if value else "false") if isinstance(value, bool) else str(value))
            elif node[0] == "if":
                for condition, body in node[1]:
                    if _truth(self.command(condition, dot, scopes)):
                        self.execute(body, dot, [*scopes, {}])
                        break
                else:
                    self.execute(node[2], dot, [*scopes, {}])
            else:
                _, names, tokens, body = node
                for i, item in enumerate(self.command(tokens, dot, scopes)):
                    scope = dict(zip(names, [i, item] if len(names) == 2 else [item], strict=False))
                    self.execute(body, item, [*scopes, scope])


def render_go(template: str, data: Mapping[str, Any]) -> str:
    """Execute ``template`` over ``data`` (dot and ``$``)."""
    nodes, _ = _Parser(template).block(())
    run = _Run(data)
    run.execute(nodes, data, [{}])
    return "".join(run.out)


def ollama_messages(messages: list[dict[str, str]], system: str | None) -> dict[str, Any]:
    """The data Ollama gives a chat template: the Modelfile's SYSTEM leads when no message is a system one."""
    if system and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": system}, *messages]
    return {"Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]}
