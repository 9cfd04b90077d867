"""Re-baselining an engine through the API is exactly-once across crashes.

The command goes from ``POST /engines/{id}/baseline`` to the readings topic and is applied
by the engine's owner in order with its readings, in the same transaction as its offset;
an instance killed with SIGKILL around it and restarted ends where an uninterrupted run
that read the same topic ends: state bitwise equal, the same anomaly events, one of them
the re-baseline.
"""

from __future__ import annotations

import json
import random
import signal
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.service.test_exactly_once import (
    SMALL,
    Producer,
    _assert_equals_reference,
    _events,
    _readings_topic,
)
from tests.support import ServiceProcess, topic_env, wait_for

pytestmark = pytest.mark.integration

TOKEN = "baseline-test-token"


def _post_baseline(service: ServiceProcess, engine_id: str) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(f"{service.base}/engines/{engine_id}/baseline", method="POST",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_a_baseline_is_applied_once_through_crashes(kafka_bootstrap: str,
                                                    tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    readings = _readings_topic(kafka_bootstrap, run)
    env = topic_env(kafka_bootstrap, f"eos-{run}-test", VIBEWATCH_KAFKA__READINGS_TOPIC=readings,
                    VIBEWATCH_API__TOKEN=TOKEN,
                    VIBEWATCH_STATE__CHECKPOINT_DIR=str(tmp_path / "ckpt"))
    rng = random.Random(run)
    producer = Producer(kafka_bootstrap, readings, SMALL)
    svc = ServiceProcess(env, tmp_path / "crash.log", "crash").start()
    svc.wait_ready()
    producer.start()
    try:
        wait_for(lambda: svc.get("/engines/engine-0003")[0] == 200, 60, "engine-0003 seen")
        assert _post_baseline(svc, "no-such-engine")[0] == 404
        code, body = _post_baseline(svc, "engine-0003")
        assert code == 202, body
        assert body["engine_id"] == "engine-0003"
        for _ in range(2):  # crashes right after the request and later
            assert svc.stop(signal.SIGKILL) == -signal.SIGKILL
            svc = ServiceProcess(env, tmp_path / "crash.log", "crash").start()
            svc.wait_ready()
            producer.join(rng.uniform(0.3, 1.5))
        producer.finish(600)

        def done() -> bool:
            code, page = svc.get("/engines?limit=1000")
            return code == 200 and page["total"] == SMALL.engines and all(
                e["readings"] == SMALL.ticks for e in page["engines"])

        wait_for(done, 300, "the crashed instance to catch up")
    finally:
        assert svc.stop() == 0, svc.log_tail()
    events = [json.loads(v) for _, v in _events(kafka_bootstrap, f"eos-{run}-test.anomalies")]
    baselines = [e for e in events if e["cause"] == "baseline"]
    assert len(baselines) == 1 and baselines[0]["engine_id"] == "engine-0003"
    assert baselines[0]["status"] == "warmup"
    # the reference reads the same topic, command included
    _assert_equals_reference(kafka_bootstrap, readings, run, tmp_path)
