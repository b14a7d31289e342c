"""Benchmark reading model headers from the Hub: mreg's `parse_remote_many` against huggingface_hub.

    python bench/inspect_bench.py [--latency 0.05] [--concurrency 8,16,32,64,100] [--runs 3] [--json out.json]

The test hub runs in this process (a background thread). Three measurements, in one run:

1. Sharded safetensors repos (Llama-like names and tensor counts, small tensors): requests and bytes
   the hub served to read every shard's header, mreg (`repo_info` + `parse_remote_many`, what
   `mreg inspect` does) next to huggingface_hub's `get_safetensors_metadata`.
2. A GGUF with a ~7 MB header (262,144-token vocabulary): requests and bytes against the header size.
3. The 100-shard repo with `hub.faults.latency` on every request: wall time of both tools, mreg at
   each `--concurrency`, against one round trip per request with the shard reads in parallel.

Requests and bytes are counted at the hub (`hub.stats` deltas: every route, body bytes of the CDN and
of the hub's resolve answers). Generated files are kept under `--cache-dir`. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
for _name in ("HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
    os.environ.pop(_name, None)
os.environ.update(HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                  NO_PROXY="127.0.0.1,127.0.0.2,localhost")

from gguf import GGUFWriter  # noqa: E402
from huggingface_hub import HfApi, close_session, constants  # noqa: E402
from huggingface_hub.hf_api import SafetensorsRepoMetadata  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

from mreg.registry.formats import HeaderParsed  # noqa: E402
from mreg.registry.upstream.http import RetryPolicy  # noqa: E402
from mreg.registry.upstream.hub import HubClient  # noqa: E402
from mreg.registry.inspect.reading import (  # noqa: E402
    CONCURRENCY,
    FIRST_READ,
    FileHeader,
    parse_local,
    parse_remote,
    parse_remote_many,
)
from mreg.registry.repo import RepoRef  # noqa: E402
from mreg.registry.workspace import http_session  # noqa: E402
from bench.machine import machine_info  # noqa: E402
from tests.testhub import HubRepo, TestHub  # noqa: E402

T = TypeVar("T")
MB = 1_000_000
HF_WORKERS = min(32, (os.cpu_count() or 1) + 4)
"""Shard headers huggingface_hub reads at once: `hf_thread_map`'s default pool size."""
PER_SHARD = 2
"""Requests per shard when its header fits the first read: mreg HEAD + ranged GET, hf GET + redirect."""
GGUF_VOCAB = 262_144
GGUF_REPO = "bench/big-vocab-gguf"
GGUF_NAME = "big-vocab-F16.gguf"
HfTool = Callable[[str], SafetensorsRepoMetadata]
"""`hf_inspect` bound to its client and cache: repo id → metadata."""


@dataclass(frozen=True)
class Layout:
    """A Llama-like checkpoint: the real model's tensor names and count, its dimensions scaled down."""

    name: str
    layers: int
    shards: int
    hidden: int = 128
    kv_dim: int = 32
    intermediate: int = 384
    vocab: int = 1024

    @property
    def repo_id(self) -> str:
        return f"bench/{self.name}"

    def tensors(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) in the order `save_pretrained` writes a Llama state dict."""
        h, kv, ff = self.hidden, self.kv_dim, self.intermediate
        layer = [("self_attn.q_proj.weight", (h, h)), ("self_attn.k_proj.weight", (kv, h)),
                 ("self_attn.v_proj.weight", (kv, h)), ("self_attn.o_proj.weight", (h, h)),
                 ("mlp.gate_proj.weight", (ff, h)), ("mlp.up_proj.weight", (ff, h)),
                 ("mlp.down_proj.weight", (h, ff)), ("input_layernorm.weight", (h,)),
                 ("post_attention_layernorm.weight", (h,))]
        return ([("model.embed_tokens.weight", (self.vocab, h))]
                + [(f"model.layers.{i}.{name}", shape) for i in range(self.layers) for name, shape in layer]
                + [("model.norm.weight", (h,)), ("lm_head.weight", (self.vocab, h))])


LAYOUTS = (Layout("llama-3-70b-like", layers=80, shards=30), Layout("llama-3.1-405b-like", layers=126, shards=100))
"""Llama 3 70B as published (80 layers in 30 shards) and the 405B layout (126 layers) cut into 100 shards."""


@dataclass
class Measured:
    """What one tool cost: wall time, requests per route kind, body bytes (CDN + resolve)."""

    seconds: float
    requests: dict[str, int]
    bytes: int

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


@dataclass
class Row:
    """One line of a table: a tool on a repo, with what it cost (timings are medians)."""

    repo: str
    tool: str
    parallel: int
    measured: Measured
    ideal_seconds: float = 0.0
    """Part 3: one round trip per request, shard reads `parallel` at a time (see `ideal_seconds`)."""
    floor_seconds: float = 0.0
    """Part 3: the same tool's median time without latency (what this machine's CPU costs)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, parsed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the hub waits before each answer (timing)")
    parser.add_argument("--concurrency", default="8,16,32,64,100", help="parse_remote_many concurrency values to time")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per tool, interleaved (medians are reported)")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/mreg-bench-inspect"), help="generated files")
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


