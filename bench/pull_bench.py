"""Benchmark `mreg pull` against aria2c and huggingface_hub on one big LFS file from the test hub.

    python bench/pull_bench.py [--size 1500000000] [--throttle 25000000] [--runs 1] [--json out.json]
                               [--connections 8,16,32] [--aria2c-connections 1,2,4,8] [--baseline DIR] [--no-hf]
                               [--gated]

The test hub runs in this process (a background thread), each CDN connection capped at `--throttle`
bytes/s. Every tool runs as a child process with a fresh home after an unmeasured warm-up (`mreg pull` also with
`--local-dir`, and from the source tree `--baseline` names, to compare two commits in one run); wall time
covers the whole child (start-up included); peak RSS and CPU time are the tool process's own, as GNU
time reports them; hub CPU is this process's CPU time during the run. Each output is checked against
the file's sha256. A resume scenario SIGKILLs `mreg pull` once its saved state shows `--kill-at`
done, pulls again, and counts the CDN bytes served in total. `--gated` makes the repo gated, every tool sending
a token that passes its gate. aria2c and `mreg pull` also pull a 2 MB file each round: its CPU splits theirs into a
fixed cost and a cost per GB. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import machine_info  # noqa: E402
from bench.weights import FILENAME, REPO_ID, SEED, weights  # noqa: E402
from tests.testhub import Blob, HubRepo, TestHub  # noqa: E402

WARM_UP_REPO = "bench/warm-up"
WARM_UP_SIZE = 2_000_000
SMALL_REPO = "bench/small-model"
"""A WARM_UP_SIZE file (gated like the big one): the CPU a tool spends on it is its fixed cost, start-up and
set-up, which the big file's CPU less it leaves as the cost per GB of moving bytes."""
MB = 1_000_000
POLL = 0.02
"""Seconds between looks at the child and the hub's byte counter."""
TIME = "/usr/bin/time"
"""GNU time (Debian package `time`): forks the tool from a ~1 MB process, so its peak RSS is the tool's own."""
HF_SCRIPT = "import sys; from huggingface_hub import hf_hub_download; print(hf_hub_download(sys.argv[1], sys.argv[2]))"
ARIA2C_HFD = 16
TOKEN, USER = "hf_bench_reader", "bench-reader"
"""With ``--gated``: the token every tool sends, and the user the hub lets through the repo's gate."""
"""aria2c's connections per file as hfd.sh runs it (with a 1 MiB minimum split)."""


def aria2c_args(connections: int) -> list[str]:
    """aria2c's options as hfd.sh passes them, with ``connections`` connections per file."""
    return ["--console-log-level=error", "--file-allocation=none", "--summary-interval=0",
            f"-x{connections}", f"-s{connections}", "-k1M", "-c"]


@dataclass
class Run:
    """One measured child process."""

    tool: str
    seconds: float
    first_byte: float
    """Seconds from the start to the first CDN body byte (within POLL)."""
    last_byte: float
    """Seconds from the start to the last CDN body byte (within POLL)."""
    peak_rss_mb: float
    cpu_seconds: float
    hub_cpu_seconds: float
    cdn_bytes: int
    exit_code: int


@dataclass
class Row:
    """A tool's summary over `--runs` runs: medians, except the worst RSS and CDN overhead."""

    tool: str
    seconds: float
    mb_per_s: float
    to_first_byte: float
    transfer: float
    after_last_byte: float
    peak_rss_mb: float
    cpu_seconds: float
    hub_cpu_seconds: float
    cdn_ratio: float
    cpu_per_gb: float
    """Client CPU seconds (user + sys, start-up included) per GB of the file."""
    small_cpu_seconds: float | None = None
    """Client CPU seconds on the SMALL_REPO file (its start-up and set-up), for aria2c and `mreg pull`."""
    marginal_cpu_per_gb: float | None = None
    """(CPU on the big file - CPU on the small one) per GB between them: the cost of moving bytes."""


