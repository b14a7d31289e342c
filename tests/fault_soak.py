"""The fault soak (#14): concurrent clients through a `mreg serve` process in front of a faulty origin, while a
mirror job runs and `mreg gc` runs from the command line; what it measured, for the test and bench/soak.py.

The work is a number of rounds. Each round the origin commits new content to every repo and arms its
faults; then every client fetches its files of that round's commits while two `mreg gc` runs go on; a
mirror job is added through the API in the first round and asked to sync again in each later one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.daemons import ROOT, DaemonProcess, connection, daemon_env, start_daemon_process, wait_for
from tests.soak_clients import Tally, close_hf_connections, hf_client, raw_client
from tests.soak_origin import REPOS, SoakOrigin
from tests.testhub import TestHub

CLIENTS = 50
HF_SHARE = 0.5
"""Share of the clients that are the real huggingface_hub client; the others are raw aiohttp clients."""
FILES_PER_ROUND = 2
"""Files each client fetches per round."""
MIRRORED = REPOS[-1]
EVICT = ("--max-size", "30MB", "--high", "60", "--low", "40")
"""With ``evict``, the second gc of each round also evicts revisions (LRU) past a budget smaller than two
rounds of content."""
JOB_DEADLINE = 120.0
GC_DEADLINE = 120.0
CATALOG = "catalog.db"


@dataclass
class SoakReport:
    """What a soak saw and measured."""

    rounds: int = 0
    seconds: float = 0.0
    tally: Tally = field(default_factory=Tally)
    faults_fired: Counter[str] = field(default_factory=Counter)
    rss_start_kb: int = 0
    rss_peak_kb: int = 0
    fds_start: int = 0
    fds_peak: int = 0
    fds_end: int = 0
    fds_left: Counter[str] = field(default_factory=Counter)
    """What the descriptors held after the soak beyond those held at its start are."""
    gc_runs: list[int] = field(default_factory=list)
    """Each `mreg gc`'s exit code."""
    gc_errors: list[str] = field(default_factory=list)
    job: dict[str, Any] = field(default_factory=dict)
    log_findings: list[str] = field(default_factory=list)
    bad_blobs: list[str] = field(default_factory=list)
    """Blobs in the store whose bytes are not their name's sha256 (checked after the daemon stopped)."""
    blobs_checked: int = 0
    slowest_healthz: float = 0.0
    """Longest a /healthz answer took during the soak (the event loop blocked, or busy, that long)."""
    active_transfers: float = -1
    """The daemon's ``mreg_active_transfers`` gauge once the soak is over (0: every transfer accounted for)."""
    exit_code: int | None = None
    log_tail: str = ""

    def summary(self) -> dict[str, Any]:
        """The figures as JSON-able data."""
        return {
            "rounds": self.rounds, "seconds": round(self.seconds, 1), "outcomes": dict(self.tally.outcomes),
            "files_finished": self.tally.finished, "files_given_up": self.tally.gave_up,
            "findings": self.tally.findings, "faults_fired": dict(self.faults_fired),
            "rss_start_mb": round(self.rss_start_kb / 1024, 1), "rss_peak_mb": round(self.rss_peak_kb / 1024, 1),
            "fds_start": self.fds_start, "fds_peak": self.fds_peak, "fds_end": self.fds_end,
            "fds_left": dict(self.fds_left),
            "gc_exit_codes": self.gc_runs, "gc_errors": self.gc_errors,
            "job": {k: self.job.get(k) for k in ("status", "commit", "error", "bytes_done")},
            "log_findings": self.log_findings, "daemon_exit": self.exit_code,
            "active_transfers_after": self.active_transfers, "blobs_checked": self.blobs_checked, "bad_blobs": self.bad_blobs,
            "slowest_healthz_s": round(self.slowest_healthz, 2),
        }


def proc_status(pid: int, key: str) -> int:
    """A ``kB`` figure of /proc/PID/status (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def open_fds(pid: int) -> int:
    """How many descriptors the process holds."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def _socket_peers(pid: int) -> dict[str, str]:
    """Socket inode → "local→remote" (host:port, hex as the kernel writes it) of a process's TCP sockets."""
    peers = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            peers[inode] = f"{int(local.split(':')[1], 16)}->{int(remote.split(':')[1], 16)}"
    return peers


def fd_kinds(pid: int) -> Counter[str]:
    """What a process's descriptors are: files by folder, sockets by remote port."""
    peers = _socket_peers(pid)
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            kinds[f"socket {peers.get(target[8:-1], '?')}"] += 1
        else:
            kinds[target if target.startswith("/") else target.split(":")[0]] += 1
    return kinds


