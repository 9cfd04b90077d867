"""The three measurements of one peer: sustained throughput, restart with state, latency.

Each starts the peer as a process (:class:`bench.peers.runner.PeerProcess`) on the
benchmark's broker and reads its markers; nothing here knows a framework beyond its name,
its changelog topic's name and its delivery guarantee.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from bench.data import START_MS, Dataset, create_topic, producer
from bench.latency import WARMUP_S, _quantiles, _watch, java_producer
from bench.peers.job import Dims, EngineState
from bench.peers.runner import Marker, PeerProcess, state_size_mib
from service.simulator import Fleet

#: The strongest delivery guarantee each peer offers, as each ran in this benchmark.
GUARANTEES = {
    "vibewatch": "exactly-once (Kafka transactions: changelog, events, offsets)",
    "quix": 'exactly-once (processing_guarantee="exactly-once": transactions)',
    "faust": 'exactly-once (processing_guarantee="exactly_once": transactions)',
    "bytewax": "exactly-once state and input positions (recovery snapshots), "
               "at-least-once output",
}
#: Peers whose state is in a Kafka changelog (restorable on a new machine).
CHANGELOG = ("quix", "faust")
STARTUP_S = 180.0


def _args(bootstrap: str, topic: str, out_topic: str, group: str, state_dir: Path,
          artifact: Path, *extra: str) -> list[str]:
    return ["--bootstrap", bootstrap, "--topic", topic, "--out-topic", out_topic, "--group",
            group, "--state-dir", str(state_dir), "--artifact", str(artifact), *extra]


def throughput(peer: str, bootstrap: str, ds: Dataset, artifact: Path, work: Path,
               budget_s: float, group: str | None = None) -> dict[str, Any]:
    """Run ``peer`` on ``ds.topic`` until it has processed every reading or, once it has
    seen every engine, for ``budget_s`` seconds after its first message; its rate is the
    readings it processed per second from its first message on (the final commit is not
    waited for, which favours the peer). Leaves the group and state behind for a restart.
    """
    group = group or f"peer-{peer}-{uuid.uuid4().hex[:8]}"
    out = f"{group}.anomalies"
    create_topic(bootstrap, out)
    state = work / group
    args = _args(bootstrap, ds.topic, out, group, state, artifact, "--expect", str(ds.readings))
    with PeerProcess(peer, args) as proc:
        first = proc.wait("FIRST", STARTUP_S)
        deadline = time.time() + max(budget_s * 4, 600.0)
        while "DONE" not in proc.markers:
            last = proc.counts[-1] if proc.counts else first
            if last.t - first.t >= budget_s and last.readings >= ds.engines:
                break
            if time.time() > deadline:
                raise RuntimeError(f"{peer}: {last.readings} of {ds.readings} readings "
                                   f"after {time.time() - first.t:.0f} s")
            if proc.proc.poll() is not None:
                proc.wait("DONE", 5.0)  # raises with the peer's last lines
            time.sleep(0.2)
        end = proc.markers.get("DONE") or proc.counts[-1]
    seconds = end.t - first.t
    done = end.readings - first.readings
    return {
        "peer": peer, "engines": ds.engines, "form": ds.form, "topic": ds.topic,
        "group": group, "state_dir": str(state), "readings": done,
        "of_readings": ds.readings, "seconds": round(seconds, 2),
        "readings_per_s": round(done / seconds, 1) if seconds > 0 else None,
        "finished": "DONE" in proc.markers, "startup_s": round(first.t - proc.started, 2),
        "rss_first_kib": first.rss_kib, "rss_end_kib": end.rss_kib,
        "state_on_disk_mib": state_size_mib(state),
    }


def append_tick(bootstrap: str, ds: Dataset, tick: int) -> int:
    """One more reading for every engine of ``ds``, ``tick`` seconds after the first."""
    prod = producer(bootstrap)
    ts = START_MS + tick * 1000
    for engine in Fleet(ds.engines, seed=ds.seed).ids:
        prod.send(ds.topic, key=engine.encode(),
                  value=f'{{"engine_id":"{engine}","ts":{ts},"values":{{"vibration":0.08}}}}'
                  .encode())
    prod.flush()
    prod.close()
    return ds.engines


def restart(peer: str, bootstrap: str, ds: Dataset, artifact: Path, run: dict[str, Any],
            tick: int, wipe: bool) -> dict[str, Any]:
    """Start ``peer`` again on the group and state of the throughput ``run``: seconds from the
    framework's start (after imports and the model) to its first message processed, with
    every engine's state restored; ``wipe`` deletes the local state first (a new machine:
    the state comes back from the changelog)."""
    state = Path(run["state_dir"])
    if wipe:
        shutil.rmtree(state, ignore_errors=True)
    append_tick(bootstrap, ds, tick)
    args = _args(bootstrap, ds.topic, f"{run['group']}.anomalies", run["group"], state,
                 artifact)
    with PeerProcess(peer, args) as proc:
        first = proc.wait("FIRST", STARTUP_S)
        boot = proc.markers["BOOT"]
    return {"peer": peer, "engines": ds.engines, "local_state": not wipe,
            "restart_s": round(first.t - boot.t, 2),
            "process_start_to_first_s": round(first.t - proc.started, 2)}


class _NewReadings:
    """Reading timestamps a peer's changelog record (an :class:`EngineState`) commits for
    the first time, as ``bench.latency`` counts the service's."""


    def __init__(self, dims: Dims) -> None:
        self.dims = dims
        self.last: dict[bytes, int] = {}
        self.undecodable = 0

    def __call__(self, rec: Any) -> list[int]:
        if not rec.value:
            return []
        try:
            st = EngineState.from_bytes(rec.value, self.dims)
        except ValueError:
            self.undecodable += 1
            return []
        prev = self.last.get(rec.key)
        self.last[rec.key] = st.last_ts
        # A key's first record: its whole window is new to the watcher (the topic and the
        # engines are fresh; _watch drops what came before the measured interval).
        return [int(t) for t in st.window_ts() if prev is None or t > prev]


