"""GGUF quants of a repo: labels from file names, requests normalised, a file set chosen and
confirmed by its header.

A *quant set* is one quant's GGUF file, or every part of a split set (`m-Q8_0-00001-of-00003.gguf`
…). Labels come from file names as the Hub reads them (`quant_label_from_filename`); a set whose
name carries none is labelled by its header's `general.file_type`. Requests are case-insensitive;
`q4_k` means Q4_K_M (Ollama's alias) and falls back to Q4_K_S. With no request the default is Q4_K_M,
else the first of `DEFAULT_ORDER`, else any Q4, else the first set by path.

Everything here is pure except `pick`, which reads headers through the `FileTypeReader` it is given
(`remote_reader` reads them over HTTP ranges; callers may read local files instead).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from mreg.registry.errors import FormatError, UsageError
from mreg.registry.formats.summary import gguf_info, quant_label_from_filename
from mreg.registry.upstream.client import RepoClient
from mreg.registry.inspect.reading import parse_remote
from mreg.registry.repo import RepoRef

DEFAULT_QUANT = "Q4_K_M"
DEFAULT_ORDER = ("Q4_K_M", "Q4_K_S", "Q4_0", "Q4_1", "IQ4_XS", "IQ4_NL", "UD-Q4_K_XL", "Q4_K_XL")
"""The default quant when none is asked, in order of preference; then any other Q4, then the first."""
METADATA_MAX = 64 * 1024 * 1024
"""Metadata files larger than this are not fetched with a GGUF (a Gemma 3 tokenizer.json is 33 MB)."""
METADATA_NAMES = frozenset({
    "readme.md", "config.json", "generation_config.json", "params.json", "tokenizer_config.json",
    "tokenizer.json", "tokenizer.model", "special_tokens_map.json", "chat_template.jinja", "chat_template.json",
})
_LICENSE = re.compile(r"^(?:license|licence|copying|notice|use_policy)(?:[._-][\w.-]*)?$", re.I)
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})(?=\.gguf$)", re.I)
_REQUEST = re.compile(r"[A-Z0-9]+(?:_[A-Z0-9]+)*")
_K_ALIAS = re.compile(r"Q\d_K")
_NOT_MODELS = ("mmproj", "imatrix")
"""Name prefixes of GGUF files that are not a model's weights (vision projectors, importance matrices)."""

FileTypeReader = Callable[[str], Awaitable[str | None]]
"""Reads a GGUF file's `general.file_type` name (None when the header has none)."""


@dataclass(frozen=True)
class QuantSet:
    """One quant of a repo: a GGUF file, or the parts of a split set in order."""

    name: str
    """The path without the split suffix (`Q8_0/m-Q8_0.gguf` for `Q8_0/m-Q8_0-00001-of-00002.gguf`)."""
    label: str | None
    files: tuple[str, ...]
    size: int
    parts: int
    """How many parts the names announce (1 for a single file)."""

    @property
    def complete(self) -> bool:
        return len(self.files) == self.parts

    @property
    def display(self) -> str:
        """The label (or file name) as listed to users, noting missing parts."""
        text = self.label or posixpath.basename(self.name)
        return text if self.complete else f"{text} (only {len(self.files)} of {self.parts} parts)"


@dataclass(frozen=True)
class QuantChoice:
    """What `pick` found: the chosen set (None when the quant asked for is not there)."""

    quant: QuantSet | None
    file_type: str | None
    available: tuple[str, ...]
    alias_used: bool = False
    """True when the request was satisfied by an alias (`q4_k` → Q4_K_S because there is no Q4_K_M)."""


def is_model_gguf(path: str) -> bool:
    """Whether ``path`` is a GGUF holding a model's weights (not a projector or an imatrix)."""
    name = posixpath.basename(path).lower()
    return name.endswith(".gguf") and not name.startswith(_NOT_MODELS)


def gguf_sets(files: Iterable[tuple[str, int]]) -> list[QuantSet]:
    """The quant sets among ``(path, size)`` files, ordered by name; split parts are grouped."""
    groups: dict[str, list[tuple[int, int, str, int]]] = {}
    for path, size in files:
        if not is_model_gguf(path):
            continue
        match = _SPLIT.search(path)
        number, count = (int(match[1]), int(match[2])) if match else (1, 1)
        base = _SPLIT.sub("", path) if match else path
        groups.setdefault(base, []).append((number, count, path, size))
    sets = []
    for base, parts in sorted(groups.items()):
        parts.sort()
        count = max(p[1] for p in parts)
        sets.append(QuantSet(name=base, label=quant_label_from_filename(posixpath.basename(base)),
                             files=tuple(p[2] for p in parts if 1 <= p[0] <= count),
                             size=sum(p[3] for p in parts), parts=count))
    return sets


