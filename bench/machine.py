"""What a benchmark's numbers were measured on, shared by every script in bench/."""

from __future__ import annotations

import datetime
import os
import platform
from importlib.metadata import version
from pathlib import Path


def machine_info(**tools: str) -> dict[str, str]:
    """Date, CPUs, RAM, kernel, Python, then ``tools`` (name → version) and huggingface_hub's version."""
    meminfo = Path("/proc/meminfo").read_text().split()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {
        "date": datetime.date.today().isoformat(),
        "nproc": str(os.cpu_count()),
        "ram": f"{int(meminfo[meminfo.index('MemTotal:') + 1]) / 1024 ** 2:.1f} GiB",
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        **tools,
        "huggingface_hub": version("huggingface_hub"),
    }


def describe(info: dict[str, str]) -> str:
    """``machine_info`` in one line."""
    tools = ", ".join(f"{name} {info[name]}" for name in list(info)[6:])
    return (f"{info['date']}, {info['nproc']} CPUs ({info['cpu']}), {info['ram']} RAM, kernel {info['kernel']}, "
            f"Python {info['python']}, {tools}")
