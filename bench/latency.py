"""Latency: readings produced at a fixed rate, reading timestamp to result visible.

Three processes, so that producing, serving and watching do not share one interpreter:
- producer: ``rate`` readings/s over ``engines`` engines, each stamped with the wall clock
  when it is handed to the producer: ``bench/RateProducer.java`` (the Java client, run from
  source with the broker's jars; about a tenth of the CPU of kafka-python at 10,000/s), or,
  without Java, two kafka-python processes;
- service: an in-process Runtime as in the throughput runs, plus an "API" probe thread that
  reads 50 engines' latest reading timestamps from the store every 2 ms, which is what
  ``GET /engines/{id}`` returns (HTTP itself left out);
- this process, one thread each: a plain consumer of the readings topic (the Kafka
  transport floor, no work) and a ``read_committed`` consumer of the changelog topic.
  Changelog records, anomaly events and offsets are committed in one transaction, so the
  moment a changelog record is visible is the moment an anomaly event of the same commit is
  visible on the anomalies topic. Both watch partition 0 only (a sixth of the engines): at
  10,000 readings/s, decoding every changelog record (~37 MB/s) would take the watcher more
  CPU than the service has on two cores, and the sample is still thousands of readings.

Latency = time seen - reading timestamp, for readings after a warm-up. ``engines`` defaults
to ``rate`` (one reading per engine per second: each changelog record carries exactly one
new reading); fewer engines means more readings per engine per second.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bench.data import create_topic
from service.state import window_order, window_timestamps

PROBES = 50
WARMUP_S = 3.0
ROOT = Path(__file__).resolve().parent.parent
JAVA_PRODUCER = ROOT / "bench" / "RateProducer.java"
KAFKA_LIB = ROOT / "deploy" / "kafka" / "lib"


def java_producer(bootstrap: str, topic: str, rate: float, engines: int, seconds: float,
                  t_start: float) -> subprocess.Popen[bytes] | None:
    """Start ``RateProducer.java`` (None when Java or the Kafka jars are missing)."""
    java = shutil.which("java")
    if java is None or not any(KAFKA_LIB.glob("kafka-clients-*.jar")):
        return None
    return subprocess.Popen(
        [java, "-XX:TieredStopAtLevel=1", "-cp", f"{KAFKA_LIB}/*", str(JAVA_PRODUCER),
         bootstrap, topic, str(rate), str(engines), str(seconds), str(int(t_start * 1000))],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )


def _produce(bootstrap: str, topic: str, rate: float, engines: range, seconds: float,
             t_start: float) -> None:
    from kafka import KafkaProducer

    prod = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks=1,
                         compression_type="lz4")
    keys = [f"engine-{i:05d}" for i in engines]
    rng = np.random.default_rng(engines.start)
    n = 0
    while True:
        for e in keys:
            due = t_start + n / rate
            now = time.time()
            if now - t_start > seconds:
                prod.flush()
                prod.close()
                return
            if due > now:
                time.sleep(due - now)
            ts = int(time.time() * 1000)
            v = round(float(rng.uniform(0.05, 0.12)), 7)
            prod.send(topic, key=e.encode(),
                      value=f'{{"engine_id":"{e}","ts":{ts},"values":{{"vibration":{v}}}}}'
                      .encode())
            n += 1


def _serve(settings_kw: dict[str, Any], probe_ids: list[str], t_measure: Any, stop: Any,
           ready: Any, queue: Any) -> None:
    from bench.service_run import service_settings
    from service.runtime import Runtime

    runtime = Runtime(service_settings(**settings_kw))
    runtime.start()
    while not runtime.ready:
        time.sleep(0.01)
    ready.set()
    store = runtime.store
    seen: dict[str, int] = {}
    lat: list[float] = []
    while not stop.is_set():
        with store.lock:
            now = time.time()
            for e in probe_ids:
                slot = store.index.get(e)
                if slot is None:
                    continue
                ts = int(store.last_ts[slot])
                if seen.get(e) != ts:
                    seen[e] = ts
                    if 0 < t_measure.value <= ts / 1000:
                        lat.append(now - ts / 1000)
        time.sleep(0.002)
    runtime.stop()
    queue.put(lat)


def _quantiles(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"n": 0}
    a = np.asarray(xs) * 1000
    return {"n": len(xs), "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p95_ms": round(float(np.percentile(a, 95)), 1),
            "p99_ms": round(float(np.percentile(a, 99)), 1),
            "max_ms": round(float(a.max()), 1)}


def _watch(consumer: Any, stamps: Any, t_measure: float, end: float, out: list[float]) -> None:
    """Poll ``consumer`` until ``end`` and then until it has been quiet for a second (at
    most 30 s more: a watcher that fell behind must not drop the latest, slowest readings);
    for every reading timestamp ``stamps(record)`` returns, record seen - timestamp
    (readings after ``t_measure`` only)."""
    quiet_since = time.time()
    while True:
        now = time.time()
        if now >= end and (now - quiet_since >= 1.0 or now >= end + 30.0):
            return
        polled = consumer.poll(timeout_ms=50)
        if polled:
            quiet_since = time.time()
        for recs in polled.values():
            now = time.time()
            for rec in recs:
                for ts in stamps(rec):
                    if ts / 1000 >= t_measure:
                        out.append(now - ts / 1000)


class _NewReadings:
    """The readings a changelog record commits for the first time: the window timestamps
    newer than the engine's previous record's ``last_ts`` (with several readings per engine
    per commit, all of them, not just the newest)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.last: dict[bytes, int] = {}

    def __call__(self, rec: Any) -> list[int]:
        # Decoding the record, not restoring it into a store: this watcher must keep up
        # with every commit of the partition, or its own backlog shows up as latency.
        row = self.store.decode_row(rec.value)
        last_ts = int(row["last_ts"])
        prev = self.last.get(rec.key)
        self.last[rec.key] = last_ts
        if prev is None:
            return [last_ts]
        order = window_order(int(row["count"]), self.store.window)
        ts = window_timestamps(row["ring_ts"][order], last_ts)
        return [int(t) for t in ts if t > prev]


