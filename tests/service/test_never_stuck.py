"""Never stuck: poison messages, restarts with state, readiness, fatal failures, bounds.

Real ``vibewatch serve`` processes (and, where a fault must be injected, the pipeline run
in-process) on the real broker.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry

from service.config import load_settings
from service.kafka.outputs import (
    ORIGINAL_SHA256_HEADER,
    ORIGINAL_SIZE_HEADER,
    REASON_HEADER,
    TRUNCATED_HEADER,
)
from service.runtime import Runtime
from service.state import F32, F64
from service.testing import FakeStepModel
from tests.support import ServiceProcess, read_all, topic_env, wait_for

pytestmark = pytest.mark.integration

T0 = 1_795_608_000_000


def _reading(engine: str, tick: int, value: float = 0.08) -> tuple[bytes, bytes]:
    doc = {"engine_id": engine, "ts": T0 + 1000 * tick, "values": {"vibration": value}}
    return engine.encode(), json.dumps(doc).encode()


def _send(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                             max_request_size=4 << 20)
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush(timeout=60)
    producer.close(timeout=10)


def _metric(service: ServiceProcess, name: str, labels: str = "") -> float | None:
    _, text = service.get("/metrics")
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def _counts(service: ServiceProcess) -> dict[str, int]:
    status, page = service.get("/engines?limit=10000")
    assert status == 200, page
    return {e["engine_id"]: e["readings"] for e in page["engines"]}


def test_poison_messages_are_dead_letters_and_the_stream_moves_on(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Deep nesting (RecursionError in a JSON parser) and a value just under the readings'
    size limit whose dead letter would not fit the dead-letter topic's default limit: both
    become dead letters (the second cut, with its original size and hash) and every valid
    reading before and after them is processed."""
    prefix = f"poison-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    # an operator's dead-letter topic with the broker's default max.message.bytes
    admin.create_topics([NewTopic(f"{prefix}.readings", 3, 1),
                         NewTopic(f"{prefix}.dead-letter", 1, 1)])
    admin.close()
    engines = [f"e{i}" for i in range(5)]
    deep = b"[" * 5000 + b"]" * 5000
    big = b"x" * 1_048_400
    records = [_reading(e, t) for t in range(10) for e in engines]
    records += [(b"e0", deep), (b"e1", big)]
    records += [_reading(e, t) for t in range(10, 20) for e in engines]
    _send(kafka_bootstrap, f"{prefix}.readings", records)

    service = ServiceProcess(topic_env(kafka_bootstrap, prefix), tmp_path / "s.log").start()
    try:
        service.wait_ready()
        wait_for(lambda: _counts(service) == dict.fromkeys(engines, 20), 60,
                 "every valid reading processed")
        dead = wait_for(lambda: (lambda r: r if len(r) == 2 else None)(
            read_all(kafka_bootstrap, f"{prefix}.dead-letter")), 30, "two dead letters")
        by_key = {r.key: r for r in dead}
        headers = {k: dict(r.headers) for k, r in by_key.items()}
        assert headers[b"e0"][REASON_HEADER] == b"not_json"
        assert by_key[b"e0"].value == deep and TRUNCATED_HEADER not in headers[b"e0"]
        h = headers[b"e1"]
        assert h[REASON_HEADER] == b"not_json" and h[TRUNCATED_HEADER] == b"true"
        assert int(h[ORIGINAL_SIZE_HEADER]) == len(big)
        assert h[ORIGINAL_SHA256_HEADER] == hashlib.sha256(big).hexdigest().encode()
        cut = by_key[b"e1"].value
        assert 1_000_000 < len(cut) < len(big) and big.startswith(cut)
        assert wait_for(lambda: _metric(service, "vibewatch_dead_letters_total",
                                        '{reason="not_json"}') == 2, 10, "counted")
    finally:
        assert service.stop() == 0, service.log_tail()