def call(daemon: DaemonProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One JSON request to the daemon's own API: (status, decoded body)."""
    conn = connection(daemon.url)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def start_gc(home: Path, upstream: str, *options: str) -> subprocess.Popen[str]:
    """`mreg gc --json OPTIONS` on the daemon's store, as an operator runs it next to the daemon."""
    return subprocess.Popen([sys.executable, "-m", "mreg.cli.main", "gc", "--json", *options], cwd=ROOT,
                            env=daemon_env(home, upstream), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_gc(run: subprocess.Popen[str], report: SoakReport) -> None:
    out, err = run.communicate(timeout=GC_DEADLINE)
    report.gc_runs.append(run.returncode)
    if run.returncode != 0 or "Traceback" in err:
        report.gc_errors.append(f"exit {run.returncode}: {err.strip()[-500:]} {out.strip()[-200:]}")


class Watch:
    """Figures sampled while the soak runs (not waits): the daemon's largest descriptor count, and its
    slowest /healthz answer, one after another."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon, self.fds_peak, self.slowest = daemon, open_fds(daemon.process.pid), 0.0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=target, name=f"soak-{target.__name__}", daemon=True)
                         for target in (self._fds, self._healthz)]
        for thread in self._threads:
            thread.start()

    def _fds(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.fds_peak = max(self.fds_peak, open_fds(self.daemon.process.pid))
            except OSError:
                return

    def _healthz(self) -> None:
        while not self._stop.wait(0.05):
            started = time.monotonic()
            try:
                self.daemon.health()
            except OSError:
                return
            self.slowest = max(self.slowest, time.monotonic() - started)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def check_blobs(home: Path, report: SoakReport) -> None:
    """Re-hash every blob of the store: its bytes must be its name."""
    for path in sorted((home / "blobs").rglob("*")):
        if path.is_file() and len(path.name) == 64:
            report.blobs_checked += 1
            if hashlib.sha256(path.read_bytes()).hexdigest() != path.name:
                report.bad_blobs.append(path.name)


def log_findings(text: str) -> list[str]:
    """What must never be in the daemon's log: unretrieved task exceptions, tracebacks, logged errors."""
    found = []
    for line in text.splitlines():
        if "Task exception was never retrieved" in line or "Traceback" in line:
            found.append(line[:300])
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and (entry.get("level") in ("error", "critical") or "error" in entry):
            found.append(line[:300])
    return found


def run_round(origin: SoakOrigin, daemon: DaemonProcess, work: Path, rng: random.Random, report: SoakReport,
              unverifiable: frozenset[str], evict: bool) -> None:
    """One round: every client fetches its files while `mreg gc` runs twice."""
    hf_count = int(CLIENTS * HF_SHARE)
    plans = [origin.wants(rng, FILES_PER_ROUND) for _ in range(CLIENTS)]
    seeds = [rng.randrange(1 << 30) for _ in range(CLIENTS)]

    async def raw_clients() -> None:
        await asyncio.gather(*(raw_client(origin, daemon.url, plans[i], random.Random(seeds[i]), report.tally,
                                          unverifiable) for i in range(hf_count, CLIENTS)))

    gcs = [start_gc(daemon.home, origin.hub.endpoint)]
    with ThreadPoolExecutor(hf_count + 1, thread_name_prefix="soak-client") as pool:
        futures = [pool.submit(hf_client, origin, daemon.url, work / "hf" / str(i), plans[i], report.tally)
                   for i in range(hf_count)]
        futures.append(pool.submit(asyncio.run, raw_clients()))
        finish_gc(gcs.pop(), report)
        gcs.append(start_gc(daemon.home, origin.hub.endpoint, *(EVICT if evict else ())))
        for future in futures:
            future.result()
    finish_gc(gcs.pop(), report)


def run_soak(work: Path, rounds: int = 3, seconds: float = 0.0, evict: bool = False, seed: int = 14) -> SoakReport:
    """Run the soak in ``work``: ``rounds`` rounds, more while fewer than ``seconds`` have passed (``evict``:
    see EVICT)."""
    report, rng = SoakReport(), random.Random(seed)
    started = time.monotonic()
    with TestHub() as hub:
        hub.xet = False
        origin = SoakOrigin(hub, work / "origin", seed)
        origin.publish()
        daemon = start_daemon_process(work / "home", hub.endpoint)
        try:
            pid = daemon.process.pid
            assert call(daemon, "GET", "/v1/repos")[0] == 200
            report.rss_start_kb, report.fds_start = proc_status(pid, "VmRSS"), open_fds(pid)
            start_kinds = fd_kinds(pid)
            watch = Watch(daemon)
            corrupted: frozenset[str] = frozenset()
            while report.rounds < rounds or time.monotonic() - started < seconds:
                if report.rounds > 0:
                    origin.publish()
                corrupted |= origin.arm(rng)
                if report.rounds == 0:
                    status, job = call(daemon, "POST", "/v1/jobs", {"repo": MIRRORED})
                    assert status == 201, job
                else:
                    status, job = call(daemon, "POST", f"/v1/jobs/{MIRRORED}/sync")
                    assert status in (200, 409), job
                run_round(origin, daemon, work, rng, report, corrupted, evict)
                report.rounds += 1
            hub.faults.reset()
            close_hf_connections()

            def job_settled() -> bool:
                report.job = call(daemon, "GET", f"/v1/jobs/{MIRRORED}")[1]
                return report.job.get("status") in ("done", "failed")

            wait_for(job_settled, JOB_DEADLINE, "the mirror job to settle")
            watch.stop()
            report.fds_peak, report.slowest_healthz = watch.fds_peak, watch.slowest

            def fds_back() -> bool:
                """Only catalog connections (which its pool keeps) beyond the start's descriptors."""
                kinds = fd_kinds(pid)
                report.fds_end, report.fds_left = sum(kinds.values()), kinds - start_kinds
                return all(CATALOG in kind for kind in report.fds_left)

            try:
                wait_for(fds_back, 30, "the daemon's descriptors to come back")
            except AssertionError:
                pass  # the test's assertion names them (fds_left)
            report.rss_peak_kb = proc_status(pid, "VmHWM")
            report.active_transfers = daemon.metrics()["mreg_active_transfers"]
            report.faults_fired = Counter(hub.faults.fired)
        finally:
            report.exit_code = daemon.stop()
            text = daemon.log.read_text(errors="replace")
            report.log_findings = log_findings(text)
            report.log_tail = "\n".join(text.splitlines()[-40:])
        check_blobs(daemon.home, report)
    report.seconds = time.monotonic() - started
    return report
