"""Benchmark scale-out: one `mreg serve` on SQLite + the local store, one on PostgreSQL + S3, and three replicas
on PostgreSQL + S3, side by side in one run, all in front of the same throttled test hub.

    python bench/replicas_bench.py [--size 240000000] [--clients 1,3,6] [--throttle 25000000]
                                   [--jobs 4] [--job-size 48000000] [--json FILE]

For each setup and each client count N (a repo of its own per N, so every round starts cold):
- **cold**: N clients at once read the file through the replicas (client i through replica i mod R), each a
  plain streaming GET of its resolve URL hashed as it arrives: wall time until the last client is done, the
  aggregate throughput, the slowest first byte, and the bytes upstream sent for the file over its size;
- **warm**: the same N clients again, served from the store;
- **jobs**: ``--jobs`` mirror jobs added through the first replica, timed until every job is done, with the
  upstream bytes over the repos' size.
Every body is checked against the file's sha256. PostgreSQL (tests/postgres.py) and SeaweedFS
(tests/seaweed.py) are started for the run; replicas are real processes. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.daemons import DaemonProcess, start_daemon_process  # noqa: E402
from tests.postgres import PostgresCluster  # noqa: E402
from tests.seaweed import BUCKET, SeaweedServer  # noqa: E402
from tests.test_mirror import call, jobs  # noqa: E402
from tests.testhub import TestHub, generated_file, small_repo  # noqa: E402

NAME = "weights.bin"


@dataclass(frozen=True)
class Setup:
    """How the replicas of one row run: how many, and on which catalog and store."""

    name: str
    replicas: int
    shared: bool
    """PostgreSQL + S3 (else SQLite + the local store in each home)."""


SETUPS = (Setup("local, 1 replica", 1, False), Setup("S3, 1 replica", 1, True), Setup("S3, 3 replicas", 3, True))


@dataclass(frozen=True)
class Round:
    """What N clients reading one file at once saw."""

    clients: int
    seconds: float
    mb_per_s: float
    first_byte_max: float
    upstream_ratio: float


def read(url: str, sha256: str, out: dict[str, float]) -> None:
    """GET ``url`` to the end, hashing it; its first-byte and total seconds into ``out`` (SystemExit on a wrong body)."""
    start, digest = time.monotonic(), hashlib.sha256()
    with urllib.request.urlopen(url, timeout=120) as response:
        first = response.read(1 << 16)
        out["first"] = time.monotonic() - start
        while first:
            digest.update(first)
            first = response.read(1 << 20)
    out["total"] = time.monotonic() - start
    if digest.hexdigest() != sha256:
        raise SystemExit(f"{url}: wrong sha256 {digest.hexdigest()}")


def clients_round(replicas: list[DaemonProcess], repo: str, sha256: str, size: int, clients: int,
                  hub: TestHub) -> Round:
    """N clients at once through the replicas; the bytes upstream sent for ``sha256`` meanwhile."""
    before = hub.stats.bytes_by_sha256[sha256]
    results = [dict[str, float]() for _ in range(clients)]
    threads = [threading.Thread(target=read, args=(f"{replicas[i % len(replicas)].url}/{repo}/resolve/main/{NAME}",
                                                     sha256, results[i])) for i in range(clients)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - start
    if any("total" not in r for r in results):
        raise SystemExit(f"{repo}: a client failed (see above)")
    sent = hub.stats.bytes_by_sha256[sha256] - before
    return Round(clients, seconds, clients * size / seconds / 1e6, max(r["first"] for r in results), sent / size)


def job_round(replicas: list[DaemonProcess], repos: list[str], shas: list[str], size: int, hub: TestHub) -> dict:
    """Mirror jobs for ``repos`` added through the first replica, timed until all are done."""
    before = sum(hub.stats.bytes_by_sha256[s] for s in shas)
    start = time.monotonic()
    for repo in repos:
        status, body = call(replicas[0], "POST", "/v1/jobs", {"repo": repo})
        if status != 201:
            raise SystemExit(f"adding the job of {repo}: {status} {body}")
    while {jobs(replicas[0]).get(r, {}).get("status") for r in repos} != {"done"}:
        if "failed" in {j.get("status") for j in jobs(replicas[0]).values()}:
            raise SystemExit(f"a job failed: {jobs(replicas[0])}")
        time.sleep(0.2)  # the poll's interval (a benchmark, not a test)
    seconds = time.monotonic() - start
    sent = sum(hub.stats.bytes_by_sha256[s] for s in shas) - before
    return {"jobs": len(repos), "seconds": seconds, "mb_per_s": len(repos) * size / seconds / 1e6,
            "upstream_ratio": sent / (len(repos) * size)}


def start_setup(setup: Setup, root: Path, hub: TestHub, postgres: PostgresCluster | None,
                seaweed: SeaweedServer | None) -> list[DaemonProcess]:
    """The setup's replicas, each with a home of its own."""
    args: tuple[str, ...] = ()
    env: dict[str, str] = {}
    if setup.shared:
        assert postgres is not None and seaweed is not None
        args = ("--database-url", postgres.new_database(), "--store", f"s3://{BUCKET}/{seaweed.new_prefix()}")
        env = seaweed.env()
    base = root / setup.name.replace(", ", "-").replace(" ", "")
    return [start_daemon_process(base / f"r{i}" / "home", hub.endpoint, *args, env=env) for i in range(setup.replicas)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=240_000_000)
    parser.add_argument("--clients", default="1,3,6")
    parser.add_argument("--throttle", type=int, default=25_000_000, help="bytes/s per upstream connection")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--job-size", type=int, default=48_000_000)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "mreg-replicas-bench")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    counts = [int(n) for n in args.clients.split(",")]
    files = {n: generated_file(args.cache_dir / f"clients{n}.bin", args.size, seed=100 + n) for n in counts}
    job_files = [generated_file(args.cache_dir / f"job{j}.bin", args.job_size, seed=200 + j) for j in range(args.jobs)]
    root = Path(tempfile.mkdtemp(prefix="run-", dir=args.cache_dir))
    postgres, seaweed = PostgresCluster(), SeaweedServer()
    results: dict[str, dict] = {}
    try:
        with TestHub() as hub:
            shas = {}
            for n, data in files.items():
                repo = hub.add_repo(small_repo(f"bench/clients{n}", {NAME: data}))
                shas[n] = repo.head.files[NAME].blob.sha256
            job_repos, job_shas = [], []
            for j, data in enumerate(job_files):
                repo = hub.add_repo(small_repo(f"bench/job{j}", {NAME: data}))
                job_repos.append(f"bench/job{j}")
                job_shas.append(repo.head.files[NAME].blob.sha256)
            hub.faults.throttle = args.throttle
            for setup in SETUPS:
                replicas = start_setup(setup, root, hub, postgres, seaweed)
                try:
                    row: dict = {"cold": [], "warm": []}
                    for n in counts:
                        for kind in ("cold", "warm"):
                            done = clients_round(replicas, f"bench/clients{n}", shas[n], args.size, n, hub)
                            row[kind].append(asdict(done))
                            print(f"{setup.name:17} {kind} {n} clients: {done.seconds:6.1f} s "
                                  f"{done.mb_per_s:6.0f} MB/s, first byte <= {done.first_byte_max:4.1f} s, "
                                  f"upstream {done.upstream_ratio:.2f}x", flush=True)
                    row["jobs"] = job_round(replicas, job_repos, job_shas, args.job_size, hub)
                    print(f"{setup.name:17} jobs: {row['jobs']['seconds']:.1f} s, "
                          f"upstream {row['jobs']['upstream_ratio']:.2f}x", flush=True)
                    results[setup.name] = row
                finally:
                    for replica in replicas:
                        replica.stop()
    finally:
        seaweed.stop()
        postgres.stop()
    summary = {"size": args.size, "throttle": args.throttle, "load_average_end": os.getloadavg()[0],
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "setups": results}
    print(f"\n{args.size:,} bytes per file, {args.throttle / 1e6:.0f} MB/s per upstream connection, "
          f"load average {summary['load_average_end']:.1f} at the end")
    print("| setup | clients | cold s | cold MB/s | slowest 1st byte | upstream × file | warm s | warm MB/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in results.items():
        for cold, warm in zip(row["cold"], row["warm"]):
            print(f"| {name} | {cold['clients']} | {cold['seconds']:.1f} | {cold['mb_per_s']:.0f} | "
                  f"{cold['first_byte_max']:.1f} s | {cold['upstream_ratio']:.2f} | {warm['seconds']:.1f} | "
                  f"{warm['mb_per_s']:.0f} |")
    print("\n| setup | jobs | seconds | MB/s | upstream × repos |\n|---|---:|---:|---:|---:|")
    for name, row in results.items():
        j = row["jobs"]
        print(f"| {name} | {j['jobs']} | {j['seconds']:.1f} | {j['mb_per_s']:.0f} | {j['upstream_ratio']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