def normalize_quant(text: str) -> str:
    """A requested quant in the Hub's spelling: `q4_k_m` → Q4_K_M, `ud-q4_k_xl` → UD-Q4_K_XL."""
    value = text.strip().upper()
    unsloth = value.startswith(("UD-", "UD_"))
    core = (value[3:] if unsloth else value).replace("-", "_")
    if not _REQUEST.fullmatch(core) or len(core) > 32:
        raise UsageError(f"invalid quant {text!r}: expected a name such as Q4_K_M, Q8_0, IQ4_XS or UD-Q4_K_XL")
    return f"UD-{core}" if unsloth else core


def aliases(label: str) -> tuple[str, ...]:
    """The labels that satisfy a normalised request, best first (`Q4_K` → Q4_K, Q4_K_M, Q4_K_S)."""
    names = [label]
    if _K_ALIAS.fullmatch(label):
        names += [f"{label}_M", f"{label}_S"]
    if not label.startswith("UD-"):
        names += [f"UD-{name}" for name in names]
    return tuple(names)


def find_quant(sets: Sequence[QuantSet], requested: str) -> QuantSet | None:
    """The complete set for a request (already normalised), trying its aliases in order."""
    for name in aliases(requested):
        for s in sets:
            if s.label == name and s.complete:
                return s
    return None


def default_quant(sets: Sequence[QuantSet]) -> QuantSet | None:
    """Q4_K_M, else the first of `DEFAULT_ORDER`, else any Q4, else the first complete set."""
    complete = [s for s in sets if s.complete]
    for name in DEFAULT_ORDER:
        for s in complete:
            if s.label == name:
                return s
    q4 = [s for s in complete if s.label and re.match(r"(?:UD-)?I?Q4", s.label)]
    return next(iter(q4 or complete), None)


def labels_agree(label: str | None, file_type: str | None) -> bool:
    """Whether a file name's label and its header's file type describe the same quant.

    Unsloth's dynamic quants (UD-Q4_K_XL, Q4_K_XL) carry the file type of their base (Q4_K_M…).
    """
    if label is None or file_type is None:
        return True
    core = label.removeprefix("UD-")
    if core == file_type:
        return True
    return core.endswith("_XL") and file_type.startswith(core.removesuffix("XL"))


async def pick(sets: Sequence[QuantSet], requested: str | None, read_file_type: FileTypeReader) -> QuantChoice:
    """Choose the set for ``requested`` (normalised, or None for the default) and confirm it by its
    header; sets whose names carry no label are labelled by their headers first.

    Raises FormatError when the chosen file's header contradicts its name.
    """
    seen: dict[str, str | None] = {}

    async def file_type(path: str) -> str | None:
        if path not in seen:
            seen[path] = await read_file_type(path)
        return seen[path]

    labelled = [s if s.label else replace(s, label=await file_type(s.files[0])) for s in sets]
    available = tuple(s.display for s in labelled)
    chosen = default_quant(labelled) if requested is None else find_quant(labelled, requested)
    if chosen is None:
        return QuantChoice(None, None, available)
    found = await file_type(chosen.files[0])
    if not labels_agree(chosen.label, found):
        raise FormatError(f"{chosen.files[0]} is named {chosen.label} but its header says general.file_type "
                          f"{found}")
    return QuantChoice(chosen, found, available, alias_used=requested is not None and chosen.label != requested)


def metadata_files(files: Iterable[tuple[str, int]]) -> list[str]:
    """The small top-level files fetched along with a GGUF: README, license, config, tokenizer, template."""
    return sorted(path for path, size in files
                  if "/" not in path and size <= METADATA_MAX
                  and (path.lower() in METADATA_NAMES or _LICENSE.match(path)))


def remote_reader(client: RepoClient, repo: RepoRef, commit: str) -> FileTypeReader:
    """A FileTypeReader of the repo's files at ``commit``, reading their headers over HTTP ranges."""

    async def read(path: str) -> str | None:
        header, _ = await parse_remote(client, repo, commit, path)
        return gguf_info(header.metadata).file_type

    return read