@dataclass
class Resume:
    """The kill -9 and resume scenario."""

    killed_at_fraction: float
    first_seconds: float
    second_seconds: float
    cdn_bytes: int
    cdn_ratio: float
    peak_rss_mb: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, parsed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1_500_000_000, help="file size in bytes")
    parser.add_argument("--throttle", type=int, default=25_000_000, help="bytes/s per CDN connection")
    parser.add_argument("--runs", type=int, default=1, help="runs per tool, interleaved (medians are reported)")
    parser.add_argument("--connections", default="8,16,32", help="mreg --connections values to sweep")
    parser.add_argument("--aria2c-connections", default="", help="aria2c -x/-s values to sweep (at most 16)")
    parser.add_argument("--baseline", type=Path, help="also run mreg pull from the source tree at DIR (say, "
                        "`git archive COMMIT | tar -x -C DIR`): before/after a change, in one run")
    parser.add_argument("--no-hf", action="store_true", help="leave out hf_hub_download (the slowest by far)")
    parser.add_argument("--kill-at", type=float, default=0.4, help="resume scenario: kill at this fraction done")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/mreg-bench"), help="big file and work dirs")
    parser.add_argument("--json", type=Path, help="also write every run and the summary here")
    parser.add_argument("--gated", action="store_true", help="the repo is gated: every tool sends a token that "
                        "passes its gate (HF_TOKEN; aria2c an Authorization header, as hfd.sh does with --hf_token)")
    return parser.parse_args(argv)


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child_pid(parent: int) -> int | None:
    """The pid of a process whose parent is `parent` (GNU time has exactly one child)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            return int(stat.parent.name)
    return None


def spawn(tool: str, cmd: list[str], env: dict[str, str], logs: Path, hub: TestHub,
          kill_when: Callable[[], bool] | None = None) -> Run:
    """Run `cmd` under GNU time to its end (or SIGKILL it once `kill_when()` is true) and measure it.

    A child forked from this process would inherit its RSS high-water mark, hence GNU time in between.
    The hub's CDN byte counter is polled to time the first and last body bytes. stdout and stderr go
    to `logs`.out/.err.
    """
    usage_file = logs.with_suffix(".time")
    hub.stats.reset()
    cpu0 = _self_cpu()
    sent, first_byte, last_byte = 0, 0.0, 0.0
    with logs.with_suffix(".out").open("wb") as out, logs.with_suffix(".err").open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([TIME, "-q", "-f", "%M %U %S", "-o", str(usage_file), *cmd],
                                env=env, cwd=ROOT, stdout=out, stderr=err)
        while proc.poll() is None:
            time.sleep(POLL)
            now, cdn_bytes = time.perf_counter() - start, hub.stats.cdn_bytes
            if cdn_bytes > sent:
                first_byte, last_byte, sent = first_byte or now, now, cdn_bytes
            if kill_when is not None and kill_when() and (pid := _child_pid(proc.pid)) is not None:
                os.kill(pid, signal.SIGKILL)
                kill_when = None
        seconds = time.perf_counter() - start
    max_rss_kb, user, system = usage_file.read_text().split()
    return Run(tool, seconds, first_byte, last_byte, int(max_rss_kb) / 1024, float(user) + float(system),
               _self_cpu() - cpu0, hub.stats.cdn_bytes, proc.returncode)


def sha256_of(path: Path) -> str:
    """The sha256 of a file's bytes."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def state_fraction(home: Path) -> float:
    """How much of the download mreg's saved state says is done (0 before the state exists)."""
    for state in (home / "partial").glob("*.state.json"):
        try:
            raw = json.loads(state.read_text())
        except (OSError, ValueError):
            continue
        return sum(p["done"] for p in raw["parts"]) / raw["size"]
    return 0.0


def last_line(path: Path) -> str:
    """The last line a tool printed (mreg and the hf script print the downloaded path last)."""
    return path.read_text().strip().splitlines()[-1]


