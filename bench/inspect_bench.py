"""Benchmark reading model headers from the Hub: mreg's `parse_remote_many` against huggingface_hub.

    python bench/inspect_bench.py [--latency 0.05] [--concurrency 8,16,32,64,100] [--runs 3] [--json out.json]

The test hub runs in this process (a background thread). Three measurements, in one run:

1. Sharded safetensors repos of 4, 20 and 100 shards (Llama-like names and tensor counts, small
   tensors), with and without their index: requests and bytes the hub served to read every shard's
   header, mreg (`repo_info`, the tree, `read_headers`: what `mreg inspect` does) next to
   huggingface_hub's `get_safetensors_metadata` (which needs the index).
2. GGUFs with a 32,000- and a 262,144-token vocabulary: requests and bytes against the header size,
   next to @huggingface/gguf's documented strategy (fixed 2,000,000-byte chunks, the next one
   fetched when fewer than 500,000 bytes are left), computed from the header's size; and the peak RSS
   of `mreg inspect REPO --json` run as a fresh process (GNU time's %M).
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
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
for _name in ("HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
    os.environ.pop(_name, None)
os.environ.update(HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                  NO_PROXY="127.0.0.1,127.0.0.2,localhost")

from huggingface_hub import HfApi, close_session, constants  # noqa: E402
from huggingface_hub.hf_api import SafetensorsRepoMetadata  # noqa: E402

from mreg.registry.formats import HeaderParsed  # noqa: E402
from mreg.registry.upstream.http import RetryPolicy  # noqa: E402
from mreg.registry.upstream.hub import HubClient  # noqa: E402
from mreg.registry.inspect.reading import CONCURRENCY, FIRST_READ, FileHeader, parse_local, parse_remote  # noqa: E402
from mreg.registry.inspect.repo import read_headers  # noqa: E402
from mreg.registry.repo import RepoRef  # noqa: E402
from mreg.registry.workspace import http_session  # noqa: E402
from bench.machine import machine_info  # noqa: E402
from tests.sharded_repos import INDEX, Layout, write_checkpoint, write_vocab_gguf  # noqa: E402
from tests.testhub import HubRepo, TestHub  # noqa: E402

T = TypeVar("T")
MB = 1_000_000
HF_WORKERS = min(32, (os.cpu_count() or 1) + 4)
"""Shard headers huggingface_hub reads at once: `hf_thread_map`'s default pool size."""
PER_SHARD = 2
"""Requests per shard when its header fits the first read: mreg HEAD + ranged GET, hf GET + redirect."""
GGUFS = ((32_000, "llama"), (262_144, "llama"))
"""(vocabulary, tokenizer model) of the GGUFs measured."""
HFJS_CHUNK, HFJS_LEEWAY = 2_000_000, 500_000
"""@huggingface/gguf's `HTTP_CHUNK_SIZE` and `HTTP_DATA_LEEWAY` (packages/gguf/src/gguf.ts)."""
HfTool = Callable[[str], SafetensorsRepoMetadata]
"""`hf_inspect` bound to its client and cache: repo id → metadata."""


LAYOUTS = (Layout("llama-3-8b-like", layers=32, shards=4), Layout("llama-2-70b-like", layers=80, shards=20),
           Layout("llama-3.1-405b-like", layers=126, shards=100))
"""Llama 3 8B as published (32 layers in 4 shards), 80 layers in 20 shards, and the 405B layout (126
layers) cut into 100 shards."""
NO_INDEX = "-no-index"
"""Suffix of each layout's second repo: the same shards without model.safetensors.index.json."""


@dataclass
class Measured:
    """What one tool cost: wall time, requests per route kind, body bytes (CDN + resolve; the CDN's
    alone are the shards' and GGUFs', the hub's are config.json's and the index's)."""

    seconds: float
    requests: dict[str, int]
    bytes: int
    cdn_bytes: int = 0

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


# -- the tools ----------------------------------------------------------------------------------


def measure(hub: TestHub, call: Callable[[], T]) -> tuple[T, Measured]:
    """Run `call` and count what the hub served meanwhile."""
    requests, cdn, body = Counter(hub.stats.requests), hub.stats.cdn_bytes, hub.stats.resolve_bytes
    started = time.monotonic()
    result = call()
    seconds = time.monotonic() - started
    delta = Counter(hub.stats.requests)
    delta.subtract(requests)
    cdn = hub.stats.cdn_bytes - cdn
    return result, Measured(seconds, dict(+delta), cdn + hub.stats.resolve_bytes - body, cdn)


