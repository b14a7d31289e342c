"""Benchmark multi-source downloads: one big file from one capped server vs from two, mreg and aria2c.

    python bench/multisource_bench.py [--size 300000000] [--bandwidth 20000000] [--json out.json]

Two test hubs run in this process (background threads), each serving the same repo behind a link
capped at `--bandwidth` bytes/s for all its responses together (`faults.bandwidth`). Four child
processes, each with a fresh home, after an unmeasured warm-up: `mreg pull` from the first hub;
`mreg pull --also-from` the second; aria2c with the first hub's URL; aria2c with both URLs (it splits
one file across the URIs it is given). Wall time covers the whole child; each output is checked
against the file's sha256, and each hub's body bytes are counted. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import describe, machine_info  # noqa: E402
from tests.testhub import Blob, HubRepo, TestHub, generated_file  # noqa: E402

REPO_ID = "bench/multi-source"
WARM_UP_REPO = "bench/warm-up"
FILENAME = "weights.bin"
SEED = 20240602
MB = 1_000_000
POLL = 0.02
"""Seconds between looks at the child and the servers' byte counters."""
ARIA2C_ARGS = ["--console-log-level=error", "--file-allocation=none", "--summary-interval=0",
               "-x16", "-s32", "-k1M"]
"""aria2c as hfd.sh runs it, with up to 32 splits so that two servers get 16 connections each."""


@dataclass
class Run:
    tool: str
    seconds: float
    first_byte: float
    """Seconds from the start to the first body byte either server sent (within POLL)."""
    last_byte: float
    """Seconds from the start to the last body byte either server sent (within POLL)."""
    cpu_seconds: float
    """User + system CPU of the child (and its children)."""
    first_hub_bytes: int
    second_hub_bytes: int


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=300_000_000, help="file size in bytes")
    parser.add_argument("--bandwidth", type=int, default=20_000_000, help="bytes/s of each server, all connections")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/mreg-bench-multi"), help="big file and work dirs")
    parser.add_argument("--json", type=Path, help="also write the runs and the ratios here")
    return parser.parse_args()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Bench:
    def __init__(self, args: argparse.Namespace, hubs: tuple[TestHub, TestHub], blob: Blob) -> None:
        self.args, self.hubs, self.blob = args, hubs, blob
        self.work = args.cache_dir / "work"
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"
                    and not k.startswith(("HF_", "HUGGING_FACE_", "MREG_")) and "proxy" not in k.lower()}
        self.env.update(HF_ENDPOINT=hubs[0].endpoint, NO_PROXY="127.0.0.1,127.0.0.2,localhost",
                        PYTHONPYCACHEPREFIX=str(args.cache_dir / "pycache"))

    def _fresh(self) -> Path:
        shutil.rmtree(self.work, ignore_errors=True)
        os.sync()
        self.work.mkdir(parents=True)
        return self.work

    def _url(self, hub: TestHub, repo_id: str) -> str:
        return f"{hub.endpoint}/{repo_id}/resolve/main/{FILENAME}"

    def mreg_cmd(self, repo_id: str, sources: int) -> list[str]:
        mirrors = [arg for hub in self.hubs[1:sources] for arg in ("--also-from", hub.endpoint)]
        return [sys.executable, "-m", "mreg.cli.main", "pull", repo_id, *mirrors]

    def aria2c_cmd(self, repo_id: str, sources: int, out_dir: Path) -> list[str]:
        urls = [self._url(hub, repo_id) for hub in self.hubs[:sources]]
        return ["aria2c", *ARIA2C_ARGS, "-d", str(out_dir), "-o", FILENAME, *urls]

    def warm_up(self) -> None:
        """Each tool once on a small file, unmeasured, so bytecode and binaries are cached."""
        work = self._fresh()
        env = {**self.env, "MREG_HOME": str(work / "mreg")}
        for cmd in (self.mreg_cmd(WARM_UP_REPO, 2), self.aria2c_cmd(WARM_UP_REPO, 2, work)):
            subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True)

    def run(self, tool: str, sources: int) -> Run:
        work = self._fresh()
        env = {**self.env, "MREG_HOME": str(work / "home")}
        if tool == "mreg":
            cmd, name = self.mreg_cmd(REPO_ID, sources), "mreg pull" + (" --also-from" if sources > 1 else "")
        else:
            cmd, name = self.aria2c_cmd(REPO_ID, sources, work / "out"), f"aria2c, {sources} URL(s)"
        for hub in self.hubs:
            hub.stats.reset()
        sent, first_byte, last_byte, cpu0 = 0, 0.0, 0.0, _children_cpu()
        with (work / "log.out").open("wb") as out, (work / "log.err").open("wb") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=err)
            while proc.poll() is None:
                time.sleep(POLL)
                now, served = time.perf_counter() - start, sum(hub.stats.cdn_bytes for hub in self.hubs)
                if served > sent:
                    first_byte, last_byte, sent = first_byte or now, now, served
            seconds = time.perf_counter() - start
        cpu = _children_cpu() - cpu0
        if proc.returncode != 0:
            raise SystemExit(f"{name} exited {proc.returncode}; see {work / 'log.err'}")
        printed = (work / "log.out").read_text().strip().splitlines()
        output = (Path(printed[-1]) if tool == "mreg" else work / "out") / FILENAME
        if sha256_of(output) != self.blob.sha256:
            raise SystemExit(f"{name} wrote wrong bytes to {output}")
        first, second = (hub.stats.bytes_by_sha256[self.blob.sha256] for hub in self.hubs)
        return Run(name, seconds, first_byte, last_byte, cpu, first, second)


