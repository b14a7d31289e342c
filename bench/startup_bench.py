"""Benchmark how fast `mreg` starts: `--version`, `--help`, `path` and `ls`, each run N times.

    python bench/startup_bench.py [--runs 20] [--warmup 3] [--mreg PATH ...] [--json FILE]

Every command runs as a fresh process, the way people run it (the `mreg` console script; `--mreg`
names others, e.g. another checkout's venv, to compare). Per command and script: the median, min
and max wall time of `--runs` runs after `--warmup` unmeasured ones, and how many modules the
process imported (counted once, in a process that reports `sys.modules` at exit), which the
machine's load does not change. `path` and `ls` read a store and catalog holding one small repo,
pulled first from the project's test hub (tests/testhub, in this process) with the first `--mreg`.

If the environment sets PYTHONDONTWRITEBYTECODE=1, every start would compile mreg's sources again;
the children run without it, with PYTHONPYCACHEPREFIX under the bench's folder, so bytecode is cached
(by the warm-up runs) as in a normal install, without writing into the source tree. The load average before and after is printed: on a loaded machine the times are
upper bounds, the module counts are not affected. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import describe, machine_info  # noqa: E402
from tests.testhub import TestHub, small_repo  # noqa: E402

REPO_ID = "bench/tiny-model"
COMMANDS = (("--version",), ("--help",), ("path", REPO_ID), ("ls",))
PROBE = """
import atexit, sys
atexit.register(lambda: print(len(sys.modules), file=sys.__stderr__))
from mreg.cli.main import main
main()
"""


@dataclass
class Result:
    mreg: str
    command: str
    median: float
    min: float
    max: float
    modules: int


def interpreter(script: Path) -> str:
    """The Python a console script runs with (its #! line)."""
    first = script.read_text().splitlines()[0]
    return first[2:].strip() if first.startswith("#!") else sys.executable


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def measure(script: Path, args: tuple[str, ...], env: dict[str, str], runs: int, warmup: int) -> Result:
    argv = [str(script), *args]
    for _ in range(warmup):
        run(argv, env)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(argv, env)
        times.append(time.perf_counter() - start)
    modules = int(run([interpreter(script), "-c", PROBE, *args], env).stderr.split()[-1])
    return Result(str(script), " ".join(args), statistics.median(times), min(times), max(times), modules)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="measured runs per command (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured runs first (default 3)")
    parser.add_argument("--mreg", type=Path, action="append",
                        help="an mreg console script to time (repeatable; default: the one beside this Python)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    options = parser.parse_args()
    scripts = options.mreg or [Path(sys.executable).parent / "mreg"]
    with tempfile.TemporaryDirectory(prefix="mreg-startup-") as folder:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("HF_", "MREG_")) and k != "PYTHONDONTWRITEBYTECODE"}
        env.update(MREG_HOME=str(Path(folder) / "home"), PYTHONPYCACHEPREFIX=str(Path(folder) / "pycache"))
        with TestHub() as hub:
            hub.add_repo(small_repo(REPO_ID))
            run([str(scripts[0]), "pull", REPO_ID], {**env, "HF_ENDPOINT": hub.endpoint})
        load_before = os.getloadavg()
        results = [measure(script, args, env, options.runs, options.warmup) for script in scripts for args in COMMANDS]
        load_after = os.getloadavg()
    print(describe(machine_info(mreg=run([str(scripts[0]), "--version"], env).stdout.split()[-1])))
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in load_before)} before, "
          f"{' '.join(f'{x:.2f}' for x in load_after)} after, on {os.cpu_count()} CPUs; "
          f"{options.runs} runs after {options.warmup} warm-up runs")
    print(f"\n| {'mreg':40} | {'command':24} | median s | min s | max s | modules |")
    print(f"|{'-' * 42}|{'-' * 26}|---------:|------:|------:|--------:|")
    for r in results:
        print(f"| {r.mreg:40} | {r.command:24} | {r.median:8.3f} | {r.min:5.3f} | {r.max:5.3f} | {r.modules:7d} |")
    if options.json:
        options.json.write_text(json.dumps({"load_before": load_before, "load_after": load_after,
                                            "results": [asdict(r) for r in results]}, indent=2))


if __name__ == "__main__":
    main()
