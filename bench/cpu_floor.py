"""The CPU no Python pull that verifies and records a file can go below, against issue #16's target, in one run.

    python bench/cpu_floor.py [--size 1500000000] [--throttle 25000000] [--runs 3] [--json out.json]

The target is `mreg pull`'s CPU (user + sys, start-up included) at most 1.5 x aria2c's on the same file.
Each round measures, as child processes under GNU time (medians reported): aria2c -x16 and `mreg pull`
pulling the file from the test hub (bench/pull_bench.py's setup), and the parts of a floor:

- receiving and writing the bytes from Python at the least: bench/receive_floor.py (16 plain sockets, one
  thread on epoll, ``recv`` and ``pwrite``; no HTTP library, asyncio, hashing, syncing or saved state);
- sha256 of every byte (hashlib over the file mapped from the page cache), which mreg owes its users and aria2c
  skips;
- importing the libraries the design card names for pulling and recording: aiohttp, SQLAlchemy's asyncio
  engine and aiosqlite (see IMPORTS);
- an interpreter that starts and exits, subtracted from the last two (the receive loop keeps its one start).

The room is 1.5 x aria2c's CPU less the floor: what is left for everything else a real pull does (mreg's own
modules, the event loop and aiohttp's request handling, the catalog's queries, syncing to disk, saved state).
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import urllib.request
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import machine_info  # noqa: E402
from bench.pull_bench import Bench, Run, spawn  # noqa: E402
from bench.weights import FILENAME, REPO_ID, weights  # noqa: E402
from tests.testhub import HubRepo, TestHub  # noqa: E402

IMPORTS = ("import gc, ssl; gc.disable(); ssl.SSLContext.set_default_verify_paths = lambda self: None; "
           "import aiohttp, sqlalchemy.ext.asyncio, sqlalchemy.dialects.sqlite.aiosqlite")
"""The imports as cheap as they get: no collections while they run (mreg pauses the collector too) and no CA
certificates loaded (aiohttp loads them at import for its default TLS contexts; a pull over http needs none, and
mreg loads them on first use)."""
HASH = ("import hashlib, mmap, sys; f = open(sys.argv[1], 'rb'); "
        "m = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ); "
        "print(hashlib.sha256(m).hexdigest())")
"""sha256 of the file where it lies in the page cache: a mapping, as mreg hashes (reading it into a buffer first,
as ``hashlib.file_digest`` does, costs ~0.7 s more system time per GB here)."""
TARGET = 1.5


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def cdn_url(hub: TestHub) -> str:
    """Where the hub redirects the file's resolve URL (its CDN's signed URL)."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(urllib.request.Request(f"{hub.endpoint}/{REPO_ID}/resolve/main/{FILENAME}", method="HEAD"))
    except urllib.error.HTTPError as redirect:
        if redirect.code in (301, 302, 307) and redirect.headers.get("Location"):
            return str(redirect.headers["Location"])
        raise
    raise SystemExit("the hub did not redirect the file to its CDN")


class Floor:
    """The floor's child processes, beside bench/pull_bench.py's aria2c and `mreg pull`."""

    def __init__(self, bench: Bench, source: Path, url: str) -> None:
        """``source``: the file the hub serves; ``url``: its CDN URL."""
        self.bench, self.source, self.url = bench, source, url

    def _python(self, tool: str, *argv: str) -> Run:
        work = self.bench._fresh("floor")
        run = spawn(tool, [sys.executable, *argv], self.bench.env, work / "log", self.bench.hub)
        if run.exit_code != 0:
            raise SystemExit(f"{tool} exited {run.exit_code}; see {work / 'log'}.err")
        return run

    def warm_up(self) -> None:
        """Run the floor's children once, unmeasured, so bytecode is cached (the imports with mreg's own)."""
        self._python("warm-up", "-c", f"{IMPORTS}, mreg.cli.remote_commands, mreg.registry.catalog.catalog")
        self.receive()

    def receive(self) -> Run:
        work = self.bench._fresh("receive")
        out = work / FILENAME
        run = spawn("receive and write (bare Python)", [sys.executable, str(ROOT / "bench" / "receive_floor.py"),
                                                         self.url, str(self.bench.blob.size), str(out)],
                    self.bench.env, work / "log", self.bench.hub)
        return self.bench._check(run, out, work / "log")

    def sha256(self) -> Run:
        return self._python("sha256 of the file", "-c", HASH, str(self.source))

    def imports(self) -> Run:
        return self._python("imports: aiohttp, SQLAlchemy asyncio, aiosqlite", "-c", IMPORTS)

    def start(self) -> Run:
        return self._python("interpreter start and exit", "-c", "pass")


