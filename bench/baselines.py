"""The two baselines, consuming the same pre-filled topics as the service.

naive: what a course lab does. For every reading, append it to the engine's window and call
Keras ``model.predict`` on that window (window 50, zero-padded at the start so every call has
the same shape and nothing retraces). One ``predict`` costs tens of milliseconds, so it runs
on a sample (``--naive-sample`` readings, default 300) and its readings/s is extrapolated
from the sample.

rewindow: the best re-windowing consumer. Per poll, the window ending at every new reading
of every engine is built (window 50) and all of them go through one XLA-compiled
``tf.function`` of the Keras model (in chunks of up to 4,096 windows, padded to a few fixed
sizes so it compiles only once per size, outside the timing). Runs until its time budget or
the topic's end.

Neither baseline commits offsets or writes outputs: they only consume, decode and predict,
which favours them. Both run in a child process so that TensorFlow is never imported into
the process that runs the service.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.data import Dataset

WINDOW = 50
BUCKETS = (64, 256, 1024, 4096)


@dataclass(frozen=True)
class BaselineResult:
    name: str  # "naive" or "rewindow"
    topic: str
    readings: int  # readings timed
    seconds: float
    readings_per_s: float
    note: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _scaler(artifact: Path) -> tuple[float, float]:
    manifest = json.loads((artifact / "manifest.json").read_text())
    return float(manifest["scaler"]["mean"][0]), float(manifest["scaler"]["scale"][0])


def _load_keras(artifact: Path) -> Any:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")

    return keras.saving.load_model(artifact / "model.keras", safe_mode=True)


def _polls(bootstrap: str, topic: str) -> Iterator[list[tuple[str, list[float]]]]:
    """Per poll: (engine id, its values in this message) for every message, in order."""
    from kafka import KafkaConsumer, TopicPartition

    # Assigned, not subscribed: no group join, which on a loaded box can take longer
    # than the idle limit below and end the baseline before its first record.
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=5000,
        isolation_level="read_committed", fetch_max_bytes=50 << 20,
    )
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise RuntimeError(f"baseline: no partitions for topic {topic}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        idle = 0
        while idle < 50:
            records = consumer.poll(timeout_ms=100)
            if not records:
                idle += 1
                continue
            idle = 0
            out: list[tuple[str, list[float]]] = []
            for batch in records.values():
                for rec in batch:
                    doc = json.loads(rec.value)
                    if "readings" in doc:
                        vals = [float(r["values"]["vibration"]) for r in doc["readings"]]
                    else:
                        vals = [float(doc["values"]["vibration"])]
                    out.append((doc["engine_id"], vals))
            yield out
    finally:
        consumer.close()


def naive(bootstrap: str, ds: Dataset, artifact: Path, sample: int) -> BaselineResult:
    """Keras ``predict`` on the engine's last window for every reading, for ``sample`` readings."""
    model = _load_keras(artifact)
    mean, scale = _scaler(artifact)
    model.predict(np.zeros((1, WINDOW, 1), np.float32), verbose=0)  # build predict once
    windows: dict[str, np.ndarray] = {}
    n = 0
    started = 0.0
    for poll in _polls(bootstrap, ds.topic):
        if not started:
            started = time.perf_counter()
        for engine_id, vals in poll:
            win = windows.get(engine_id)
            if win is None:
                win = windows[engine_id] = np.zeros(WINDOW, np.float32)
            for v in vals:
                win[:-1] = win[1:]
                win[-1] = (v - mean) / scale
                y = model.predict(win[None, :, None], verbose=0)
                _ = float(y[0, -1, 0]) * scale + mean
                n += 1
                if n >= sample:
                    break
            if n >= sample:
                break
        if n >= sample:
            break
    took = _elapsed(started, n, "naive", ds.topic)
    return BaselineResult(
        "naive", ds.topic, n, round(took, 3), round(n / took, 2),
        f"Keras model.predict per reading, window {WINDOW}; measured on {n} readings and "
        "extrapolated",
    )