class Bench:
    """The hub, the file, and one fresh work dir per child process."""

    def __init__(self, args: argparse.Namespace, hub: TestHub, blob: Blob, small: Blob) -> None:
        self.args, self.hub, self.blob, self.small = args, hub, blob, small
        self.work = args.cache_dir / "work"
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"
                    and not k.startswith(("HF_", "HUGGING_FACE_", "MREG_")) and "proxy" not in k.lower()}
        self.env.update(HF_ENDPOINT=hub.endpoint, NO_PROXY="127.0.0.1,127.0.0.2,localhost",
                        PYTHONPYCACHEPREFIX=str(args.cache_dir / "pycache"))
        if args.gated:
            self.env["HF_TOKEN"] = TOKEN

    def _fresh(self, name: str) -> Path:
        """An empty work dir; the previous one is removed and its writes flushed first."""
        shutil.rmtree(self.work, ignore_errors=True)
        os.sync()
        path = self.work / name
        path.mkdir(parents=True)
        return path

    def _check(self, run: Run, output: Path, logs: Path, repo_id: str = REPO_ID) -> Run:
        """Fail loudly unless the child succeeded and wrote exactly the served bytes."""
        if run.exit_code != 0:
            raise SystemExit(f"{run.tool} exited {run.exit_code}; see {logs}.err")
        if sha256_of(output) != (self.small.sha256 if repo_id == SMALL_REPO else self.blob.sha256):
            raise SystemExit(f"{run.tool} wrote wrong bytes to {output}")
        return run

    @staticmethod
    def _mreg_cmd(repo_id: str, connections: int | None = None, local_dir: Path | None = None) -> list[str]:
        extra = [] if connections is None else ["--connections", str(connections)]
        extra += [] if local_dir is None else ["--local-dir", str(local_dir)]
        return [sys.executable, "-m", "mreg.cli.main", "pull", repo_id, *extra]

    def _baseline_env(self) -> dict[str, str]:
        """The environment that imports ``mreg`` from ``--baseline``'s tree: its folders as the package's
        parts (symlinks under the cache dir), found before the installed (editable) one."""
        package = self.args.cache_dir / "baseline" / "mreg"
        package.mkdir(parents=True, exist_ok=True)
        for part in ("cli", "daemon", "migrations", "registry"):
            link = package / part
            link.unlink(missing_ok=True)
            link.symlink_to(self.args.baseline.resolve() / part)
        return {**self.env, "PYTHONPATH": str(package.parent)}

    def _aria2c_cmd(self, repo_id: str, out_dir: Path, connections: int = ARIA2C_HFD) -> list[str]:
        url = f"{self.hub.endpoint}/{repo_id}/resolve/main/{FILENAME}"
        auth = [f"--header=Authorization: Bearer {TOKEN}"] if self.args.gated else []
        return ["aria2c", *aria2c_args(connections), *auth, "-d", str(out_dir), "-o", FILENAME, url]

    @staticmethod
    def _hf_cmd(repo_id: str) -> list[str]:
        return [sys.executable, "-c", HF_SCRIPT, repo_id, FILENAME]

    def _hf_env(self, hf_home: Path) -> dict[str, str]:
        return {**self.env, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_XET": "1",
                "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}

    def warm_up(self) -> None:
        """Run every tool once on a small file, unmeasured, so bytecode and binaries are cached."""
        work = self._fresh("warm-up")
        env = {**self._hf_env(work / "hf"), "MREG_HOME": str(work / "mreg")}
        commands = (self._mreg_cmd(WARM_UP_REPO), self._aria2c_cmd(WARM_UP_REPO, work), self._hf_cmd(WARM_UP_REPO))
        for cmd in commands:
            subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True)
        if self.args.baseline is not None:
            subprocess.run(self._mreg_cmd(WARM_UP_REPO), env={**self._baseline_env(), "MREG_HOME": str(work / "base")},
                           cwd=ROOT, check=True, capture_output=True)

    def mreg(self, connections: int | None, local_dir: bool = False, baseline: bool = False,
             repo_id: str = REPO_ID) -> Run:
        tool = "mreg pull" + ("" if connections is None else f" --connections {connections}")
        tool += " --local-dir" if local_dir else ""
        tool += " (baseline)" if baseline else ""
        work = self._fresh("mreg")
        env = self._baseline_env() if baseline else self.env
        cmd = self._mreg_cmd(repo_id, connections, work / "local" if local_dir else None)
        run = spawn(tool, cmd, {**env, "MREG_HOME": str(work / "home")}, work / "log", self.hub)
        return self._check(run, Path(last_line(work / "log.out")) / FILENAME, work / "log", repo_id)

    def aria2c(self, connections: int = ARIA2C_HFD, repo_id: str = REPO_ID) -> Run:
        work = self._fresh("aria2c")
        run = spawn(f"aria2c -x{connections} -s{connections} -k1M", self._aria2c_cmd(repo_id, work / "out", connections),
                    self.env, work / "log", self.hub)
        return self._check(run, work / "out" / FILENAME, work / "log", repo_id)

    def hf(self) -> Run:
        work = self._fresh("hf")
        run = spawn("hf_hub_download", self._hf_cmd(REPO_ID), self._hf_env(work / "hf"), work / "log", self.hub)
        return self._check(run, Path(last_line(work / "log.out")), work / "log")

    def resume(self) -> Resume:
        """Pull, SIGKILL at `--kill-at` done (per the saved state), pull again; count the CDN bytes."""
        work = self._fresh("resume")
        home = work / "home"
        env = {**self.env, "MREG_HOME": str(home)}
        first = spawn("mreg pull (killed)", self._mreg_cmd(REPO_ID), env, work / "first", self.hub,
                      kill_when=lambda: state_fraction(home) >= self.args.kill_at)
        killed_at = state_fraction(home)
        if first.exit_code != 128 + signal.SIGKILL:
            raise SystemExit(f"the first pull ended ({first.exit_code}) before reaching {self.args.kill_at:.0%}")
        second = spawn("mreg pull (resumed)", self._mreg_cmd(REPO_ID), env, work / "second", self.hub)
        self._check(second, Path(last_line(work / "second.out")) / FILENAME, work / "second")
        total = first.cdn_bytes + second.cdn_bytes
        return Resume(killed_at, first.seconds, second.seconds, total, total / self.blob.size,
                      max(first.peak_rss_mb, second.peak_rss_mb))


