"""make test-slow: 100,000 engines through a graceful restart and a kill -9.

Correctness at fleet scale, not timing (the restart bench scenario times it): after each
restart every engine is back with every reading it had, the instance is ready only then,
and it processes new readings. The kill -9 comes after new readings were committed since the
last checkpoint, so the restart reads the checkpoint plus a changelog tail.
"""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

from tests.support import ServiceProcess, topic_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(3600)]

ENGINES = 100_000
PAGE = 10_000  # the API's largest page
T0 = 1_795_608_000_000


def _send(bootstrap: str, topic: str, ticks: range) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 20,
                             compression_type="lz4")
    for i in range(ENGINES):
        e = f"engine-{i:06d}"
        readings = [{"ts": T0 + 1000 * t, "values": {"vibration": 0.05 + 1e-6 * (i % 1000)}}
                    for t in ticks]
        producer.send(topic, key=e.encode(),
                      value=json.dumps({"engine_id": e, "readings": readings}).encode())
    producer.flush(timeout=600)
    producer.close(timeout=30)


def _readings(service: ServiceProcess) -> dict[int, int] | None:
    """How many engines have each reading count (None while the API does not answer)."""
    counts: dict[int, int] = {}
    for offset in range(0, ENGINES, PAGE):
        try:
            code, page = service.get(f"/engines?limit={PAGE}&offset={offset}&sort=engine_id")
        except OSError:  # a slow answer while busy
            return None
        if code != 200:
            return None
        for e in page["engines"]:
            counts[e["readings"]] = counts.get(e["readings"], 0) + 1
    return counts


def _ready_and_whole(service: ServiceProcess, ticks: int) -> bool:
    assert service.proc is not None and service.proc.poll() is None, service.log_tail()
    try:
        code, _ = service.get("/readyz")
    except OSError:
        return False
    if code != 200:
        return False
    counts = wait_for(lambda: _readings(service), 120, "the engine list")
    assert counts == {ticks: ENGINES}, f"ready before every engine was restored: {counts}"
    return True


def test_a_hundred_thousand_engines_survive_restarts(kafka_bootstrap: str,
                                                     tmp_path: Path) -> None:
    prefix = f"scale-{uuid.uuid4().hex[:8]}"
    env = topic_env(kafka_bootstrap, prefix, VIBEWATCH_STATE__CHECKPOINT_DIR=str(tmp_path / "c"),
                    VIBEWATCH_STATE__MAX_ENGINES=str(2 * ENGINES))
    readings = f"{prefix}.readings"
    svc = ServiceProcess(env, tmp_path / "a.log", "scale").start()
    try:
        svc.wait_ready(120)
        _send(kafka_bootstrap, readings, range(0, 5))
        wait_for(lambda: _readings(svc) == {5: ENGINES}, 900, "100,000 engines processed",
                 interval_s=2.0)
    finally:
        assert svc.stop(timeout_s=300) == 0, svc.log_tail()

    svc = ServiceProcess(env, tmp_path / "b.log", "scale").start()
    try:
        wait_for(lambda: _ready_and_whole(svc, 5), 600, "ready after a graceful restart",
                 interval_s=0.5)
        assert "(checkpoint + tail)" in (tmp_path / "b.log").read_text()
        _send(kafka_bootstrap, readings, range(5, 8))
        wait_for(lambda: _readings(svc) == {8: ENGINES}, 900, "new readings processed",
                 interval_s=2.0)
    finally:
        assert svc.stop(signal.SIGKILL) == -signal.SIGKILL

    svc = ServiceProcess(env, tmp_path / "c.log", "scale").start()
    try:
        wait_for(lambda: _ready_and_whole(svc, 8), 900, "ready after kill -9", interval_s=0.5)
        _send(kafka_bootstrap, readings, range(8, 9))
        wait_for(lambda: _readings(svc) == {9: ENGINES}, 900, "processing after kill -9",
                 interval_s=2.0)
    finally:
        assert svc.stop(timeout_s=300) == 0, svc.log_tail()