def main() -> None:
    args = parse_args()
    if shutil.which("aria2c") is None:
        raise SystemExit("aria2c is needed (Debian: apt-get install aria2)")
    blob = Blob.from_file(generated_file(args.cache_dir / "source" / FILENAME, args.size, seed=SEED))
    warm = Blob.from_bytes(os.urandom(2 * MB))
    with TestHub() as first, TestHub() as second:
        for hub in (first, second):
            hub.add_repo(HubRepo(REPO_ID)).commit({FILENAME: blob})
            hub.add_repo(HubRepo(WARM_UP_REPO)).commit({FILENAME: warm})
        bench = Bench(args, (first, second), blob)
        bench.warm_up()
        for hub in (first, second):
            hub.faults.bandwidth = args.bandwidth
        runs = [bench.run(tool, sources) for tool in ("mreg", "aria2c") for sources in (1, 2)]
    mreg_one, mreg_two, aria_one, aria_two = runs
    ratios = {"mreg two sources / one": mreg_two.seconds / mreg_one.seconds,
              "mreg two sources / one, first to last byte": ((mreg_two.last_byte - mreg_two.first_byte)
                                                            / (mreg_one.last_byte - mreg_one.first_byte)),
              "aria2c two URLs / one": aria_two.seconds / aria_one.seconds,
              "mreg two sources / aria2c two URLs": mreg_two.seconds / aria_two.seconds}
    info = machine_info(aria2c=subprocess.run(["aria2c", "--version"], capture_output=True, text=True, check=True)
                        .stdout.split()[2])
    print(describe(info))
    print(f"{args.size / MB:.0f} MB file, each server capped at {args.bandwidth / MB:.0f} MB/s (all connections)\n")
    print("| tool | seconds | MB/s | to 1st byte s | transfer s | after last byte s | CPU s | from server 1 | from server 2 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        share = run.first_hub_bytes + run.second_hub_bytes
        print(f"| {run.tool} | {run.seconds:.2f} | {args.size / MB / run.seconds:.1f} | {run.first_byte:.2f} | "
              f"{run.last_byte - run.first_byte:.2f} | {run.seconds - run.last_byte:.2f} | "
              f"{run.cpu_seconds:.1f} | {run.first_hub_bytes / share:.0%} | {run.second_hub_bytes / share:.0%} |")
    print()
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}")
    print(f"target (mreg two sources / one <= 0.6): {'met' if ratios['mreg two sources / one'] <= 0.6 else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "runs": [asdict(r) for r in runs], "ratios": ratios},
                                        indent=2))


if __name__ == "__main__":
    main()
