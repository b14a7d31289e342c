"""The fault soak of tests/test_fault_soak.py, run by hand for longer, with its figures printed as JSON.

    python bench/soak.py [--seconds 600] [--rounds 3] [--evict] [--dir /tmp/mreg-soak] [--json FILE]

Rounds go on until both ``--rounds`` rounds ran and ``--seconds`` passed (each round: new content on the
origin, its faults armed, 50 clients fetching two files each while `mreg gc` runs twice; with ``--evict`` the
second one also evicts revisions past a 30 MB budget). The work
directory is emptied first; each round adds about 20 MB to the origin's files and to the mirror's store.
Exits 1 if the soak found anything (wrong bytes, an unclean answer, an error in the daemon's log).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fault_soak import run_soak  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--evict", action="store_true", help="one gc a round also evicts revisions (tests.fault_soak.EVICT)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/mreg-soak"))
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    report = run_soak(args.dir, rounds=args.rounds, seconds=args.seconds, evict=args.evict)
    summary = json.dumps(report.summary(), indent=1)
    print(summary)
    if args.json is not None:
        args.json.write_text(summary + "\n")
    found = report.tally.findings or report.log_findings or report.bad_blobs or report.gc_errors
    return 1 if found or report.exit_code != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
