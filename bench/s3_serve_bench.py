"""Benchmark the daemon over an S3 store against the local store: one cold and one warm `hf_hub_download` of
one file through `mreg serve` (in process), first with the local store, then with `--store s3://…` on a
SeaweedFS started for the run (tests/seaweed.py), then with `--redirect-to-store` too (warm reads from the
store itself, named ``localhost``), the test hub on loopback as upstream.

    python bench/s3_serve_bench.py [--size 600000000] [--runs 1]

Reported per store: the cold time (upstream fetch, verification, publish, the client's last byte) and the
warm time (served from the store), medians of the runs, each download checked by size. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from huggingface_hub import hf_hub_download  # noqa: E402

from tests.daemons import start_daemon  # noqa: E402
from tests.seaweed import BUCKET, SeaweedServer  # noqa: E402
from tests.testhub import TestHub, generated_file, small_repo  # noqa: E402

REPO, NAME = "bench/s3-serve", "big.bin"


def timed_download(url: str, cache: Path, size: int) -> float:
    """Seconds one `hf_hub_download` of the file through ``url`` took (checked by size)."""
    start = time.monotonic()
    path = hf_hub_download(REPO, NAME, cache_dir=cache, endpoint=url, token=False)
    seconds = time.monotonic() - start
    if os.path.getsize(path) != size:
        raise SystemExit(f"{path}: {os.path.getsize(path)} bytes, expected {size}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=600_000_000)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mreg-s3-bench-"))
    data = generated_file(root / NAME, args.size)
    seaweed = SeaweedServer()
    os.environ.update(seaweed.env())
    results: dict[str, list[tuple[float, float]]] = {"local": [], "s3": [], "s3-redirect": []}
    public = seaweed.endpoint.replace("127.0.0.1", "localhost")
    try:
        with TestHub() as hub:
            hub.add_repo(small_repo(REPO, {NAME: data}))
            for run in range(args.runs):
                for store, extra in (("local", ()), ("s3", ("--store", f"s3://{BUCKET}/run{run}")),
                                     ("s3-redirect", ("--store", f"s3://{BUCKET}/redirect{run}", "--redirect-to-store",
                                                      "--store-public-url", public))):
                    home = root / f"{store}-{run}"
                    daemon = start_daemon(home / "home", hub.endpoint, *extra)
                    try:
                        cold = timed_download(daemon.url, home / "cold", args.size)
                        warm = timed_download(daemon.url, home / "warm", args.size)
                    finally:
                        daemon.stop()
                    results[store].append((cold, warm))
    finally:
        seaweed.stop()
    print(f"{args.size:,} bytes, {args.runs} run(s), load average {os.getloadavg()[0]:.1f} at the end")
    for store, runs in results.items():
        cold = statistics.median(r[0] for r in runs)
        warm = statistics.median(r[1] for r in runs)
        print(f"{store:11}  cold {cold:6.2f} s  warm {warm:6.2f} s")


if __name__ == "__main__":
    main()
