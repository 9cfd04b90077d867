"""Freed heap memory goes back to the OS (service.memory)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from service.memory import MemoryTrimmer, malloc_trim

# Fill the heap with 2 KB blocks (above pymalloc's limit, so they come from malloc), free
# all but every 64th (the survivors pin the heap, so free() alone cannot shrink it), and
# report VmRSS before and after malloc_trim(0).
CHILD = """
import sys
from service.memory import malloc_trim
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
blocks = [bytes(2048) for _ in range(100_000)]
keep = blocks[::64]
del blocks
before = rss()
trim = malloc_trim()
assert trim is not None
trim()
print(before, rss(), len(keep))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_malloc_trim_returns_freed_heap_pages() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    before, after = int(out[0]), int(out[1])
    assert before - after > 100_000, f"RSS {before} KiB -> {after} KiB after malloc_trim"


def test_trimmer_calls_trim_until_stopped() -> None:
    trimmer = MemoryTrimmer(0.01)
    assert trimmer.available == (malloc_trim() is not None)
    calls: list[float] = []

    def trim() -> int:
        calls.append(time.monotonic())
        return 0

    trimmer._trim = trim
    trimmer.start()
    time.sleep(0.2)
    trimmer.stop()
    n = len(calls)
    assert n >= 3
    time.sleep(0.05)
    assert len(calls) == n


def test_interval_zero_never_starts() -> None:
    trimmer = MemoryTrimmer(0)
    trimmer.start()
    assert trimmer._thread is None
