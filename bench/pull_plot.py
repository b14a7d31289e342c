"""Plot `bench/pull_bench.py --json` results: throughput per connection count for `mreg pull --connections N`,
`aria2c -xN -sN` and huggingface_hub (one connection), as an SVG (text: it can live in the repo).

    python bench/pull_plot.py RESULT.json OUT.svg

Needs matplotlib (`pip install matplotlib`; only this script uses it). Each point is the median of the
runs in the file; the title says the file size, the per-connection cap, the run count and the machine.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

SERIES = {
    "mreg pull --connections N": re.compile(r"^mreg pull --connections (\d+)$"),
    "aria2c -xN -sN -k1M": re.compile(r"^aria2c -x(\d+) -s\d+ -k1M$"),
    "huggingface_hub (hf_hub_download)": re.compile(r"^hf_hub_download()$"),
}
"""Each line of the plot and how its rows are named; the group is the connection count (none: 1)."""


def points(rows: list[dict], pattern: re.Pattern[str]) -> list[tuple[int, float]]:
    """(connections, MB/s) of the rows ``pattern`` names, by connection count."""
    found = [(int(m.group(1) or 1), row["mb_per_s"]) for row in rows if (m := pattern.match(row["tool"]))]
    return sorted(found)


def main(argv: list[str] | None = None) -> None:
    """Read the results, draw the plot, write the SVG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, help="bench/pull_bench.py --json output")
    parser.add_argument("out", type=Path, help="the SVG to write")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    result = json.loads(args.result.read_text())
    settings, machine = result["args"], result["machine"]
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for label, pattern in SERIES.items():
        xy = points(result["rows"], pattern)
        if xy:
            axes.plot([x for x, _ in xy], [y for _, y in xy], marker="o", label=label)
    axes.set_xscale("log", base=2)
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.set_xlabel("connections per file")
    axes.set_ylabel("MB/s (whole run, start-up included)")
    axes.set_title(f"{int(settings['size']) / 1e6:.0f} MB file, {int(settings['throttle']) / 1e6:g} MB/s per connection, "
                   f"median of {settings['runs']} run(s)\n{machine['date']}, {machine['nproc']} CPUs ({machine['cpu']})",
                   fontsize=9)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    plt.rcParams["svg.hashsalt"] = "mreg"  # the same input draws the same file
    figure.savefig(args.out, format="svg", metadata={"Date": None})


if __name__ == "__main__":
    main()