def _probe_stamps(rec: Any) -> list[int]:
    partition, ts = rec.value.split()
    return [int(ts)] if int(partition) == 0 else []


def changelog_topic(bootstrap: str, peer: str, group: str) -> str:
    """The changelog topic the framework made for the job's state."""
    if peer == "faust":
        return f"{group}-engines-changelog"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-peers")
    try:
        names = [t for t in admin.list_topics() if t.startswith("changelog__") and group in t]
    finally:
        admin.close()
    if len(names) != 1:
        raise RuntimeError(f"{peer}: expected one changelog topic for {group}, found {names}")
    return str(names[0])


def latency(peer: str, bootstrap: str, artifact: Path, dims: Dims, work: Path, rate: int,
            seconds: float, engines: int, commit_interval_s: float) -> dict[str, Any]:
    """Readings at ``rate``/s over ``engines`` engines (``bench/RateProducer.java``); latency
    from a reading's timestamp to its result visible to a ``read_committed`` consumer: the
    changelog record that commits it (Quix, Faust: in the same transaction as the events),
    or the probe record the sink writes for it (Bytewax, no transactions). Partition 0 only,
    as ``bench.latency`` samples the service. A peer that falls behind leaves readings that
    never become visible in the run: then ``visible`` < 0.99 and the p99 is not defined."""
    group = f"peer-lat-{peer}-{uuid.uuid4().hex[:8]}"
    topic, out, probe = f"{group}.readings", f"{group}.anomalies", f"{group}.probe"
    for t in (topic, out) + ((probe,) if peer not in CHANGELOG else ()):
        create_topic(bootstrap, t)
    extra = ["--tail"]
    if peer in CHANGELOG:
        extra += ["--commit-interval", str(commit_interval_s)]
    else:
        extra += ["--probe-topic", probe]
    args = _args(bootstrap, topic, out, group, work / group, artifact, *extra)
    with PeerProcess(peer, args) as proc:
        proc.wait("BOOT", STARTUP_S)
        prime = KafkaProducer(bootstrap_servers=bootstrap)
        ts = int(time.time() * 1000)
        prime.send(topic, key=b"prime", value=(
            f'{{"engine_id":"prime","ts":{ts},"values":{{"vibration":0.08}}}}').encode())
        prime.flush()
        prime.close()
        proc.wait("FIRST", STARTUP_S)
        watched = changelog_topic(bootstrap, peer, group) if peer in CHANGELOG else probe
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                 fetch_max_wait_ms=10, enable_auto_commit=False)
        tps = ([TopicPartition(watched, 0)] if peer in CHANGELOG else
               [TopicPartition(watched, p) for p in range(6)])
        consumer.assign(tps)
        consumer.seek_to_end(*tps)
        floor = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                              max_poll_records=5000)
        rtp = TopicPartition(topic, 0)
        floor.assign([rtp])
        floor.seek_to_end(rtp)
        t_start = time.time() + 3.0
        t_measure = t_start + WARMUP_S
        java = java_producer(bootstrap, topic, rate, engines, seconds + WARMUP_S, t_start)
        if java is None:
            raise RuntimeError("the latency runs need Java and the broker's jars "
                               "(make system-deps kafka-jars)")
        lat: list[float] = []
        kafka: list[float] = []
        stamps = _NewReadings(dims) if peer in CHANGELOG else _probe_stamps
        end = t_start + seconds + WARMUP_S + 1.0
        watchers = [
            threading.Thread(target=_watch, args=(consumer, stamps, t_measure, end, lat)),
            threading.Thread(target=_watch, args=(
                floor, lambda r: [int(json.loads(r.value)["ts"])], t_measure, end, kafka)),
        ]
        for w in watchers:
            w.start()
        for w in watchers:
            w.join()
        sent_text, _ = java.communicate(timeout=60)
        during = [m for m in proc.counts if m.t >= t_start]
    consumer.close()
    floor.close()
    visible = len(lat) / len(kafka) if kafka else 0.0
    q: dict[str, float | None] = {**_quantiles(lat)}
    if visible < 0.99:
        q.update(p99_ms=None, max_ms=None)
    return {"peer": peer, "rate": rate, "engines": engines, "seconds": seconds,
            "commit_interval_s": commit_interval_s if peer in CHANGELOG else None,
            "sent": int(sent_text.strip() or 0), "expected_p0": len(kafka),
            "visible": round(min(visible, 1.0), 3), "committed": q, "kafka": _quantiles(kafka),
            "processed_per_s": _rate(during)}


def _rate(counts: list[Marker]) -> float | None:
    """Readings per second between the first and the last of ``counts``."""
    if len(counts) < 2 or counts[-1].t <= counts[0].t:
        return None
    return round((counts[-1].readings - counts[0].readings) / (counts[-1].t - counts[0].t), 1)
