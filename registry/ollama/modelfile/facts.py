"""What a pulled GGUF and its repo's small files say that a Modelfile or Ollama's store needs.

The GGUF header comes first (architecture, file type, context length, chat template, license);
the repo's files fill the gaps: the chat template from `tokenizer_config.json`,
`chat_template.jinja` or `chat_template.json`, the license from a LICENSE file or the README's
front matter. Synchronous: callers run `read_facts` in a thread.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mreg.registry.formats.summary import gguf_info, summarize
from mreg.registry.inspect.reading import parse_local

LICENSE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "LICENCE.txt")
TEXT_LIMIT = 1024 * 1024
"""Bytes read at most of a LICENSE, README or template file."""
_FRONT_KEY = re.compile(r"^([A-Za-z_][\w-]*):\s*(.*?)\s*$")


@dataclass(frozen=True)
class ModelFacts:
    """The model as its files describe it; None where none of them says."""

    architecture: str | None
    file_type: str | None
    model_type: str | None
    """The size as Ollama shows it: `general.size_label`, else the parameter count (`134.52M`)."""
    context_length: int | None
    chat_template: str | None
    chat_template_source: str | None
    license: str | None


def human_number(n: int) -> str:
    """A parameter count as Ollama's format.HumanNumber writes it (7B, 7.6B, 135M, 134.52M, 33K)."""
    for scale, suffix, decimals in ((1e9, "B", 1), (1e6, "M", 2), (1e3, "K", 0)):
        if n >= scale:
            number = n / scale
            return f"{number:.0f}{suffix}" if number == math.floor(number) else f"{number:.{decimals}f}{suffix}"
    return str(n)


def _text(path: Path | None) -> str | None:
    if path is None or not path.is_file():
        return None
    with path.open("rb") as f:
        return f.read(TEXT_LIMIT).decode("utf-8", errors="replace")


def _template_from_config(data: Any) -> str | None:
    """`chat_template` of tokenizer_config.json / chat_template.json: a string, or named templates."""
    template = data.get("chat_template") if isinstance(data, dict) else None
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default", next(iter(named.values()), None))
    return template if isinstance(template, str) and template.strip() else None


def chat_template(files: Mapping[str, Path], from_gguf: str | None) -> tuple[str | None, str | None]:
    """The chat template and where it came from: the GGUF, else the repo's template files."""
    if from_gguf and from_gguf.strip():
        return from_gguf, "gguf"
    for name in ("tokenizer_config.json", "chat_template.json"):
        text = _text(files.get(name))
        if text is not None:
            try:
                found = _template_from_config(json.loads(text))
            except ValueError:
                continue
            if found:
                return found, name
    jinja = _text(files.get("chat_template.jinja"))
    return (jinja, "chat_template.jinja") if jinja and jinja.strip() else (None, None)


def front_matter(readme: str) -> dict[str, str]:
    """The top-level `key: value` scalars of a README's YAML front matter."""
    lines = readme.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    found: dict[str, str] = {}
    for line in lines[1:]:
        if line.strip() == "---":
            break
        match = _FRONT_KEY.match(line)
        if match and match[2]:
            found[match[1]] = match[2].strip("'\"")
    return found


def license_text(files: Mapping[str, Path], from_gguf: str | None) -> str | None:
    """The repo's license: a LICENSE file's text, else the README's `license:` (`other` names its
    `license_name` and `license_link`), else the GGUF's `general.license`."""
    for name in LICENSE_FILES:
        text = _text(files.get(name))
        if text and text.strip():
            return text.strip()
    card = front_matter(_text(files.get("README.md")) or "")
    identifier = card.get("license")
    if identifier == "other" and card.get("license_name"):
        identifier = card["license_name"]
    if identifier:
        link = card.get("license_link")
        return f"{identifier} ({link})" if link else identifier
    return from_gguf.strip() if from_gguf and from_gguf.strip() else None


def read_facts(files: Mapping[str, Path], parts: Sequence[str]) -> ModelFacts:
    """The facts of a pulled model: ``files`` maps repo paths to local files, ``parts`` are its GGUF
    part(s) in order (the first holds the metadata)."""
    headers = [parse_local(files[part], name=part) for part in parts]
    info = gguf_info(headers[0].metadata)
    size_label = headers[0].metadata.get("general.size_label")
    parameters = sum(summarize(h).parameters for h in headers)
    template, source = chat_template(files, info.chat_template)
    gguf_license = headers[0].metadata.get("general.license")
    return ModelFacts(
        architecture=info.architecture,
        file_type=info.file_type,
        model_type=size_label if isinstance(size_label, str) and size_label else human_number(parameters),
        context_length=info.context_length,
        chat_template=template,
        chat_template_source=source,
        license=license_text(files, gguf_license if isinstance(gguf_license, str) else None),
    )
