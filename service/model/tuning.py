"""Process-wide settings that the kernel's many small array operations depend on.

:func:`tune_process` is called once by the pipeline (so only in service processes, never in
the evaluations or tests that import the kernel) and by the cost benchmark, which measures
what the service runs.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from pathlib import Path

from service.memory import libc_function

log = logging.getLogger(__name__)

#: OpenBLAS entry points that set its thread count, by build (NumPy's wheels, system).
_SET_THREADS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)
#: glibc ``mallopt`` parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap, and the heap keeps up to twice this free.
HEAP_BLOCK_LIMIT = 32 << 20


@functools.cache
def tune_process() -> dict[str, bool]:
    """Apply both settings below; returns which of them took effect."""
    return {"single_threaded_blas": single_threaded_blas(), "heap_blocks": heap_blocks()}


def single_threaded_blas() -> bool:
    """Make OpenBLAS run every product in this process on one thread.

    The kernel's products are small (rows = engines in a round, 65 x 256 weights) and the
    service shares its cores with the Kafka client's I/O thread (and, on small boxes, the
    broker): OpenBLAS's worker threads then spin and wait for a core. Measured on the
    2-core box: a (100, 65) @ (65, 256) float32 product 285-325 us with OpenBLAS's default
    2 threads, 36-94 us with one. Results are the same: each output element is still one
    thread's dot product. Returns whether an OpenBLAS was found (Linux, NumPy linked
    against OpenBLAS).
    """
    try:
        with Path("/proc/self/maps").open() as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return False
    for path in sorted(p for p in paths if p.startswith("/")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SET_THREADS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(1)
                log.info("OpenBLAS limited to one thread (%s)", name)
                return True
    return False


def heap_blocks() -> bool:
    """Serve array temporaries up to :data:`HEAP_BLOCK_LIMIT` from glibc's heap.

    A round over 1,000 engines makes float32 temporaries of 256 KB-1 MB. With glibc's
    default thresholds each of them is a fresh ``mmap`` (or the freed heap top is trimmed
    and faulted in again), i.e. page faults on every call: the LSTM step of 1,000 engines
    took 2.07 us per engine, 0.69 us with these thresholds (0.73-0.86 at 100-300 engines,
    which fit under the defaults). The cost is up to 2 x the limit of freed memory kept by
    the process. Returns False where there is no glibc ``mallopt``.
    """
    mallopt = libc_function("mallopt")
    if mallopt is None:
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, HEAP_BLOCK_LIMIT))
    ok = bool(mallopt(_M_TRIM_THRESHOLD, 2 * HEAP_BLOCK_LIMIT)) and ok
    if ok:
        log.info("heap serves blocks up to %d MiB", HEAP_BLOCK_LIMIT >> 20)
    return ok
