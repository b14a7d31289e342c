"""Run every benchmark behind the README's summary table (issue #16), one after another, on this machine.

    python bench/all.py OUT_DIR [--olah /tmp/olah-venv/bin/olah-cli] [--only pull,serve,...]

Each benchmark runs with the parameters the table names, as its own process, so nothing else of this run
shares the 2 CPUs with it; its report (Markdown) goes to OUT_DIR/NAME.md, its JSON where it writes one, and
the load average before and after each to OUT_DIR/load.txt. Run it on an otherwise idle machine (~25 min):
the table's figures are the reports' own. Needs aria2c, GNU time, nginx and curl (Debian), matplotlib for the
plot, and olah in its own venv for the daemon's peer (see bench/README.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def runs(out: Path, olah: Path | None) -> dict[str, list[str]]:
    """Each benchmark's name and its command line's arguments after the script."""
    return {
        "pull": ["pull_bench.py", "--size", "1500000000", "--runs", "3", "--connections", "",
                 "--json", str(out / "pull.json")],
        "pull-gated": ["pull_bench.py", "--size", "242000000", "--runs", "3", "--connections", "", "--no-hf",
                       "--gated", "--json", str(out / "pull-gated.json")],
        "cpu-floor": ["cpu_floor.py", "--size", "1500000000", "--runs", "3", "--json", str(out / "cpu-floor.json")],
        "pull-connections": ["pull_bench.py", "--size", "1000000000", "--connections", "1,2,4,8,16,32",
                             "--aria2c-connections", "1,2,4,8,16", "--json", str(out / "pull-connections.json")],
        "inspect": ["inspect_bench.py", "--latency", "0.05", "--concurrency", "8,32,64", "--runs", "3",
                    "--json", str(out / "inspect.json")],
        "daemon": ["daemon_bench.py", "--size", "500000000", "--clients", "8",
                   *(["--olah", str(olah)] if olah else [])],
        "daemon-32": ["daemon_bench.py", "--size", "200000000", "--clients", "32"],
        "serve": ["serve_bench.py", "--size", "1500000000", "--clients", "8", "--runs", "3"],
        "serve-32": ["serve_bench.py", "--size", "300000000", "--clients", "32", "--runs", "1"],
        "startup": ["startup_bench.py", "--json", str(out / "startup.json")],
    }


def main(argv: list[str] | None = None) -> None:
    """Run the benchmarks in turn; stop at the first that fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder for the reports")
    parser.add_argument("--olah", type=Path, help="olah's olah-cli, the daemon benchmark's peer")
    parser.add_argument("--only", help="comma-separated names to run (default: all)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = runs(args.out, args.olah)
    names = args.only.split(",") if args.only else list(chosen)
    unknown = set(names) - set(chosen)
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(chosen)}")
    with (args.out / "load.txt").open("a") as load:
        for name in names:
            before, start = os.getloadavg(), time.monotonic()
            with (args.out / f"{name}.md").open("w") as report:
                done = subprocess.run([sys.executable, str(BENCH / chosen[name][0]), *chosen[name][1:]],
                                      stdout=report, cwd=BENCH.parent)
            after = os.getloadavg()
            load.write(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} {name}: {time.monotonic() - start:.0f} s, "
                       f"load average {before[0]:.2f} before, {after[0]:.2f} after, exit {done.returncode}\n")
            load.flush()
            if done.returncode != 0:
                raise SystemExit(f"{name} failed (exit {done.returncode}); see {args.out / name}.md")
    if "pull-connections" in names:
        subprocess.run([sys.executable, str(BENCH / "pull_plot.py"), str(args.out / "pull-connections.json"),
                        str(BENCH / "pull_throughput.svg")], check=True)


if __name__ == "__main__":
    main()
