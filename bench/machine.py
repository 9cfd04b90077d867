"""The machine a benchmark ran on, and memory readings from /proc."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo ("unknown" when it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total_gib() -> float:
    """Physical memory in GiB from /proc/meminfo (0 when unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return 0.0


def describe() -> dict[str, Any]:
    """Cores, memory, CPU model, Python and OS: printed and stored with every result."""
    return {
        "cores": os.cpu_count() or 0,
        "mem_gib": round(mem_total_gib(), 1),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": load_average(),
    }


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: other work on the box skews every number."""
    return [round(x, 2) for x in os.getloadavg()]


def describe_line(m: dict[str, Any]) -> str:
    return (f"{m['cores']} cores / {m['mem_gib']:.0f} GiB, CPU {m['cpu_model']}, "
            f"Python {m['python']}")


def rss_kib(pid: int | str = "self") -> int:
    """VmRSS of a process in KiB (from /proc/<pid>/status); 0 when it is gone."""
    return _status_field(pid, "VmRSS:")


def hwm_kib(pid: int | str = "self") -> int:
    """VmHWM (peak RSS) of a process in KiB."""
    return _status_field(pid, "VmHWM:")


def _status_field(pid: int | str, name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
