"""Benchmark `mreg serve` (and olah, the best-known open-source HF mirror) in front of the test hub.

    python bench/daemon_bench.py [--size 500000000] [--throttle 25000000] [--clients 8] \
        [--olah /tmp/olah-venv/bin/olah-cli]

One big LFS file on the test hub (this process, a background thread), each CDN connection capped
at `--throttle` bytes/s as in bench/pull_bench.py. Every client is `hf_hub_download` in its own
child process with a fresh HF_HOME: straight from the hub with HF_HUB_DISABLE_XET=1, through a
mirror with the client's defaults (xet enabled; mirrors answer without xet headers). Per mirror:
one cold client on an empty mirror, then one warm client, then `--clients` cold clients at once on
a fresh, empty mirror; and `mreg pull` of the file straight from the hub, the speed a cold client of
the mirror should get. Upstream bytes are the hub's CDN body bytes over the file size. Every
client's output is checked against the file's sha256. `--olah` is olah's `olah-cli` (install it in
its own venv: `python -m venv /tmp/olah-venv && /tmp/olah-venv/bin/pip install olah`); without it
olah is skipped. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import describe, machine_info  # noqa: E402
from bench.weights import FILENAME, REPO_ID, weights  # noqa: E402
from tests.testhub import Blob, HubRepo, TestHub  # noqa: E402

MB = 1_000_000
START_DEADLINE = 60.0
HF_SCRIPT = "import sys; from huggingface_hub import hf_hub_download; print(hf_hub_download(sys.argv[1], sys.argv[2]))"


@dataclass
class Scenario:
    """One measured scenario: wall seconds until every client finished, and the hub's CDN bytes."""

    seconds: float
    cdn_bytes: int


@dataclass
class Row:
    """One setup's line of the table."""

    setup: str
    cold: Scenario
    warm: Scenario | None
    crowd: Scenario | None
    crowd_peak_rss_mib: float | None = None
    """The mirror process's peak RSS (VmHWM) once the crowd was served (None: no mirror)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, parsed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=500_000_000, help="file size in bytes")
    parser.add_argument("--throttle", type=int, default=25_000_000, help="bytes/s per CDN connection")
    parser.add_argument("--clients", type=int, default=8, help="cold clients at once")
    parser.add_argument("--olah", type=Path, help="olah's olah-cli (in its own venv); olah is skipped without it")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/mreg-daemon-bench"), help="big file and work dirs")
    return parser.parse_args(argv)


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Return once something accepts connections on 127.0.0.1:port; fail if ``process`` exits first."""
    end = time.monotonic() + START_DEADLINE
    while time.monotonic() < end:
        if process.poll() is not None:
            raise SystemExit(f"the mirror exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the mirror did not listen within {START_DEADLINE} s; see {log}")


def sha256_of(path: Path) -> str:
    """The sha256 of a file's bytes."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Mirror:
    """A mirror process in front of the hub, started on an empty home and stopped with SIGTERM."""

    name = ""

    def __init__(self, hub: TestHub, env: dict[str, str], home: Path) -> None:
        self.hub, self.env, self.home = hub, env, home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home.with_suffix(".log")
        home.mkdir(parents=True)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(self.command(), cwd=home, env=self.process_env(), stdout=out,
                                            stderr=subprocess.STDOUT)
        wait_listening(self.port, self.process, self.log)

    def command(self) -> list[str]:
        """The mirror's command line (each kind of mirror says its own)."""
        raise NotImplementedError

    def process_env(self) -> dict[str, str]:
        """The mirror process's environment."""
        return self.env

    def peak_rss_mib(self) -> float:
        """The mirror process's peak RSS so far (VmHWM), in MiB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text().splitlines()
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s."""
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Mreg(Mirror):
    """`mreg serve` with its defaults."""

    name = "mreg serve"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "mreg.cli.main", "serve", "--host", "127.0.0.1", "--port", str(self.port)]

    def process_env(self) -> dict[str, str]:
        return {**self.env, "MREG_HOME": str(self.home), "HF_ENDPOINT": self.hub.endpoint, "PYTHONPATH": str(ROOT)}


