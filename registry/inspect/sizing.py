"""How many bytes to ask for first, from what is known before a header is read.

A first read that is too small costs a round trip; one that is too large costs bytes. What is known:
a shard index names every tensor of every shard (and the tree listing gives each shard's size), so a
shard's header length can be estimated within a few percent; without an index, shards of one model
in one folder have headers of about one size, so one read header sizes the others' first reads.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Mapping

from mreg.registry.formats.safetensors import ShardIndex, estimate_header_length

FIRST_READ = 256 * 1024
"""Bytes of the first ranged GET of a file nothing is known about, chosen by measuring headers of
real architectures (HF names and shapes, split as save_pretrained does): per file they are 2-75 KB
for dense and DeepSeek-V3 shards, 16-32 KB for small single-file models, ~145 KB for Qwen3-30B-A3B
shards, ~380 KB for a single-file SD-style UNet. GGUF headers (0.05-10 MB) then grow by windows
sized by the parser."""
SLACK = 2048
"""Bytes added to every estimate (metadata beyond `{"format": "pt"}`, padding)."""
FEW_SHARDS_READ = 16 * 1024
"""First read of each of a few (up to `PROBE_AFTER`) unindexed shards read at once."""
PROBE_AFTER = 4
"""More unindexed shards than this in one folder: one (the probe) is read first to size the others."""
PROBE_SHARE = 8 * 1024
"""The probe's first read is this much per shard of its group (at most `FIRST_READ`)."""


def with_margin(estimate: int) -> int:
    """A first read for a header estimated at `estimate` bytes: an eighth more, plus `SLACK`."""
    return estimate + estimate // 8 + SLACK


def indexed_first_reads(indexes: Mapping[str, ShardIndex], sizes: Mapping[str, int]) -> dict[str, int]:
    """First reads for the shards that the indexes (by their path in the repo) name and the tree
    listing has (`sizes`: path -> bytes): the estimated header of the tensors mapped to each."""
    names: dict[str, list[str]] = defaultdict(list)
    for index_path, index in indexes.items():
        folder = posixpath.dirname(index_path)
        for tensor, shard in index.weight_map.items():
            names[posixpath.join(folder, shard)].append(tensor)
    return {path: with_margin(estimate_header_length(tensors, sizes[path]))
            for path, tensors in names.items() if path in sizes}


def probe_first_read(group: int) -> int:
    """The probe's first read when it sizes `group` shards: `PROBE_SHARE` each, at most `FIRST_READ`."""
    return min(FIRST_READ, PROBE_SHARE * group)


def after_probe(probe_header: int) -> int:
    """First read of a shard whose sibling's header (the probe's) was `probe_header` bytes."""
    return with_margin(probe_header)


def unindexed_groups(paths: list[str]) -> list[list[str]]:
    """The .safetensors files among `paths` by folder, the folders holding more than one."""
    folders: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        if path.lower().endswith(".safetensors"):
            folders[posixpath.dirname(path)].append(path)
    return [group for group in folders.values() if len(group) > 1]