async def mreg_inspect(endpoint: str, repo_id: str, concurrency: int) -> dict[str, FileHeader]:
    """What `mreg inspect` does: pin `main` to its commit, list it, read config.json and the shard
    index, then every model file's header."""
    async with http_session(concurrency) as session:
        client = HubClient(session, endpoint, None, RetryPolicy())
        repo = RepoRef.parse(repo_id)
        info = await client.repo_info(repo, "main")
        return (await read_headers(client, repo, info.commit, await client.list_files(repo, info.commit))).headers


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
    """Part 1: mreg with and without the index and hf on one layout without latency; rows and the
    summed header bytes."""
    mreg, mreg_cost = measure(hub, functools.partial(mreg_inspect_sync, hub.endpoint, layout.repo_id, CONCURRENCY))
    bare, bare_cost = measure(hub, functools.partial(mreg_inspect_sync, hub.endpoint, layout.repo_id + NO_INDEX,
                                                     CONCURRENCY))
    hf, hf_cost = measure(hub, functools.partial(hf_tool, layout.repo_id))
    header_bytes = check_same(layout, mreg, hf)
    assert {p: r.header for p, r in bare.items()} == {p: r.header for p, r in mreg.items()}
    return [Row(layout.name, "mreg", CONCURRENCY, mreg_cost), Row(layout.name, "mreg, no index", CONCURRENCY, bare_cost),
            Row(layout.name, "hf", HF_WORKERS, hf_cost)], header_bytes


@dataclass
class GGUFCost:
    """Part 2 for one GGUF: mreg's cost without latency, its median seconds with it, the header's and
    the file's size."""

    vocab: int
    cost: Measured
    seconds: float
    header_bytes: int
    size: int
    peak_rss_mib: float
    """Of `mreg inspect REPO --json` run as a fresh process."""

    def hfjs(self) -> tuple[int, int]:
        """(ranged GETs, bytes) of @huggingface/gguf's strategy on this header: 2,000,000-byte chunks
        until the last tensor info (which starts just before the header's end) has 500,000 bytes after it."""
        chunks = math.ceil((self.header_bytes + HFJS_LEEWAY) / HFJS_CHUNK)
        return chunks, min(chunks * HFJS_CHUNK, self.size)


def gguf_repo(vocab: int) -> str:
    return f"bench/vocab-{vocab}-gguf"


def gguf_cost(hub: TestHub, args: argparse.Namespace, vocab: int, name: str) -> GGUFCost:
    """Part 2: mreg on one GGUF, `--runs` times without and with latency (medians)."""
    head = hub.repo(gguf_repo(vocab)).head
    blob = head.files[name].blob

    def read() -> HeaderParsed:
        return asyncio.run(mreg_one(hub.endpoint, gguf_repo(vocab), head.sha, name))

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
    return GGUFCost(vocab, cost, statistics.median(slow), header.header_end, blob.size,
                    inspect_peak_rss(hub, gguf_repo(vocab), args.cache_dir / "inspect-home"))


def inspect_peak_rss(hub: TestHub, repo_id: str, home: Path) -> float:
    """The peak RSS (MiB, GNU time's %M) of `mreg inspect REPO --json` as a fresh process on an empty home."""
    shutil.rmtree(home, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MREG_"))}
    env.update(HF_ENDPOINT=hub.endpoint, MREG_HOME=str(home), PYTHONPATH=str(ROOT))
    done = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "mreg.cli.main", "inspect", repo_id,
                           "--json"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"mreg inspect {repo_id} exited {done.returncode}: {done.stderr[-2000:]}")
    shutil.rmtree(home, ignore_errors=True)
    return int(done.stderr.strip().splitlines()[-1]) / 1024


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