def summarize(runs: list[Run], size: int) -> Row:
    """One tool's row: median times and CPU, worst RSS and CDN overhead."""
    def median(value: Callable[[Run], float]) -> float:
        return statistics.median(value(r) for r in runs)

    seconds = median(lambda r: r.seconds)
    return Row(runs[0].tool, seconds, size / seconds / MB, median(lambda r: r.first_byte),
               median(lambda r: r.last_byte - r.first_byte), median(lambda r: r.seconds - r.last_byte),
               max(r.peak_rss_mb for r in runs), median(lambda r: r.cpu_seconds),
               median(lambda r: r.hub_cpu_seconds), max(r.cdn_bytes for r in runs) / size,
               median(lambda r: r.cpu_seconds) / (size / 1e9))


def report(rows: list[Row], resume: Resume, args: argparse.Namespace, info: dict[str, str]) -> str:
    """The Markdown summary: the table, the targets, the resume scenario and the command."""
    aria2 = next(r for r in rows if r.tool.startswith("aria2c"))
    mreg = next(r for r in rows if r.tool == "mreg pull")
    hf = next((r for r in rows if r.tool == "hf_hub_download"), None)
    mregs = [r for r in rows if r.tool.startswith("mreg")]
    best = min(mregs, key=lambda r: r.seconds)
    mreg_rss = max([r.peak_rss_mb for r in mregs] + [resume.peak_rss_mb])
    lines = [
        f"{args.size / MB:.0f} MB LFS file{' of a gated repo' if args.gated else ''}, {args.throttle / MB:g} MB/s per connection, median of {args.runs} "
        f"run(s); {info['date']}, {info['nproc']} CPUs ({info['cpu']}), {info['ram']} RAM, kernel {info['kernel']}, "
        f"Python {info['python']}, aria2c {info['aria2c']}, huggingface_hub {info['huggingface_hub']}",
        "",
        "| tool | seconds | MB/s | peak RSS MB | time vs aria2c | to 1st byte s | transfer s | after last byte s "
        "| client CPU s | CPU s/GB | CPU vs aria2c | hub CPU s | CDN bytes / size |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r.tool} | {r.seconds:.2f} | {r.mb_per_s:.0f} | {r.peak_rss_mb:.0f} "
              f"| {r.seconds / aria2.seconds:.2f} | {r.to_first_byte:.2f} | {r.transfer:.2f} | {r.after_last_byte:.2f} "
              f"| {r.cpu_seconds:.1f} | {r.cpu_per_gb:.2f} | {r.cpu_seconds / aria2.cpu_seconds:.2f} "
              f"| {r.hub_cpu_seconds:.1f} | {r.cdn_ratio:.3f} |" for r in rows]
    assert aria2.marginal_cpu_per_gb is not None and mreg.marginal_cpu_per_gb is not None
    lines += ["", "Fixed and per-GB CPU (client CPU on a "
              f"{WARM_UP_SIZE / MB:.0f} MB file of the same repo kind, and the big file's CPU beyond it per GB):", "",
              "| tool | CPU s on the small file | CPU s/GB beyond it | vs aria2c |", "|---|---:|---:|---:|"]
    lines += [f"| {r.tool} | {r.small_cpu_seconds:.2f} | {r.marginal_cpu_per_gb:.2f} "
              f"| {r.marginal_cpu_per_gb / aria2.marginal_cpu_per_gb:.2f} |" for r in (aria2, mreg)]
    marginal = mreg.marginal_cpu_per_gb / aria2.marginal_cpu_per_gb
    targets = [
        ("mreg / aria2c time", mreg.seconds / aria2.seconds, "<= 1.1", mreg.seconds / aria2.seconds <= 1.1),
        ("mreg / aria2c CPU s", mreg.cpu_seconds / aria2.cpu_seconds, "<= 1.5",
         mreg.cpu_seconds / aria2.cpu_seconds <= 1.5),
        ("mreg / aria2c CPU s/GB beyond the small file", marginal, "(<= 1.5)", marginal <= 1.5),
        ("resume: CDN bytes / size", resume.cdn_ratio, "<= 1.15", resume.cdn_ratio <= 1.15),
        ("mreg peak RSS MB (every run)", mreg_rss, "< 150", mreg_rss < 150),
    ]
    if hf is not None:
        targets.insert(1, ("hf_hub_download / mreg time", hf.seconds / mreg.seconds, ">= 4",
                           hf.seconds / mreg.seconds >= 4))
    lines += ["", "| target | measured | goal | met |", "|---|---:|---:|---|"]
    lines += [f"| {name} | {value:.2f} | {goal} | {'yes' if ok else 'NO'} |" for name, value, goal, ok in targets]
    lines += [
        "",
        f"Resume: killed at {resume.killed_at_fraction:.0%} done (saved state) after {resume.first_seconds:.1f} s, "
        f"resumed in {resume.second_seconds:.1f} s; the CDN sent {resume.cdn_bytes / MB:.0f} MB in total.",
        f"Fastest mreg setting: `{best.tool}` ({best.seconds:.2f} s).",
        "",
        f"Reproduce: `python bench/pull_bench.py --size {args.size} --throttle {args.throttle} --runs {args.runs} "
        f"--connections {shlex.quote(args.connections)}" + (" --gated" if args.gated else "")
        + (f" --aria2c-connections {args.aria2c_connections}" if args.aria2c_connections else "")
        + (f" --baseline {args.baseline}" if args.baseline else "") + (" --no-hf`" if args.no_hf else "`"),
    ]
    return "\n".join(lines)


