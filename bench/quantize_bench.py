"""Benchmark mreg's numpy quantizers against ggml's own, on one float32 matrix, in one process.

    python bench/quantize_bench.py [--rows 4096] [--cols 4096] [--types Q8_0,Q4_K,Q5_K,Q6_K]  (also Q2_K, Q3_K, …) [--runs 3]
                                   [--json out.json]

For each type, ``registry.convert.quantize.quantize`` and ggml's ``ggml_quantize_chunk`` (llama-cpp-python's
libggml-base through ctypes, one call, single-threaded C) quantize the same normally distributed weights
(σ 0.02); runs are interleaved and the fastest of each is reported, wall time and CPU time of this
process (both sides run on one thread, so CPU time is the fairer measure on a busy machine), with
mreg's time over ggml's; then mreg's wall time with ``--threads`` threads (default: every CPU). The outputs are compared byte for byte: a mismatch aborts. See bench/README.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gguf import GGMLQuantizationType  # noqa: E402

from bench.machine import describe, machine_info  # noqa: E402
from mreg.registry.convert.quantize import quantize  # noqa: E402
from tests.ggml_reference import ggml_quantize  # noqa: E402


def _timed(function, data: np.ndarray, qtype: GGMLQuantizationType) -> tuple[float, float, np.ndarray]:
    """(wall seconds, CPU seconds, output) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = function(data, qtype)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--types", default="Q8_0,Q4_K,Q5_K,Q6_K")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    qtypes = [GGMLQuantizationType[name.strip().upper()] for name in args.types.split(",")]
    data = (np.random.default_rng(0).standard_normal((args.rows, args.cols), dtype=np.float32)
            * np.float32(0.02))
    info = machine_info(numpy=version("numpy"), gguf=version("gguf"), llama_cpp_python=version("llama-cpp-python"))
    print(f"{args.rows}×{args.cols} float32, fastest of {args.runs} interleaved run(s); {describe(info)}")
    print(f"{'type':6} {'ggml s':>8} {'mreg s':>8} {'wall ratio':>10} "
          f"{'ggml cpu s':>10} {'mreg cpu s':>10} {'cpu ratio':>9} {f'mreg s, {args.threads} threads':>20}")
    results = []
    for qtype in qtypes:
        times: dict[str, list[tuple[float, float]]] = {"ggml": [], "mreg": [], "mreg_threads": []}
        for _ in range(args.runs):
            wall, cpu, expected = _timed(ggml_quantize, data, qtype)
            times["ggml"].append((wall, cpu))
            wall, cpu, got = _timed(quantize, data, qtype)
            times["mreg"].append((wall, cpu))
            wall, cpu, threaded = _timed(functools.partial(quantize, threads=args.threads), data, qtype)
            times["mreg_threads"].append((wall, cpu))
            if any(out.shape != expected.shape or not np.array_equal(out, expected) for out in (got, threaded)):
                sys.exit(f"{qtype.name}: mreg's bytes differ from ggml's")
        (ggml_wall, ggml_cpu), (mreg_wall, mreg_cpu) = (
            tuple(min(run[i] for run in times[tool]) for i in (0, 1)) for tool in ("ggml", "mreg"))
        threaded_wall = min(run[0] for run in times["mreg_threads"])
        results.append({"type": qtype.name, "ggml_s": ggml_wall, "mreg_s": mreg_wall, "ggml_cpu_s": ggml_cpu,
                        "mreg_cpu_s": mreg_cpu, "mreg_threads_s": threaded_wall, "runs": times})
        print(f"{qtype.name:6} {ggml_wall:8.2f} {mreg_wall:8.2f} {mreg_wall / ggml_wall:10.2f} "
              f"{ggml_cpu:10.2f} {mreg_cpu:10.2f} {mreg_cpu / ggml_cpu:9.2f} {threaded_wall:20.2f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
