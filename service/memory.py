"""Hand freed heap memory back to the operating system, so RSS follows the live data.

The pipeline allocates and frees many megabytes per batch (NumPy temporaries, decoded
messages, changelog records). glibc keeps freed memory in its heaps for reuse, and with
several threads (pipeline, Kafka I/O, HTTP, fleet view) in several heaps, so a service that
holds ~60 MB of live data at 10,000 engines showed ~200 MiB RSS. ``malloc_trim(0)`` returns
the free pages of every heap to the OS; it takes a few milliseconds, so it runs from its own
thread every ``state.trim_interval_s`` seconds. On a C library without ``malloc_trim``
(musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


@functools.cache
def libc_function(name: str) -> Any | None:
    """The C library's function ``name`` (ctypes), or None where it has no such function."""
    lib = ctypes.util.find_library("c")
    if lib is None:
        return None
    try:
        return getattr(ctypes.CDLL(lib), name)
    except (OSError, AttributeError):
        return None


def malloc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)`` as a callable, or None where the C library lacks it."""
    fn = libc_function("malloc_trim")
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return lambda: int(fn(0))


class MemoryTrimmer:
    """Calls ``malloc_trim(0)`` every ``interval_s`` seconds in a daemon thread."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._trim = malloc_trim()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return self._trim is not None

    def start(self) -> None:
        if self._thread is None and self._trim is not None and self.interval_s > 0:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="malloc-trim", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self) -> None:
        assert self._trim is not None
        while not self._stop.wait(self.interval_s):
            self._trim()