def report(medians: dict[str, float], args: argparse.Namespace, info: dict[str, str]) -> str:
    """The Markdown table: the peer, mreg, the floor's parts, the floor, the target and the room."""
    aria2c, mreg, start = medians["aria2c"], medians["mreg"], medians["start"]
    parts = {"receive and write (bare Python: epoll, recv, pwrite)": medians["receive"],
             "sha256 of every byte (less an interpreter start)": medians["sha256"] - start,
             "imports: aiohttp, SQLAlchemy's asyncio engine, aiosqlite (less an interpreter start)":
                 medians["imports"] - start}
    floor, budget = sum(parts.values()), TARGET * aria2c
    rows = [("aria2c -x16 -s16 -k1M (the peer)", aria2c), ("`mreg pull`", mreg), *parts.items(),
            ("**floor** (the sum of the three)", floor), (f"target: {TARGET} x aria2c", budget),
            ("room: the target less the floor", budget - floor), ("`mreg pull` above the floor", mreg - floor)]
    lines = [f"{args.size / 1e6:.0f} MB LFS file, {args.throttle / 1e6:g} MB/s per connection, median CPU (user + sys) "
             f"of {args.runs} run(s); {info['date']}, {info['nproc']} CPUs ({info['cpu']}), kernel {info['kernel']}, "
             f"Python {info['python']}", "", "| what | CPU s | vs aria2c |", "|---|---:|---:|"]
    lines += [f"| {name} | {value:.2f} | {value / aria2c:.2f} |" for name, value in rows]
    met = "met" if mreg <= budget else "not met"
    lines += ["", f"`mreg pull` / aria2c: {mreg / aria2c:.2f} (target {TARGET}: {met}); the floor alone is "
              f"{floor / aria2c:.2f} x aria2c.", "",
              f"Reproduce: `python bench/cpu_floor.py --size {args.size} --throttle {args.throttle} --runs {args.runs}`"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1_500_000_000, help="file size in bytes")
    parser.add_argument("--throttle", type=int, default=25_000_000, help="bytes/s per CDN connection")
    parser.add_argument("--runs", type=int, default=3, help="rounds, each measuring everything once")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/mreg-bench"), help="big file and work dirs")
    parser.add_argument("--json", type=Path, help="also write every run and the medians here")
    args = parser.parse_args()
    args.gated, args.baseline = False, None  # what Bench reads of pull_bench's options
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    source, blob = weights(args.cache_dir, args.size)
    with TestHub() as hub:
        hub.faults.throttle = args.throttle
        hub.add_repo(HubRepo(REPO_ID)).commit({FILENAME: blob})
        bench = Bench(args, hub, blob, blob)
        floor = Floor(bench, source, cdn_url(hub))
        measures = {"aria2c": bench.aria2c, "mreg": lambda: bench.mreg(None), "receive": floor.receive,
                    "sha256": floor.sha256, "imports": floor.imports, "start": floor.start}
        floor.warm_up()
        runs: dict[str, list[Run]] = {name: [] for name in measures}
        for i in range(args.runs):
            for name, measure in measures.items():
                run = measure()
                print(f"[{i + 1}/{args.runs}] {run.tool}: {run.seconds:.2f} s, {run.cpu_seconds:.2f} s CPU",
                      file=sys.stderr)
                runs[name].append(run)
        shutil.rmtree(bench.work, ignore_errors=True)
    medians = {name: statistics.median(r.cpu_seconds for r in rs) for name, rs in runs.items()}
    info = machine_info()
    print(report(medians, args, info))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "medians": medians,
                                         "runs": {name: [asdict(r) for r in rs] for name, rs in runs.items()}},
                                        indent=2))


if __name__ == "__main__":
    main()