class Olah(Mirror):
    """olah with its defaults, its upstream (Hub and LFS host) set to the test hub on loopback."""

    name = "olah"
    cli: Path

    def command(self) -> list[str]:
        hub, cdn = self.hub.endpoint.partition("://")[2], self.hub.cdn_base.partition("://")[2]
        return [str(self.cli), "--host", "127.0.0.1", "--port", str(self.port), "--hf-scheme", "http",
                "--hf-netloc", hub, "--hf-lfs-netloc", cdn, "--mirror-scheme", "http",
                "--mirror-netloc", f"127.0.0.1:{self.port}", "--mirror-lfs-netloc", f"127.0.0.1:{self.port}",
                "--repos-path", str(self.home / "repos"), "--log-path", str(self.home / "logs")]


class Bench:
    """The hub, the file, the clients and a fresh work dir per scenario."""

    def __init__(self, args: argparse.Namespace, hub: TestHub, blob: Blob) -> None:
        self.args, self.hub, self.blob = args, hub, blob
        self.work = args.cache_dir / "work"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE_", "MREG_"))
                    and "proxy" not in k.lower()}
        self.env.update(NO_PROXY="127.0.0.1,127.0.0.2,localhost", HF_HUB_DISABLE_PROGRESS_BARS="1",
                        HF_HUB_DISABLE_TELEMETRY="1", PYTHONPYCACHEPREFIX=str(args.cache_dir / "pycache"))

    def fresh(self) -> None:
        """Remove the previous scenario's files, flushing their writes."""
        shutil.rmtree(self.work, ignore_errors=True)
        os.sync()
        self.work.mkdir(parents=True)

    def clients(self, endpoint: str, count: int, direct: bool) -> Scenario:
        """``count`` hf_hub_download processes at once against ``endpoint``; checked, then timed together."""
        env = {**self.env, "HF_ENDPOINT": endpoint, **({"HF_HUB_DISABLE_XET": "1"} if direct else {})}
        stamp = time.monotonic_ns()

        def one(i: int) -> Path:
            home = self.work / f"client-{stamp}-{i}"
            done = subprocess.run([sys.executable, "-c", HF_SCRIPT, REPO_ID, FILENAME], cwd=ROOT,
                                  env={**env, "HF_HOME": str(home)}, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"client {i} via {endpoint} exited {done.returncode}:\n{done.stderr[-3000:]}")
            return Path(done.stdout.strip().splitlines()[-1])

        self.hub.stats.reset()
        start = time.perf_counter()
        with ThreadPoolExecutor(count) as pool:
            outputs = list(pool.map(one, range(count)))
        scenario = Scenario(time.perf_counter() - start, self.hub.stats.cdn_bytes)
        for output in outputs:
            if sha256_of(output) != self.blob.sha256:
                raise SystemExit(f"{output} does not hold the served bytes")
        return scenario

    def direct(self) -> Row:
        """Clients straight from the hub (no mirror, so no warm run)."""
        self.fresh()
        cold = self.clients(self.hub.endpoint, 1, direct=True)
        self.fresh()
        return Row("hf_hub_download, straight from the hub", cold, None,
                   self.clients(self.hub.endpoint, self.args.clients, direct=True))

    def pulled(self) -> Row:
        """`mreg pull` of the file straight from the hub, as the cold client's yardstick (no mirror, no crowd)."""
        self.fresh()
        home = self.work / "pull-home"
        env = {**self.env, "HF_ENDPOINT": self.hub.endpoint, "MREG_HOME": str(home), "PYTHONPATH": str(ROOT)}
        self.hub.stats.reset()
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "mreg.cli.main", "pull", REPO_ID], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        cold = Scenario(time.perf_counter() - start, self.hub.stats.cdn_bytes)
        if done.returncode != 0:
            raise SystemExit(f"mreg pull exited {done.returncode}:\n{done.stderr[-3000:]}")
        if sha256_of(Path(done.stdout.strip().splitlines()[-1]) / FILENAME) != self.blob.sha256:
            raise SystemExit("mreg pull did not store the served bytes")
        return Row("mreg pull, straight from the hub", cold, None, None)

    def mirrored(self, kind: type[Mirror]) -> Row:
        """Cold then warm client on one empty mirror; then the crowd on another empty mirror."""
        scenarios = []
        peak = 0.0
        for counts in ((1, 1), (self.args.clients,)):
            self.fresh()
            mirror = kind(self.hub, self.env, self.work / "mirror")
            try:
                scenarios += [self.clients(mirror.url, n, direct=False) for n in counts]
                peak = mirror.peak_rss_mib()
            finally:
                mirror.stop()
        cold, warm, crowd = scenarios
        return Row(f"hf_hub_download via {kind.name}", cold, warm, crowd, peak)


