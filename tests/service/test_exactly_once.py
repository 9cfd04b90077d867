"""Exactly-once through crashes: kill -9 mid-stream, restart, and end where a clean run ends.

One readings topic is consumed twice by separate consumer groups with their own changelog and
anomalies topics: a reference instance that runs once to the end, and an instance that is
SIGKILLed at random points while the readings are still being produced and restarted each
time. The final committed per-engine state (changelog) must be bitwise equal, except the
wall-clock ``last_seen`` field, and the committed anomaly events identical.
"""

from __future__ import annotations

import random
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from service.config import DEFAULT_ARTIFACT, ScoringSettings
from service.model import load_streaming_model
from service.scoring import EngineScoring
from service.simulator import Fault, Fleet, messages
from service.state import EngineStore
from tests.support import ServiceProcess, latest_by_key, read_all, topic_env, wait_for

pytestmark = pytest.mark.integration



@dataclass(frozen=True)
class Scale:
    engines: int = 16
    ticks: int = 500
    rate: float = 800.0  # messages/s while the instance under test runs
    kills: int = 3


SMALL = Scale()
#: make test-slow: ~2 minutes of readings, 200 engines, 8 kills
SOAK = Scale(engines=200, ticks=600, rate=1000.0, kills=8)


def _produce(bootstrap: str, topic: str, scale: Scale, done: threading.Event) -> None:
    fleet = Fleet(scale.engines, seed=7, faults=[Fault("engine-0003", "wear", 250),
                                           Fault("engine-0011", "spike", 400)])
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    began = time.monotonic()
    for n, (key, value) in enumerate(
        messages(fleet, scale.ticks, start_ms=1_795_608_000_000, interval_ms=1000), start=1
    ):
        producer.send(topic, key=key.encode(), value=value)
        ahead = n / scale.rate - (time.monotonic() - began)
        if ahead > 0.002:
            time.sleep(ahead)
    producer.flush(timeout=120)
    producer.close(timeout=10)
    done.set()


class Producer(threading.Thread):
    """Publishes the scale's readings at its rate in the background; ``finish`` waits."""

    def __init__(self, bootstrap: str, topic: str, scale: Scale) -> None:
        super().__init__(daemon=True)
        self.args = (bootstrap, topic, scale)
        self.done = threading.Event()

    def run(self) -> None:
        _produce(*self.args, self.done)

    def finish(self, timeout_s: float) -> None:
        self.join(timeout_s)
        assert self.done.is_set(), "producing the readings did not finish"


def _store() -> EngineStore:
    model = load_streaming_model(DEFAULT_ARTIFACT)
    return EngineStore(window=256, channels=1, model_state_size=model.state_size,
                       score_state_size=EngineScoring(ScoringSettings(), 1).state_size)


def _final_state(bootstrap: str, topic: str) -> dict[bytes, dict[str, Any]]:
    store = _store()
    out = {}
    for key, value in latest_by_key(read_all(bootstrap, topic)).items():
        fields = store.decode_row(value)
        fields.pop("last_seen")
        out[key] = {f: v.tobytes() for f, v in fields.items()}
    return out


def _events(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    return sorted((r.key, r.value) for r in read_all(bootstrap, topic))


def _all_done(service: ServiceProcess, scale: Scale, *, local: bool = False) -> bool:
    """Every engine has all its readings (with ``local``: in this instance's own state,
    not just in its fleet view of other instances' partitions)."""
    status, page = service.get("/engines?limit=10000")
    return status == 200 and page["total"] == scale.engines and all(
        e["readings"] == scale.ticks and (not local or e["source"] == "local")
        for e in page["engines"]
    )


def _readings_topic(bootstrap: str, run: str) -> str:
    readings = f"eos-{run}.readings"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(readings, 3, 1)])
    admin.close()
    return readings


def _assert_equals_reference(
    bootstrap: str, readings: str, run: str, tmp: Path, scale: Scale = SMALL
) -> None:
    """Run a reference instance over the whole topic once; compare state and events."""
    ref_env = topic_env(bootstrap, f"eos-{run}-ref", VIBEWATCH_KAFKA__READINGS_TOPIC=readings)
    reference = ServiceProcess(ref_env, tmp / "ref.log", "ref").start()
    try:
        reference.wait_ready()
        wait_for(lambda: _all_done(reference, scale), 300, "the reference instance to finish")
    finally:
        assert reference.stop() == 0, reference.log_tail()

    want = _final_state(bootstrap, f"eos-{run}-ref.changelog")
    got = _final_state(bootstrap, f"eos-{run}-test.changelog")
    assert len(want) == scale.engines
    assert sorted(got) == sorted(want)
    for key in want:
        assert np.frombuffer(want[key]["count"], np.int64)[0] == scale.ticks
        diff = [f for f in want[key] if want[key][f] != got[key][f]]
        assert not diff, f"{key!r}: fields {diff} differ from the uninterrupted run"

    ref_events = _events(bootstrap, f"eos-{run}-ref.anomalies")
    assert len(ref_events) > scale.engines  # warm-up ends for all, plus the injected faults
    assert _events(bootstrap, f"eos-{run}-test.anomalies") == ref_events


