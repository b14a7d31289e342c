"""Benchmark warm reads: clients reading a file `mreg serve` has stored, against nginx serving the same
bytes from disk, in one run.

    python bench/serve_bench.py [--size 1500000000] [--clients 8] [--runs 3] [--cache-dir /tmp/mreg-serve-bench]

The file is stored in a `mreg serve` home by one cold read from the test hub (on loopback); nginx
(Debian's, `sendfile on`, one worker per CPU) then serves that very blob file. Each run reads the file
with `--clients` concurrent `curl` processes from each server in turn (nginx first, then mreg; the page
cache is warm for both) and times them until the last one finished; each server's CPU seconds (user +
system, every process of it) are read from /proc around the run, and its peak RSS (VmHWM; for nginx, its
largest process) at the end. Every run checks each client's byte count; one extra read per server checks
the sha256. Reported: the median of the runs. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.daemon_bench import MB, Mreg, free_port, sha256_of, wait_listening  # noqa: E402
from bench.machine import describe, machine_info  # noqa: E402
from mreg.registry.blobs import LocalBlobStore  # noqa: E402
from bench.weights import FILENAME, REPO_ID, weights  # noqa: E402
from tests.testhub import HubRepo, TestHub  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
NGINX_CONF = """daemon off;
{user}worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    server {{
        listen 127.0.0.1:{port};
        location = /{name} {{ alias {blob}; }}
    }}
}}
"""


@dataclass
class Run:
    """One run of one server: wall seconds until every client finished, and the server's CPU seconds."""

    seconds: float
    cpu: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, parsed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1_500_000_000, help="file size in bytes")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per server (the median is reported)")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/mreg-serve-bench"), help="file and work dirs")
    return parser.parse_args(argv)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` used so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / TICKS


def peak_rss_mib(pids: list[int]) -> float:
    """The largest peak RSS (VmHWM) among the processes ``pids``, in MiB."""
    peaks = [int(line.split()[1]) for pid in pids for line in Path(f"/proc/{pid}/status").read_text().splitlines()
             if line.startswith("VmHWM:")]
    return max(peaks) / 1024


def children(pid: int) -> list[int]:
    """The process and its children (nginx's master and workers)."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid, *map(int, found)]


def read_with_clients(url: str, clients: int, size: int, pids: list[int]) -> Run:
    """``clients`` curl processes reading ``url`` at once; each must get ``size`` bytes with a 200."""
    def one(_: int) -> None:
        done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url],
                              capture_output=True, text=True)
        if done.stdout.split() != ["200", str(size)]:
            raise SystemExit(f"{url}: curl got {done.stdout!r} (exit {done.returncode})")

    cpu = cpu_seconds(pids)
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(clients)))
    return Run(time.perf_counter() - start, cpu_seconds(pids) - cpu)


def check_bytes(url: str, target: Path, sha256: str) -> None:
    """One read of ``url`` into ``target``, compared with the file's sha256."""
    subprocess.run(["curl", "-s", "-f", "-o", str(target), url], check=True)
    if sha256_of(target) != sha256:
        raise SystemExit(f"{url} did not send the file's bytes")
    target.unlink()


def start_nginx(prefix: Path, blob: Path) -> tuple[subprocess.Popen[bytes], str]:
    """nginx serving ``blob`` as /FILENAME on a free loopback port."""
    prefix.mkdir(parents=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user="user root;\n" if os.geteuid() == 0 else "", workers=os.cpu_count() or 1,
                                      prefix=prefix, port=port, name=FILENAME, blob=blob))
    process = subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
    wait_listening(port, process, prefix / "error.log")
    return process, f"http://127.0.0.1:{port}/{FILENAME}"


def report(runs: dict[str, list[Run]], peaks: dict[str, float], args: argparse.Namespace) -> str:
    """The Markdown table and the command that reproduces it."""
    served = args.size * args.clients
    lines = [f"{args.size / MB:.0f} MB stored file, {args.clients} concurrent clients (curl), median of "
             f"{args.runs} runs; {describe(machine_info())}", "",
             "| server | seconds | MB/s (sum) | server CPU s per GB | time / nginx's | peak RSS MiB |",
             "|---|---:|---:|---:|---:|---:|"]
    nginx = statistics.median(r.seconds for r in runs["nginx"])
    for name, measured in runs.items():
        seconds = statistics.median(r.seconds for r in measured)
        cpu = statistics.median(r.cpu for r in measured)
        lines.append(f"| {name} | {seconds:.2f} | {served / seconds / MB:.0f} | {cpu / (served / 1e9):.2f} "
                     f"| {seconds / nginx:.2f} | {peaks[name]:.0f} |")
    lines += ["", f"Reproduce: `python bench/serve_bench.py --size {args.size} --clients {args.clients} "
              f"--runs {args.runs}`"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Store the file through mreg, serve it from mreg and nginx, print the report."""
    args = parse_args(argv)
    if shutil.which("nginx") is None or shutil.which("curl") is None:
        raise SystemExit("needs nginx and curl (apt-get install nginx curl)")
    work = args.cache_dir / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    _, blob = weights(args.cache_dir, args.size)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MREG_")) and "proxy" not in k.lower()}
    with TestHub() as hub:
        hub.add_repo(HubRepo(REPO_ID)).commit({FILENAME: blob})
        mreg = Mreg(hub, env, work / "mirror")
        nginx = None
        try:
            mreg_url = f"{mreg.url}/{REPO_ID}/resolve/main/{FILENAME}"
            check_bytes(mreg_url, work / "check", blob.sha256)  # the cold read that stores it
            stored = LocalBlobStore(mreg.home).path(blob.sha256)
            if not stored.is_file():
                raise SystemExit(f"mreg did not store the file at {stored}")
            nginx, nginx_url = start_nginx(work / "nginx", stored)
            check_bytes(nginx_url, work / "check", blob.sha256)
            check_bytes(mreg_url, work / "check", blob.sha256)  # now warm
            servers = {"nginx (sendfile)": (nginx_url, children(nginx.pid)), "mreg serve": (mreg_url, [mreg.process.pid])}
            runs: dict[str, list[Run]] = {name: [] for name in servers}
            for i in range(args.runs):
                for name, (url, pids) in servers.items():
                    runs[name].append(read_with_clients(url, args.clients, args.size, pids))
                    print(f"run {i + 1}: {name}: {runs[name][-1]}", file=sys.stderr)
            peaks = {name: peak_rss_mib(pids) for name, (_, pids) in servers.items()}
        finally:
            if nginx is not None:
                nginx.terminate()
                nginx.wait()
            mreg.stop()
    shutil.rmtree(work, ignore_errors=True)
    names = {"nginx (sendfile)": "nginx", "mreg serve": "mreg serve"}
    print(report({names[n]: r for n, r in runs.items()}, {names[n]: p for n, p in peaks.items()}, args))


if __name__ == "__main__":
    main()