def report(rows: list[Row], args: argparse.Namespace, olah_version: str | None) -> str:
    """The Markdown table and the command that reproduces it."""
    def rate(s: Scenario, clients: int = 1) -> str:
        return f"{s.seconds:.2f} | {clients * args.size / s.seconds / MB:.0f}"

    n = args.clients
    lines = [
        f"{args.size / MB:.0f} MB LFS file, {args.throttle / MB:g} MB/s per CDN connection, one run; {describe(machine_info())}"
        + (f", olah {olah_version}" if olah_version else ""),
        "",
        f"| setup | cold s | cold MB/s | warm s | warm MB/s | {n} cold clients s | {n} clients MB/s (sum) "
        f"| upstream bytes / size, 1 cold | upstream bytes / size, {n} cold | mirror peak RSS MiB, {n} cold |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        warm = rate(r.warm) if r.warm else "– | –"
        crowd = rate(r.crowd, n) if r.crowd else "– | –"
        lines.append(f"| {r.setup} | {rate(r.cold)} | {warm} | {crowd} "
                     f"| {r.cold.cdn_bytes / args.size:.2f} | {f'{r.crowd.cdn_bytes / args.size:.2f}' if r.crowd else '–'} "
                     f"| {'–' if r.crowd_peak_rss_mib is None else f'{r.crowd_peak_rss_mib:.0f}'} |")
    command = f"python bench/daemon_bench.py --size {args.size} --throttle {args.throttle} --clients {n}"
    lines += ["", f"Reproduce: `{command}{f' --olah {args.olah}' if args.olah else ''}`"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Measure straight from the hub, through mreg serve, and through olah; print the report."""
    args = parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    need = args.size * (args.clients + 2) + 1_000_000_000
    if shutil.disk_usage(args.cache_dir).free < need:
        raise SystemExit(f"{args.cache_dir} needs {need / 1e9:.1f} GB free")
    olah_version = None
    if args.olah is not None:
        Olah.cli = args.olah
        python = args.olah.parent / "python"
        olah_version = subprocess.run([str(python), "-c", "from importlib.metadata import version; print(version('olah'))"],
                                      capture_output=True, text=True, check=True).stdout.strip()
    _, blob = weights(args.cache_dir, args.size)
    with TestHub() as hub:
        hub.faults.throttle = args.throttle
        hub.add_repo(HubRepo(REPO_ID)).commit({FILENAME: blob})
        bench = Bench(args, hub, blob)
        setups: list[Callable[[], Row]] = [bench.direct, bench.pulled, lambda: bench.mirrored(Mreg)]
        if args.olah is not None:
            setups.append(lambda: bench.mirrored(Olah))
        rows = []
        for setup in setups:
            rows.append(setup())
            print(f"{rows[-1].setup}: {rows[-1]}", file=sys.stderr)
        shutil.rmtree(bench.work, ignore_errors=True)
    print(report(rows, args, olah_version))


if __name__ == "__main__":
    main()