def _kill_and_restart(bootstrap: str, tmp_path: Path, scale: Scale) -> None:
    run = uuid.uuid4().hex[:8]
    readings = _readings_topic(bootstrap, run)
    rng = random.Random(run)
    env = topic_env(bootstrap, f"eos-{run}-test", VIBEWATCH_KAFKA__READINGS_TOPIC=readings)
    producer = Producer(bootstrap, readings, scale)
    crashing = ServiceProcess(env, tmp_path / "crash.log", "crash").start()
    crashing.wait_ready()
    producer.start()
    kills = 0
    try:
        while kills < scale.kills:
            time.sleep(rng.uniform(0.5, 2.0))
            assert crashing.stop(signal.SIGKILL) == -signal.SIGKILL
            kills += 1
            crashing = ServiceProcess(env, tmp_path / "crash.log", "crash").start()
            crashing.wait_ready()
        producer.finish(600)
        wait_for(lambda: _all_done(crashing, scale), 300, "the crashed instance to catch up")
    finally:
        assert crashing.stop() == 0, crashing.log_tail()
    _assert_equals_reference(bootstrap, readings, run, tmp_path, scale)


def test_kill_9_restarts_equal_an_uninterrupted_run(kafka_bootstrap: str,
                                                    tmp_path: Path) -> None:
    _kill_and_restart(kafka_bootstrap, tmp_path, SMALL)


@pytest.mark.slow
def test_soak_many_kills_many_engines(kafka_bootstrap: str, tmp_path: Path) -> None:
    _kill_and_restart(kafka_bootstrap, tmp_path, SOAK)


def test_rebalance_one_two_three_one_equals_an_uninterrupted_run(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    readings = _readings_topic(kafka_bootstrap, run)
    env = topic_env(kafka_bootstrap, f"eos-{run}-test", VIBEWATCH_KAFKA__READINGS_TOPIC=readings)
    producer = Producer(kafka_bootstrap, readings, SMALL)
    first = ServiceProcess(env, tmp_path / "a.log", "a").start()
    others: list[ServiceProcess] = []
    try:
        first.wait_ready()
        producer.start()
        for name in ("b", "c"):  # 1 -> 2 -> 3 instances while readings arrive
            time.sleep(1.5)
            others.append(ServiceProcess(env, tmp_path / f"{name}.log", name).start())
            others[-1].wait_ready()
        time.sleep(1.5)
        for other in others:  # 3 -> 1
            assert other.stop() == 0, other.log_tail()
        producer.finish(120)
        # It owns everything again once the group has rebalanced after the last leave;
        # until then its fleet view may already show the others' final rows.
        wait_for(lambda: _all_done(first, SMALL, local=True), 120,
                 "the last instance to own and finish every engine")
    finally:
        for p in [first, *others]:
            assert p.stop() == 0, p.log_tail()
    _assert_equals_reference(kafka_bootstrap, readings, run, tmp_path)


# Slow (``make test-slow``), not in ``make test``: about one run in four the broker is
# restarted while a transaction that carries the group's offsets is being committed, and
# after the restart those offsets stay pending in __consumer_offsets (no transaction marker
# resolves them): every offset fetch fails with UNSTABLE_OFFSET_COMMIT and the instance
# never becomes ready. A known bug, not fixed (docs/operations.md, "Known issues"); the
# zombie-producer half of it is (``compat.force_close``).
@pytest.mark.slow
def test_broker_restart_mid_stream_loses_and_duplicates_nothing(
    local_kafka_module: ModuleType, tmp_path: Path
) -> None:
    broker = local_kafka_module.LocalKafka.on_free_ports(tmp_path / "broker")
    broker.start()
    try:
        bootstrap = broker.bootstrap
        run = uuid.uuid4().hex[:8]
        readings = _readings_topic(bootstrap, run)
        env = topic_env(bootstrap, f"eos-{run}-test", VIBEWATCH_KAFKA__READINGS_TOPIC=readings)
        producer = Producer(bootstrap, readings, SMALL)
        service = ServiceProcess(env, tmp_path / "svc.log", "svc").start()
        try:
            service.wait_ready()
            producer.start()
            time.sleep(2.0)
            broker.stop()
            wait_for(lambda: service.get("/readyz")[0] == 503, 30, "readiness to turn false")
            time.sleep(2.0)
            broker.start()
            service.wait_ready(120)
            producer.finish(180)
            wait_for(lambda: _all_done(service, SMALL), 120, "the service to catch up")
        finally:
            assert service.stop() == 0, service.log_tail()
        _assert_equals_reference(bootstrap, readings, run, tmp_path)
    finally:
        broker.stop()