class _RaisingModel(FakeStepModel):
    """Raises when it is stepped on the value 666.0 (a reading that makes processing
    raise, as a bug would)."""

    def step(self, x: F64, state: F32) -> tuple[F64, F32]:
        if np.any(x == 666.0):
            raise FloatingPointError("the model cannot take 666")
        return super().step(x, state)


def test_a_reading_that_makes_processing_raise_is_a_dead_letter(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The batch is rolled back to the last commit and processed again one message at a
    time: only the message at fault is lost (to the dead-letter topic), every other reading
    is applied and counted exactly once."""
    prefix = f"raise-{uuid.uuid4().hex[:8]}"
    env = topic_env(kafka_bootstrap, prefix)
    settings = load_settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "readings_topic": f"{prefix}.readings",
               "dead_letter_topic": f"{prefix}.dead-letter",
               "anomalies_topic": f"{prefix}.anomalies", "changelog_topic": f"{prefix}.changelog",
               "group_id": f"{prefix}.group", "instance_id": "in-process",
               "session_timeout_ms": 6000, "heartbeat_interval_ms": 2000},
        state={"window": 16, "checkpoint_dir": str(tmp_path / "ckpt")},
        api={"fleet_view": False},
    )
    assert env["VIBEWATCH_KAFKA__READINGS_TOPIC"] == settings.kafka.readings_topic
    runtime = Runtime(settings, CollectorRegistry(), model=_RaisingModel())
    engines = ["a", "b", "c"]
    records = [_reading(e, t, 0.1 + 0.001 * t) for t in range(30) for e in engines]
    records[3 * 12 + 1] = _reading("b", 12, 666.0)
    runtime.start()
    try:
        wait_for(lambda: runtime.ready, 60, "the in-process pipeline to be ready")
        _send(kafka_bootstrap, settings.kafka.readings_topic, records)

        def counts() -> dict[str, int] | None:
            with runtime.store.lock:
                got = {e: int(runtime.store.count[runtime.store.index[e]])
                       for e in engines if e in runtime.store.index}
            return got if got == {"a": 30, "b": 29, "c": 30} else None

        wait_for(counts, 60, "every reading but the poisoned one processed")
        dead = wait_for(lambda: read_all(kafka_bootstrap, settings.kafka.dead_letter_topic),
                        30, "the dead letter")
        assert [dict(r.headers)[REASON_HEADER] for r in dead] == [b"processing_failed"]
        assert json.loads(dead[0].value)["values"]["vibration"] == 666.0
        reg = runtime.registry

        def processed() -> float | None:
            return reg.get_sample_value("vibewatch_readings_total", {"outcome": "processed"})

        # counted once although the batch around it was processed twice
        wait_for(lambda: processed() == 89, 10, "89 readings counted")
        assert reg.get_sample_value("vibewatch_processing_failures_total") == 1
        assert runtime.ready
    finally:
        runtime.stop()


def test_a_restart_reads_the_checkpoint_and_is_ready_only_once_restored(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"restart-{uuid.uuid4().hex[:8]}"
    ckpt = tmp_path / "ckpt"
    env = topic_env(kafka_bootstrap, prefix, VIBEWATCH_STATE__CHECKPOINT_DIR=str(ckpt))
    engines = [f"engine-{i:04d}" for i in range(300)]
    _send(kafka_bootstrap, f"{prefix}.readings",
          [_reading(e, t) for t in range(20) for e in engines])
    first = ServiceProcess(env, tmp_path / "first.log").start()
    try:
        first.wait_ready()
        wait_for(lambda: _counts(first) == dict.fromkeys(engines, 20), 60, "all processed")
    finally:
        assert first.stop() == 0, first.log_tail()
    assert list(ckpt.iterdir()), "no checkpoint written at shutdown"

    second = ServiceProcess(env, tmp_path / "second.log").start()
    seen: list[tuple[int, str]] = []
    try:
        def ready() -> bool:
            assert second.proc is not None and second.proc.poll() is None, second.log_tail()
            try:
                code, body = second.get("/readyz")
            except OSError:
                return False
            seen.append((code, body["detail"]))
            if code == 200:  # ready means restored: every engine is there, with its state
                assert _counts(second) == dict.fromkeys(engines, 20), "ready before restored"
            return code == 200

        wait_for(ready, 60, "the restarted instance to be ready", interval_s=0.05)
        assert all(detail for _, detail in seen)
        assert seen[-1][1].startswith("ready; owns partitions [0, 1, 2]")
        log = (tmp_path / "second.log").read_text()
        assert "(checkpoint + tail)" in log, "the restart did not use the checkpoint"
        _send(kafka_bootstrap, f"{prefix}.readings", [_reading(e, 20) for e in engines])
        wait_for(lambda: _counts(second) == dict.fromkeys(engines, 21), 60, "new readings")
    finally:
        assert second.stop() == 0, second.log_tail()


def test_two_instances_with_one_id_stop_with_a_clear_error(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The same kafka.instance_id twice: each fences the other's transactions; after
    kafka.max_fatal_restarts fatal failures one exits 1, naming the setting."""
    prefix = f"twin-{uuid.uuid4().hex[:8]}"
    env = topic_env(kafka_bootstrap, prefix, VIBEWATCH_KAFKA__MAX_FATAL_RESTARTS="2")
    stop = threading.Event()

    def feed() -> None:
        tick = 0
        while not stop.is_set():
            _send(kafka_bootstrap, f"{prefix}.readings",
                  [_reading(f"e{i}", tick) for i in range(6)])
            tick += 1
            stop.wait(0.2)

    a = ServiceProcess(env, tmp_path / "a.log", "twin").start()
    b = ServiceProcess(env, tmp_path / "b.log", "twin")
    feeder = threading.Thread(target=feed, daemon=True)
    try:
        a.wait_ready()
        feeder.start()
        b.start()

        def exited() -> list[ServiceProcess] | None:
            gone = [s for s in (a, b) if s.proc is not None and s.proc.poll() is not None]
            return gone or None

        gone = wait_for(exited, 180, "one of the twins to give up")
        for s in gone:
            assert s.proc is not None and s.proc.returncode == 1, s.log_tail()
            text = s.log_path.read_text()
            assert "kafka.instance_id" in text and "giving up" in text, s.log_tail()
    finally:
        stop.set()
        feeder.join(10)
        for s in (a, b):
            if s.proc is not None:
                s.stop()


def test_engines_beyond_the_cap_are_dead_letters_and_idle_ones_are_evicted(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"bound-{uuid.uuid4().hex[:8]}"
    env = topic_env(kafka_bootstrap, prefix, VIBEWATCH_STATE__MAX_ENGINES="8",
                    VIBEWATCH_STATE__IDLE_EVICT_S="60")
    service = ServiceProcess(env, tmp_path / "s.log").start()
    try:
        service.wait_ready()
        _send(kafka_bootstrap, f"{prefix}.readings",
              [_reading(f"e{i:02d}", 0) for i in range(12)])
        wait_for(lambda: len(_counts(service)) == 8, 60, "eight engines tracked")
        dead = wait_for(lambda: (lambda r: r if len(r) == 4 else None)(
            read_all(kafka_bootstrap, f"{prefix}.dead-letter")), 30, "four dead letters")
        assert {dict(r.headers)[REASON_HEADER] for r in dead} == {b"engine_limit"}
        kept = set(_counts(service))
        # Readings 120 s of event time later for two of them: the other six are idle.
        live = sorted(kept)[:2]
        _send(kafka_bootstrap, f"{prefix}.readings", [_reading(e, 120) for e in live])
        wait_for(lambda: set(_counts(service)) == set(live), 90, "the idle engines evicted")

        def tombstoned() -> set[str] | None:
            changelog: dict[bytes, Any] = {}
            for r in read_all(kafka_bootstrap, f"{prefix}.changelog"):
                changelog[r.key] = r.value
            gone = {k.decode() for k, v in changelog.items() if v is None}
            return gone if gone == kept - set(live) else None

        wait_for(tombstoned, 30, "tombstones of the evicted engines")
        assert wait_for(lambda: _metric(service, "vibewatch_engines_evicted_total") == 6, 10,
                        "evictions counted")
        # a new engine fits again now
        _send(kafka_bootstrap, f"{prefix}.readings", [_reading("newcomer", 121)])
        wait_for(lambda: "newcomer" in _counts(service), 60, "the newcomer tracked")
    finally:
        assert service.stop() == 0, service.log_tail()


def test_kill_9_during_a_restore_changes_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    """SIGKILL while the changelog of thousands of engines is being restored (no
    checkpoint), restart, finish: state and events equal an uninterrupted run's."""
    from tests.service.test_exactly_once import _events, _final_state, _readings_topic

    run = uuid.uuid4().hex[:8]
    readings = _readings_topic(kafka_bootstrap, run)
    n, ticks = 10_000, 12
    engines = [f"engine-{i:05d}" for i in range(n)]
    batch = [
        (e.encode(), json.dumps({"engine_id": e, "readings": [
            {"ts": T0 + 1000 * t, "values": {"vibration": 0.05 + 1e-5 * (i % 97) * t}}
            for t in range(6 * half, 6 * half + 6)]}).encode())
        for half in range(2) for i, e in enumerate(engines)
    ]
    ckpt = tmp_path / "ckpt"
    env = topic_env(kafka_bootstrap, f"eos-{run}-test", VIBEWATCH_KAFKA__READINGS_TOPIC=readings,
                    VIBEWATCH_STATE__CHECKPOINT_DIR=str(ckpt))
    _send(kafka_bootstrap, readings, batch[:n])
    svc = ServiceProcess(env, tmp_path / "a.log", "kr").start()
    try:
        svc.wait_ready()
        wait_for(lambda: len(_counts(svc)) == n, 120, "the first half processed")
    finally:
        assert svc.stop() == 0, svc.log_tail()
    for f in ckpt.iterdir():  # no checkpoint: the restart reads the whole changelog
        f.unlink()
    _send(kafka_bootstrap, readings, batch[n:])
    svc = ServiceProcess(env, tmp_path / "b.log", "kr").start()

    def restoring() -> bool:
        try:
            code, body = svc.get("/readyz")
        except OSError:
            return False
        assert code != 200, "ready before a restore was seen: make the changelog larger"
        return "restoring" in body["detail"]

    wait_for(restoring, 60, "the restore to begin", interval_s=0.02)
    assert svc.stop(signal.SIGKILL) == -signal.SIGKILL
    svc = ServiceProcess(env, tmp_path / "c.log", "kr").start()
    try:
        svc.wait_ready(120)
        wait_for(lambda: (lambda c: len(c) == n and set(c.values()) == {ticks})(_counts(svc)),
                 180, "the second half processed")
    finally:
        assert svc.stop() == 0, svc.log_tail()
    ref_env = topic_env(kafka_bootstrap, f"eos-{run}-ref",
                        VIBEWATCH_KAFKA__READINGS_TOPIC=readings,
                        VIBEWATCH_STATE__CHECKPOINT_DIR=str(tmp_path / "ref-ckpt"))
    reference = ServiceProcess(ref_env, tmp_path / "ref.log", "ref").start()
    try:
        reference.wait_ready(120)
        wait_for(lambda: (lambda c: len(c) == n and set(c.values()) == {ticks})(
            _counts(reference)), 180, "the reference run")
    finally:
        assert reference.stop() == 0, reference.log_tail()
    want = _final_state(kafka_bootstrap, f"eos-{run}-ref.changelog")
    got = _final_state(kafka_bootstrap, f"eos-{run}-test.changelog")
    assert len(want) == n and sorted(got) == sorted(want)
    differ = [k for k in want if want[k] != got[k]]
    assert not differ, f"{len(differ)} engines differ from the uninterrupted run, e.g. {differ[:3]}"
    assert _events(kafka_bootstrap, f"eos-{run}-test.anomalies") == _events(
        kafka_bootstrap, f"eos-{run}-ref.anomalies")