# -- files --------------------------------------------------------------------------------------


def write_checkpoint(layout: Layout, folder: Path) -> dict[str, Path | bytes]:
    """The repo's files: shards written by `save_file` (reused when already there), index and config.

    Tensors go to shards in order by the bytes before them, as `save_pretrained` fills shards of a
    maximum size; every shard is larger than mreg's first read, as real shards are.
    """
    tensors = layout.tensors()
    sizes = [2 * math.prod(shape) for _, shape in tensors]
    total = sum(sizes)
    names = [f"model-{i + 1:05d}-of-{layout.shards:05d}.safetensors" for i in range(layout.shards)]
    weight_map = {name: names[min(layout.shards - 1, sum(sizes[:i]) * layout.shards // total)]
                  for i, (name, _) in enumerate(tensors)}
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "layout.json"
    if not stamp.exists() or json.loads(stamp.read_text()) != asdict(layout):
        for shard in names:
            save_file({name: np.zeros(shape, np.float16) for name, shape in tensors if weight_map[name] == shard},
                      folder / shard, metadata={"format": "pt"})
        stamp.write_text(json.dumps(asdict(layout)))
    files: dict[str, Path | bytes] = {shard: folder / shard for shard in names}
    assert all(path.stat().st_size > FIRST_READ for path in files.values() if isinstance(path, Path))
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": layout.hidden,
              "num_hidden_layers": layout.layers, "intermediate_size": layout.intermediate, "vocab_size": layout.vocab}
    files["model.safetensors.index.json"] = json.dumps(index, indent=2).encode()
    files["config.json"] = json.dumps(config, indent=2).encode()
    return files


def write_big_vocab_gguf(path: Path) -> Path:
    """A GGUF whose ~7 MB header is mostly a 262,144-token vocabulary with scores and types (reused)."""
    if path.exists():
        return path
    partial = path.with_name(path.name + ".partial")
    w = GGUFWriter(partial, "llama")
    w.add_context_length(131_072)
    w.add_tokenizer_model("llama")
    lengths = np.random.default_rng(0).integers(1, 10, GGUF_VOCAB)
    w.add_token_list([f"{i:x}_" + "x" * int(n) for i, n in enumerate(lengths)])
    w.add_token_scores([0.0] * GGUF_VOCAB)
    w.add_token_types([1] * GGUF_VOCAB)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    w.add_tensor("token_embd.weight", np.zeros((GGUF_VOCAB, 16), np.float16))
    w.add_tensor("output_norm.weight", np.ones(16, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    partial.replace(path)
    return path


# -- the tools ----------------------------------------------------------------------------------


def measure(hub: TestHub, call: Callable[[], T]) -> tuple[T, Measured]:
    """Run `call` and count what the hub served meanwhile."""
    requests, body = Counter(hub.stats.requests), hub.stats.cdn_bytes + hub.stats.resolve_bytes
    started = time.monotonic()
    result = call()
    seconds = time.monotonic() - started
    delta = Counter(hub.stats.requests)
    delta.subtract(requests)
    return result, Measured(seconds, dict(+delta), hub.stats.cdn_bytes + hub.stats.resolve_bytes - body)


async def mreg_inspect(endpoint: str, repo_id: str, concurrency: int) -> dict[str, FileHeader]:
    """What `mreg inspect` does: pin `main` to its commit, then every model file's header."""
    async with http_session(concurrency) as session:
        client = HubClient(session, endpoint, None, RetryPolicy())
        repo = RepoRef.parse(repo_id)
        info = await client.repo_info(repo, "main")
        return await parse_remote_many(client, repo, info.commit, concurrency=concurrency)


def mreg_inspect_sync(endpoint: str, repo_id: str, concurrency: int) -> dict[str, FileHeader]:
    """`mreg_inspect` on a fresh event loop."""
    return asyncio.run(mreg_inspect(endpoint, repo_id, concurrency))


async def mreg_one(endpoint: str, repo_id: str, commit: str, path: str) -> HeaderParsed:
    """One file's header at a known commit."""
    async with http_session(CONCURRENCY) as session:
        client = HubClient(session, endpoint, None, RetryPolicy())
        return (await parse_remote(client, RepoRef.parse(repo_id), commit, path))[0]


def hf_inspect(api: HfApi, cache: Path, repo_id: str) -> SafetensorsRepoMetadata:
    """`get_safetensors_metadata` from cold: an empty hub cache of its own (it downloads the index
    there), new connections."""
    shutil.rmtree(cache, ignore_errors=True)
    constants.HF_HUB_CACHE = str(cache)
    close_session()
    return api.get_safetensors_metadata(repo_id, token=False)


def check_same(layout: Layout, mreg: dict[str, FileHeader], hf: SafetensorsRepoMetadata) -> int:
    """Both tools saw every shard and the same tensors with the same shapes; return the header bytes."""
    assert len(mreg) == len(hf.files_metadata) == layout.shards, (len(mreg), len(hf.files_metadata))
    for path, result in mreg.items():
        assert result.header is not None, f"{path}: {result.error}"
        theirs = {name: tuple(info.shape) for name, info in hf.files_metadata[path].tensors.items()}
        assert {t.name: t.shape for t in result.header.tensors} == theirs, path
    assert sum(len(r.header.tensors) for r in mreg.values() if r.header) == len(layout.tensors())
    return sum(r.header.header_end for r in mreg.values() if r.header)


# -- the measurements ---------------------------------------------------------------------------


def sharded_costs(hub: TestHub, hf_tool: HfTool, layout: Layout) -> tuple[list[Row], int]:
    """Part 1: both tools on one repo without latency; rows and the summed header bytes."""
    mreg, mreg_cost = measure(hub, functools.partial(mreg_inspect_sync, hub.endpoint, layout.repo_id, CONCURRENCY))
    hf, hf_cost = measure(hub, functools.partial(hf_tool, layout.repo_id))
    header_bytes = check_same(layout, mreg, hf)
    return [Row(layout.name, "mreg", CONCURRENCY, mreg_cost), Row(layout.name, "hf", HF_WORKERS, hf_cost)], header_bytes


def gguf_cost(hub: TestHub, args: argparse.Namespace) -> tuple[Measured, float, int, int]:
    """Part 2: mreg on the big GGUF, `--runs` times without and with latency: (cost without latency,
    median seconds with it, header bytes, file size); the cost's seconds are a median too."""
    head = hub.repo(GGUF_REPO).head
    blob = head.files[GGUF_NAME].blob

    def read() -> HeaderParsed:
        return asyncio.run(mreg_one(hub.endpoint, GGUF_REPO, head.sha, GGUF_NAME))

    fast: list[Measured] = []
    slow: list[float] = []
    try:
        for _ in range(args.runs):
            hub.faults.latency = 0
            header, cost = measure(hub, read)
            fast.append(cost)
            hub.faults.latency = args.latency
            slow.append(measure(hub, read)[1].seconds)
    finally:
        hub.faults.latency = 0
    assert blob.path is not None and header == parse_local(blob.path)
    cost = Measured(statistics.median(m.seconds for m in fast), fast[0].requests, max(m.bytes for m in fast))
    return cost, statistics.median(slow), header.header_end, blob.size


def ideal_seconds(cost: Measured, shards: int, parallel: int, latency: float) -> float:
    """One round trip per request: the requests that are not shard reads in a row, the shard reads
    (PER_SHARD requests each) `parallel` at a time."""
    return latency * (cost.total_requests - PER_SHARD * shards + PER_SHARD * math.ceil(shards / parallel))


def timed_rows(hub: TestHub, hf_tool: HfTool, layout: Layout, args: argparse.Namespace) -> list[Row]:
    """Part 3: both tools on the repo with `--latency` on every request and without any (the CPU
    floor of this machine), `--runs` times interleaved."""
    sweep = [int(n) for n in args.concurrency.split(",") if n]
    tools: list[tuple[str, int, Callable[[], object]]] = [
        (f"mreg, concurrency {n}" + (" (default)" if n == CONCURRENCY else ""), n,
         functools.partial(mreg_inspect_sync, hub.endpoint, layout.repo_id, n)) for n in sweep]
    tools.append(("hf get_safetensors_metadata", HF_WORKERS, functools.partial(hf_tool, layout.repo_id)))
    slow: list[list[Measured]] = [[] for _ in tools]
    fast: list[list[float]] = [[] for _ in tools]
    try:
        for i in range(args.runs):
            for (tool, _, call), done, floor in zip(tools, slow, fast):
                hub.faults.latency = 0
                floor.append(measure(hub, call)[1].seconds)
                hub.faults.latency = args.latency
                done.append(measure(hub, call)[1])
                print(f"[{i + 1}/{args.runs}] {tool}: {done[-1].seconds:.3f} s ({floor[-1]:.3f} s without latency), "
                      f"{done[-1].total_requests} requests", file=sys.stderr)
    finally:
        hub.faults.latency = 0
    rows = []
    for (tool, parallel, _), done, floor in zip(tools, slow, fast):
        cost = Measured(statistics.median(m.seconds for m in done), done[0].requests, max(m.bytes for m in done))
        rows.append(Row(layout.name, tool, parallel, cost, ideal_seconds(cost, layout.shards, parallel, args.latency),
                        statistics.median(floor)))
    return rows


# -- the report ---------------------------------------------------------------------------------


def kinds(cost: Measured) -> str:
    """Requests by route kind, e.g. `1 api + 1 tree + 100 resolve + 100 cdn`."""
    return " + ".join(f"{cost.requests[k]} {k}" for k in ("api", "tree", "resolve", "cdn") if cost.requests.get(k))


def report(sharded: list[tuple[list[Row], int]], gguf: tuple[Measured, float, int, int], timed: list[Row],
           args: argparse.Namespace, info: dict[str, str]) -> str:
    """The Markdown summary: three tables and the command."""
    lines = [
        f"{info['date']}, {info['nproc']} CPUs ({info['cpu']}), {info['ram']} RAM, kernel {info['kernel']}, "
        f"Python {info['python']}, huggingface_hub {info['huggingface_hub']}; mreg first read {FIRST_READ} B, "
        f"default concurrency {CONCURRENCY}; hf reads {HF_WORKERS} shards at once.",
        "",
        "**Sharded safetensors, every shard's header, no latency** (requests and body bytes served by the hub)",
        "",
        "| repo | shards | header bytes | tool | requests | by route | bytes moved | bytes / header bytes "
        "| requests vs hf | bytes vs hf |",
        "|---|---:|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for (mreg, hf), header_bytes in sharded:
        layout = next(x for x in LAYOUTS if x.name == mreg.repo)
        for row in (mreg, hf):
            cost = row.measured
            lines.append(f"| {row.repo} | {layout.shards} | {header_bytes:,} | {row.tool} | {cost.total_requests} "
                         f"| {kinds(cost)} | {cost.bytes:,} | {cost.bytes / header_bytes:.1f} "
                         f"| {cost.total_requests / hf.measured.total_requests:.2f} "
                         f"| {cost.bytes / hf.measured.bytes:.2f} |")
    cost, slow, header_end, size = gguf
    budget = 1.5 * header_end + MB
    lines += [
        "",
        f"**GGUF, {GGUF_VOCAB:,}-token vocabulary** (`{GGUF_NAME}`, {size:,} bytes; `parse_remote` at a known "
        f"commit: the resolve HEAD and the ranged GETs; times are medians of {args.runs} run(s))",
        "",
        f"| header bytes | requests | by route | bytes moved | bytes / header | seconds at {args.latency * 1000:g} ms "
        "| seconds without latency | ≤ 8 requests | bytes ≤ 1.5 × header + 1 MB |",
        "|---:|---:|---|---:|---:|---:|---:|---|---|",
        f"| {header_end:,} | {cost.total_requests} | {kinds(cost)} | {cost.bytes:,} | {cost.bytes / header_end:.2f} "
        f"| {slow:.2f} | {cost.seconds:.2f} | {'yes' if cost.total_requests <= 8 else 'NO'} "
        f"| {'yes' if cost.bytes <= budget else 'NO'} ({budget:,.0f}) |",
    ]
    layout = next(x for x in LAYOUTS if x.name == timed[0].repo)
    hf_seconds = timed[-1].measured.seconds
    lines += [
        "",
        f"**{layout.shards}-shard repo ({layout.name}), {args.latency * 1000:g} ms per request**, median of "
        f"{args.runs} run(s); *ideal*: one round trip per request, shard reads (2 requests each) N at a time",
        "",
        "| tool | shards at once | requests | seconds | ideal s | seconds / ideal | seconds without latency "
        "| time vs hf |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r.tool} | {r.parallel} | {r.measured.total_requests} | {r.measured.seconds:.2f} "
              f"| {r.ideal_seconds:.2f} | {r.measured.seconds / r.ideal_seconds:.2f} | {r.floor_seconds:.2f} "
              f"| {r.measured.seconds / hf_seconds:.2f} |" for r in timed]
    best = min(timed[:-1], key=lambda r: r.measured.seconds)
    lines += [
        "",
        f"Fastest mreg: concurrency {best.parallel} ({best.measured.seconds:.2f} s, "
        f"{hf_seconds / best.measured.seconds:.1f}× faster than hf).",
        "",
        f"Reproduce: `python bench/inspect_bench.py --latency {args.latency:g} --concurrency {args.concurrency} "
        f"--runs {args.runs}`",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Build the repos, measure bytes and requests, then time the 100-shard repo; print the report."""
    args = parse_args(argv)
    print(f"generating/reusing files under {args.cache_dir} ...", file=sys.stderr)
    checkpoints = {layout: write_checkpoint(layout, args.cache_dir / layout.name) for layout in LAYOUTS}
    gguf = write_big_vocab_gguf(args.cache_dir / GGUF_NAME)
    with TestHub() as hub:
        for layout, files in checkpoints.items():
            hub.add_repo(HubRepo(layout.repo_id)).commit(files)
        hub.add_repo(HubRepo(GGUF_REPO)).commit({GGUF_NAME: gguf})
        hf_tool = functools.partial(hf_inspect, HfApi(endpoint=hub.endpoint, token=False), args.cache_dir / "hf-cache")
        sharded = [sharded_costs(hub, hf_tool, layout) for layout in LAYOUTS]
        big_gguf = gguf_cost(hub, args)
        timed = timed_rows(hub, hf_tool, LAYOUTS[-1], args)
    close_session()
    info = machine_info()
    print(report(sharded, big_gguf, timed, args, info))
    if args.json:
        rows = [row for rows, _ in sharded for row in rows] + timed
        args.json.write_text(json.dumps({"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": [asdict(r) for r in rows]}, indent=2))


if __name__ == "__main__":
    main()