def preflight(args: argparse.Namespace, source: Path) -> None:
    """Stop early when a tool or the disk space is missing."""
    for tool in (TIME, "aria2c"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found (Debian: apt-get install time aria2)")
    need = args.size * (1 if source.exists() else 2) + 1_000_000_000
    if shutil.disk_usage(args.cache_dir).free < need:
        raise SystemExit(f"{args.cache_dir} needs {need / 1e9:.1f} GB free")


def main(argv: list[str] | None = None) -> None:
    """Warm up, run every tool `--runs` times (interleaved), then the resume scenario; print the report."""
    args = parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.cache_dir / "work", ignore_errors=True)
    preflight(args, args.cache_dir / f"weights-{args.size}.bin")
    _, blob = weights(args.cache_dir, args.size)
    sweep = [int(n) for n in args.connections.split(",") if n]
    aria2c_sweep = [int(n) for n in args.aria2c_connections.split(",") if n]
    with TestHub(tokens={TOKEN: USER}) as hub:
        hub.faults.throttle = args.throttle
        gate: dict[str, Any] = {"gated": "manual", "allowed_users": {USER}} if args.gated else {}
        hub.add_repo(HubRepo(REPO_ID, **gate)).commit({FILENAME: blob})
        hub.add_repo(HubRepo(WARM_UP_REPO)).commit({FILENAME: random.Random(SEED).randbytes(WARM_UP_SIZE)})
        small = Blob.from_bytes(random.Random(SEED + 1).randbytes(WARM_UP_SIZE))
        hub.add_repo(HubRepo(SMALL_REPO, **gate)).commit({FILENAME: small})
        bench = Bench(args, hub, blob, small)
        bench.warm_up()
        tools: list[Callable[[], Run]] = [bench.aria2c, lambda: bench.mreg(None), lambda: bench.mreg(None, True)]
        if args.baseline is not None:
            tools += [lambda: bench.mreg(None, baseline=True), lambda: bench.mreg(None, True, baseline=True)]
        tools += [lambda n=n: bench.mreg(n) for n in sweep]
        tools += [lambda n=n: bench.aria2c(n) for n in aria2c_sweep if n != ARIA2C_HFD]
        tools += [] if args.no_hf else [bench.hf]
        smalls: list[Callable[[], Run]] = [lambda: bench.aria2c(repo_id=SMALL_REPO),
                                           lambda: bench.mreg(None, repo_id=SMALL_REPO)]
        runs: list[list[Run]] = [[] for _ in tools]
        small_runs: list[list[Run]] = [[] for _ in smalls]
        for i in range(args.runs):
            for measure, done in zip(tools + smalls, runs + small_runs):
                run = measure()
                print(f"[{i + 1}/{args.runs}] {run.tool}{' (small file)' if done in small_runs else ''}: "
                      f"{run.seconds:.2f} s, {run.peak_rss_mb:.0f} MB RSS, {run.cpu_seconds:.2f} s CPU, "
                      f"hub {run.hub_cpu_seconds:.1f} s CPU", file=sys.stderr)
                done.append(run)
        resume = bench.resume()
        shutil.rmtree(bench.work, ignore_errors=True)
    rows = [summarize(r, args.size) for r in runs]
    for row, small_run in zip(rows[:2], small_runs):  # aria2c's and `mreg pull`'s
        small_cpu = statistics.median(r.cpu_seconds for r in small_run)
        row.small_cpu_seconds = small_cpu
        row.marginal_cpu_per_gb = (row.cpu_seconds - small_cpu) / ((args.size - WARM_UP_SIZE) / 1e9)
    aria2 = subprocess.run(["aria2c", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    info = machine_info(aria2c=aria2.removeprefix("aria2 version "))
    print(report(rows, resume, args, info))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                                         "runs": [asdict(r) for rs in runs for r in rs],
                                         "rows": [asdict(r) for r in rows], "resume": asdict(resume)}, indent=2))


if __name__ == "__main__":
    main()