def _elapsed(started: float, n: int, name: str, topic: str) -> float:
    """Seconds since ``started`` (the first poll); raises if no reading was consumed."""
    if not n:
        raise RuntimeError(f"{name} baseline: no readings consumed from {topic}")
    return time.perf_counter() - started


def _compiled(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False)[:, -1, 0], jit_compile=True)
    for size in BUCKETS:  # compile every shape outside the timing
        fn(np.zeros((size, WINDOW, 1), np.float32))

    def run(x: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(x), BUCKETS[-1]):
            chunk = x[start : start + BUCKETS[-1]]
            size = next(b for b in BUCKETS if b >= len(chunk))
            if size != len(chunk):
                chunk = np.concatenate([chunk, np.zeros((size - len(chunk), WINDOW), np.float32)])
            out.append(fn(chunk[:, :, None]).numpy()[: min(len(x) - start, BUCKETS[-1])])
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    return run


def rewindow(bootstrap: str, ds: Dataset, artifact: Path, budget_s: float) -> BaselineResult:
    """All windows of a poll through one compiled call; until ``budget_s`` or the end."""
    model = _load_keras(artifact)
    mean, scale = _scaler(artifact)
    predict = _compiled(model)
    hist: dict[str, np.ndarray] = {}
    n = 0
    started = 0.0
    for poll in _polls(bootstrap, ds.topic):
        if not started:
            started = time.perf_counter()
        new: dict[str, list[float]] = {}
        for engine_id, vals in poll:
            new.setdefault(engine_id, []).extend(vals)
        parts = []
        for engine_id, vals in new.items():
            h = hist.get(engine_id)
            if h is None:
                h = np.zeros(WINDOW, np.float32)
            seq = np.concatenate([h, (np.asarray(vals, np.float32) - mean) / scale])
            parts.append(np.lib.stride_tricks.sliding_window_view(seq, WINDOW)[1:])
            hist[engine_id] = seq[-WINDOW:]
        x = np.concatenate(parts).astype(np.float32)
        _ = predict(x) * scale + mean
        n += len(x)
        if n >= ds.readings or time.perf_counter() - started > budget_s:
            break
    took = _elapsed(started, n, "rewindow", ds.topic)
    return BaselineResult(
        "rewindow", ds.topic, n, round(took, 3), round(n / took, 1),
        f"one XLA tf.function call per poll over every new reading's window ({WINDOW}); "
        f"{n} readings in {took:.1f} s",
    )


def _child(
    bootstrap: str, datasets: Sequence[Dataset], artifact: Path, sample: int, budget_s: float,
    which: Sequence[str], queue: Any,
) -> None:
    for ds in datasets:
        if "naive" in which:
            queue.put(naive(bootstrap, ds, artifact, sample).to_json())
        if "rewindow" in which:
            queue.put(rewindow(bootstrap, ds, artifact, budget_s).to_json())
    queue.put(None)


def run_baselines(
    bootstrap: str, datasets: Sequence[Dataset], artifact: Path, *, sample: int,
    budget_s: float, which: Sequence[str] = ("naive", "rewindow"),
    on_result: Callable[[BaselineResult], None] | None = None,
) -> list[BaselineResult]:
    """Run the baselines on every dataset in one child process (TensorFlow stays there)."""
    ctx = mp.get_context("spawn")
    queue: Any = ctx.Queue()
    proc = ctx.Process(
        target=_child, args=(bootstrap, list(datasets), artifact, sample, budget_s, which, queue)
    )
    proc.start()
    out: list[BaselineResult] = []
    while True:
        try:
            item = queue.get(timeout=5)
        except Exception:  # queue.Empty: check the child is still alive
            if not proc.is_alive():
                raise RuntimeError(f"baseline process died (exit {proc.exitcode})") from None
            continue
        if item is None:
            break
        result = BaselineResult(**item)
        out.append(result)
        if on_result is not None:
            on_result(result)
    proc.join()
    return out
