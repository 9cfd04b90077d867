"""Memory per tracked engine and cost per reading, each measured in a fresh subprocess.

No Kafka: the store, model, scoring and processor that the service builds, fed in-memory
readings. RSS comes from /proc/self/status (VmRSS) before and after the engines exist, so it
includes everything the engines cost: the store's rows (which grow by 1.25x, so a fleet
just past a growth step pays for up to a quarter more rows) and the id index. Both readings
are taken after ``malloc_trim(0)``, as the service's MemoryTrimmer does periodically; the
reading before that trim (allocator slack of the processing included) is reported too.

``python -m bench.memory '{"kind": "rss", "engines": 1000, "window": 256, "artifact": "..."}'``
prints one JSON result; :func:`measure` runs that in a subprocess.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import rss_kib

ROOT = Path(__file__).resolve().parent.parent
POLL = 5000  # readings per process() call, like one poll of max_poll_records


def measure(kind: str, **params: Any) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; return its JSON result."""
    spec = json.dumps({"kind": kind, **{k: str(v) if isinstance(v, Path) else v
                                        for k, v in params.items()}})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", spec], cwd=ROOT, env=env, capture_output=True,
        text=True, check=False, timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench.memory {spec} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _setup(window: int, artifact: Path,
           scoring: dict[str, Any] | None = None) -> tuple[Any, Any, int]:
    from service.config import load_settings
    from service.model import load_streaming_model
    from service.scoring import EngineScoring

    base = rss_kib()
    model = load_streaming_model(artifact)
    settings = load_settings(state={"window": window}, scoring=scoring or {})
    scoring_ = EngineScoring(settings.scoring, len(model.channels))
    gc.collect()
    return model, scoring_, rss_kib() - base


def _processor(model: Any, scoring: Any, window: int) -> Any:
    from service.model.tuning import tune_process
    from service.processor import BatchProcessor
    from service.scoring import STATUS_ORDER
    from service.state import EngineStore

    store = EngineStore(window=window, channels=len(model.channels),
                        model_state_size=model.state_size, score_state_size=scoring.state_size)
    tune_process()  # as the service's pipeline does
    return BatchProcessor(model, scoring, store, STATUS_ORDER)


def rss(engines: int, window: int, artifact: Path,
        scoring: dict[str, Any] | None = None) -> dict[str, Any]:
    """RSS growth of the engine state for ``engines`` engines (2 readings each);
    ``scoring``: settings that differ from the defaults (e.g. channel_reduce)."""
    model, scoring_, model_kib = _setup(window, artifact, scoring)
    gc.collect()
    _trim_heap()
    before = rss_kib()
    proc = _processor(model, scoring_, window)
    for tick in _ticks_iter(engines, 2, model.channels):
        for start in range(0, len(tick), POLL):
            part = tick[start : start + POLL]
            proc.process(part, [0] * len(part))
    gc.collect()
    untrimmed = rss_kib()
    _trim_heap()  # what the service's MemoryTrimmer does every state.trim_interval_s
    after = rss_kib()
    store = proc.store
    row = sum(getattr(store, f).nbytes for f in store._ROW_FIELDS) / store.capacity
    return {
        "engines": engines, "window": window, "channels": len(model.channels),
        "model_rss_kib": model_kib,
        "rss_before_kib": before, "rss_after_kib": after,
        "bytes_per_engine": round((after - before) * 1024 / engines, 1),
        "rss_untrimmed_kib": untrimmed,
        "bytes_per_engine_untrimmed": round((untrimmed - before) * 1024 / engines, 1),
        "store_capacity": store.capacity, "row_bytes": round(row, 1),
    }


def _trim_heap() -> None:
    """glibc ``malloc_trim(0)`` (what the service's MemoryTrimmer calls; nothing elsewhere)."""
    from service.memory import malloc_trim

    trim = malloc_trim()
    if trim is not None:
        trim()


def _ticks_iter(engines: int, ticks: int, channels: tuple[str, ...]) -> Any:
    # One tick at a time so the readings of a 100k fleet are not all alive at once. Every
    # channel gets a level like a healthy IMS bearing's.
    import numpy as np

    from service.domain import Reading

    rng = np.random.default_rng(0)
    ids = [f"engine-{i:06d}" for i in range(engines)]
    for t in range(ticks):
        values = rng.uniform(0.05, 0.12, (engines, len(channels)))
        yield [Reading(e, 1_795_608_000_000 + t * 1000,
                       {c: float(values[i, k]) for k, c in enumerate(channels)})
               for i, e in enumerate(ids)]


def cost(engines: int, window: int, artifact: Path, ticks: int,
         scoring: dict[str, Any] | None = None, warm_ticks: int = 0) -> dict[str, Any]:
    """Microseconds per reading of ``process`` and of encoding the changelog rows, over
    ``ticks`` readings per engine after ``2 + warm_ticks`` untimed ones (the rows and a first
    prediction; then, for a steady state, commissioning)."""
    model, scoring_, _ = _setup(window, artifact, scoring)
    proc = _processor(model, scoring_, window)
    stream = _ticks_iter(engines, ticks + 2 + warm_ticks, model.channels)
    for _ in range(2 + warm_ticks):  # outside the timing
        tick = next(stream)
        for start in range(0, len(tick), POLL):
            part = tick[start : start + POLL]
            proc.process(part, [0] * len(part))
    flat = [r for tick in stream for r in tick]
    polls = [flat[s : s + POLL] for s in range(0, len(flat), POLL)]
    parts = [0] * POLL
    t_proc = t_enc = 0.0
    for poll in polls:
        t0 = time.perf_counter()
        result = proc.process(poll, parts[: len(poll)])
        t1 = time.perf_counter()
        # what the commit writes to the changelog (as Pipeline._commit encodes it)
        proc.store.encode_rows(np.fromiter(result.dirty, dtype=np.intp))
        t_enc += time.perf_counter() - t1
        t_proc += t1 - t0
    n = len(flat)
    return {
        "engines": engines, "window": window, "readings": n, "channels": len(model.channels),
        "warm_ticks": warm_ticks,
        "process_us": round(t_proc / n * 1e6, 3), "changelog_encode_us": round(t_enc / n * 1e6, 3),
        "changelog_row_bytes": len(proc.store.encode_row(0)),
    }


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    kind = spec.pop("kind")
    spec["artifact"] = Path(spec["artifact"])
    result = rss(**spec) if kind == "rss" else cost(**spec)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