def report(sharded: list[tuple[list[Row], int]], ggufs: list[GGUFCost], timed: list[Row],
           args: argparse.Namespace, info: dict[str, str]) -> str:
    """The Markdown summary: three tables and the command."""
    lines = [
        f"{info['date']}, {info['nproc']} CPUs ({info['cpu']}), {info['ram']} RAM, kernel {info['kernel']}, "
        f"Python {info['python']}, huggingface_hub {info['huggingface_hub']}; mreg first read {FIRST_READ} B, "
        f"default concurrency {CONCURRENCY}; hf reads {HF_WORKERS} shards at once.",
        "",
        "**Sharded safetensors, every shard's header, no latency** (requests and body bytes served by the hub)",
        "",
        "| repo | shards | header bytes | tool | requests | by route | bytes moved | of which shards' "
        "| shards' / header bytes | ≤ 1.5 × headers + 16 kB a shard | requests vs hf | bytes vs hf |",
        "|---|---:|---:|---|---:|---|---:|---:|---:|---|---:|---:|",
    ]
    for rows, header_bytes in sharded:
        layout = next(x for x in LAYOUTS if x.name == rows[0].repo)
        budget = 1.5 * header_bytes + 16_000 * layout.shards
        hf = rows[-1].measured
        for row in rows:
            cost = row.measured
            lines.append(f"| {row.repo} | {layout.shards} | {header_bytes:,} | {row.tool} | {cost.total_requests} "
                         f"| {kinds(cost)} | {cost.bytes:,} | {cost.cdn_bytes:,} | {cost.cdn_bytes / header_bytes:.2f} "
                         f"| {'yes' if cost.cdn_bytes <= budget else 'NO'} ({budget:,.0f}) "
                         f"| {cost.total_requests / hf.total_requests:.2f} | {cost.bytes / hf.bytes:.2f} |")
    lines += [
        "",
        f"**GGUFs** (`parse_remote` at a known commit: the resolve HEAD and the ranged GETs; times are medians of "
        f"{args.runs} run(s)); *@huggingface/gguf*: its documented strategy computed from the header's size "
        f"({HFJS_CHUNK:,}-byte chunks, the next fetched when fewer than {HFJS_LEEWAY:,} bytes are left; on the Hub "
        "each chunk is a GET on the resolve URL and one on the CDN)",
        "",
        f"| vocabulary | file bytes | header bytes | tool | requests | by route | bytes moved | bytes / header "
        f"| seconds at {args.latency * 1000:g} ms | seconds without latency | bytes ≤ 1.5 × header + 1 MB "
        "| peak RSS of `mreg inspect` MiB |",
        "|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---|---:|",
    ]
    for g in ggufs:
        budget = 1.5 * g.header_bytes + MB
        chunks, hfjs_bytes = g.hfjs()
        lines += [
            f"| {g.vocab:,} | {g.size:,} | {g.header_bytes:,} | mreg | {g.cost.total_requests} | {kinds(g.cost)} "
            f"| {g.cost.bytes:,} | {g.cost.bytes / g.header_bytes:.2f} | {g.seconds:.2f} | {g.cost.seconds:.2f} "
            f"| {'yes' if g.cost.bytes <= budget else 'NO'} ({budget:,.0f}) | {g.peak_rss_mib:.0f} |",
            f"| {g.vocab:,} | {g.size:,} | {g.header_bytes:,} | @huggingface/gguf | {2 * chunks} "
            f"| {chunks} resolve + {chunks} cdn | {hfjs_bytes:,} | {hfjs_bytes / g.header_bytes:.2f} | | "
            f"| {'yes' if hfjs_bytes <= budget else 'NO'} | |",
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
    ggufs = {vocab: write_vocab_gguf(args.cache_dir / f"vocab-{vocab}-{tokenizer}.gguf", vocab, tokenizer)
             for vocab, tokenizer in GGUFS}
    with TestHub() as hub:
        for layout, files in checkpoints.items():
            hub.add_repo(HubRepo(layout.repo_id)).commit(files)
            hub.add_repo(HubRepo(layout.repo_id + NO_INDEX)).commit({p: f for p, f in files.items() if p != INDEX})
        for vocab, path in ggufs.items():
            hub.add_repo(HubRepo(gguf_repo(vocab))).commit({path.name: path})
        hf_tool = functools.partial(hf_inspect, HfApi(endpoint=hub.endpoint, token=False), args.cache_dir / "hf-cache")
        sharded = [sharded_costs(hub, hf_tool, layout) for layout in LAYOUTS]
        gguf_costs = [gguf_cost(hub, args, vocab, path.name) for vocab, path in ggufs.items()]
        timed = timed_rows(hub, hf_tool, LAYOUTS[-1], args)
    close_session()
    info = machine_info()
    print(report(sharded, gguf_costs, timed, args, info))
    if args.json:
        rows = [row for rows, _ in sharded for row in rows] + timed
        args.json.write_text(json.dumps({"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": [asdict(r) for r in rows]}, indent=2))


if __name__ == "__main__":
    main()