def run_latency(bootstrap: str, artifact: Path, rate: int, seconds: float,
                engines: int | None = None, commit_interval_ms: int | None = None,
                ) -> dict[str, Any]:
    """Produce ``rate`` readings/s over ``engines`` (default ``rate``) engines for ``seconds``
    s; quantiles of every visibility path."""
    from kafka import KafkaConsumer, TopicPartition

    from service.config import load_settings
    from service.model import load_streaming_model
    from service.scoring import EngineScoring
    from service.state import EngineStore

    prefix = f"bench-lat-{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.readings"
    create_topic(bootstrap, topic)
    engines = engines or rate
    kw = {"bootstrap": bootstrap, "readings_topic": topic, "artifact": artifact,
          "exactly_once": True, "prefix": prefix}
    if commit_interval_ms is not None:
        kw["kafka"] = {"commit_interval_ms": commit_interval_ms}
    ctx = mp.get_context("spawn")
    stop, ready, queue = ctx.Event(), ctx.Event(), ctx.Queue()
    probe_ids = [f"engine-{i:05d}" for i in range(0, engines, max(1, engines // PROBES))]
    t_measure_box = ctx.Value("d", 0.0)
    serve = ctx.Process(target=_serve, args=(kw, probe_ids, t_measure_box, stop, ready, queue))
    serve.start()
    if not ready.wait(120):
        serve.kill()
        raise RuntimeError("latency: service not ready in 120 s")
    model = load_streaming_model(artifact)
    scoring = EngineScoring(load_settings().scoring, 1)
    scratch = EngineStore(window=256, channels=1, model_state_size=model.state_size,
                          score_state_size=scoring.state_size)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                             fetch_max_wait_ms=10, enable_auto_commit=False)
    tp = TopicPartition(f"{prefix}.changelog", 0)
    consumer.assign([tp])
    consumer.seek_to_end(tp)
    # The transport floor: the same client settings as the service's consumer, no work.
    floor = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                          enable_auto_commit=False, max_poll_records=5000)
    rtp = TopicPartition(topic, 0)
    floor.assign([rtp])
    floor.seek_to_end(rtp)
    t_start = time.time() + 3.0  # the JVM compiles the producer meanwhile
    t_measure = t_start + WARMUP_S
    t_measure_box.value = t_measure
    java = java_producer(bootstrap, topic, rate, engines, seconds + WARMUP_S, t_start)
    producers = [] if java is not None else [
        ctx.Process(target=_produce, args=(bootstrap, topic, rate / 2,
                                           range(k, engines, 2), seconds + WARMUP_S, t_start))
        for k in range(2)
    ]
    for p in producers:
        p.start()
    lat: list[float] = []
    kafka: list[float] = []
    end = t_start + seconds + WARMUP_S + 1.0
    watchers = [
        threading.Thread(target=_watch, args=(
            consumer, _NewReadings(scratch), t_measure, end, lat)),
        threading.Thread(target=_watch, args=(
            floor, lambda r: [int(json.loads(r.value)["ts"])], t_measure, end, kafka)),
    ]
    for w in watchers:
        w.start()
    for w in watchers:
        w.join()
    for p in producers:
        p.join(30)
    sent = None
    if java is not None:
        out, _ = java.communicate(timeout=60)
        sent = int(out.strip() or 0)
    stop.set()
    api: list[float] = queue.get(timeout=60)
    serve.join(60)
    consumer.close()
    floor.close()
    return {"rate": rate, "engines": engines, "seconds": seconds,
            "commit_interval_ms": commit_interval_ms,
            "generator": "java" if java is not None else "kafka-python", "sent": sent,
            "sampled": "partition 0 of 6 (kafka, committed); 50 engines (api)",
            "kafka": _quantiles(kafka),
            "committed": _quantiles(lat), "api": _quantiles(api)}
