"""A multichannel engine through the whole service on the real broker: the 8-channel IMS
model, joint scoring, and the channels named in the anomaly event, the engine view, the
log and the metrics."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaProducer

from tests.support import ServiceProcess, read_all, topic_env, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "models" / "artifacts" / "ims1-8ch"
T0 = 1_795_608_000_000
TICKS, FAULT_AT = 260, 200
#: The fault: bearing 3's two accelerometers get rough (their own vibration grows several
#: times, in training standard deviations), the other six channels carry on as before. A
#: next-value model follows a step within a reading or two; roughness it cannot predict.
FAULTY = ("Bearing 3 C1", "Bearing 3 C2")


def _readings(rng: np.random.Generator, engine_id: str, fault: bool) -> list[dict[str, Any]]:
    manifest = json.loads((ARTIFACT / "manifest.json").read_text())
    channels = manifest["channels"]
    mean = np.array(manifest["scaler"]["mean"])
    scale = np.array(manifest["scaler"]["scale"])
    # one shared machine vibration (all channels move together) plus sensor noise
    common = rng.normal(scale=0.5, size=(TICKS, 1))
    z = common + rng.normal(scale=0.3, size=(TICKS, len(channels)))
    if fault:
        for name in FAULTY:
            z[FAULT_AT:, channels.index(name)] += rng.normal(scale=2.0, size=TICKS - FAULT_AT)
    x = mean + z * scale
    return [{"engine_id": engine_id, "ts": T0 + 1000 * k,
             "values": dict(zip(channels, map(float, row), strict=True))}
            for k, row in enumerate(x)]


def test_a_multichannel_fault_is_alarmed_once_and_attributed(kafka_bootstrap: str,
                                                             tmp_path: Path) -> None:
    prefix = f"mc-{uuid.uuid4().hex[:8]}"
    env = topic_env(kafka_bootstrap, prefix,
                    VIBEWATCH_MODEL__ARTIFACT_DIR=str(ARTIFACT),
                    VIBEWATCH_SCORING__CHANNEL_REDUCE="joint",
                    VIBEWATCH_SCORING__COMMISSION_READINGS="100")
    service = ServiceProcess(env, tmp_path / "serve.log").start()
    try:
        service.wait_ready()
        rng = np.random.default_rng(7)
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        streams = {e: _readings(rng, e, e == "pump-1") for e in ("pump-1", "pump-2")}
        for k in range(TICKS):
            for engine_id, stream in streams.items():
                producer.send(f"{prefix}.readings", key=engine_id.encode(),
                              value=json.dumps(stream[k]).encode())
        producer.flush()
        producer.close()

        def done() -> dict[str, Any] | None:
            # committed: the anomalies topic (read_committed) and the log line have them
            code, doc = service.get("/engines/pump-1")
            ok = code == 200 and doc["readings"] == TICKS and doc["committed"]
            other = service.get("/engines/pump-2")[1]
            return doc if ok and other["readings"] == TICKS and other["committed"] else None

        one = wait_for(done, 120, "both engines' readings")
        assert one["status"] == "alarm"
        top = list(one["contributions"])[:2]
        assert set(top) == set(FAULTY), one["contributions"]
        assert sum(one["contributions"][c] for c in FAULTY) > 0.5
        assert service.get("/engines/pump-2")[1]["status"] == "normal"

        events = [json.loads(r.value) for r in read_all(kafka_bootstrap, f"{prefix}.anomalies")]
        alarms = [e for e in events if e["status"] == "alarm"]
        assert [e["engine_id"] for e in alarms] == ["pump-1"], events
        raised_at = (alarms[0]["ts_ms"] - T0) // 1000
        assert FAULT_AT <= raised_at < FAULT_AT + 10
        # at the alarm, nine readings into the fault, a rough bearing-3 channel leads; by the
        # end of the stream (the view above, 60 readings) both are on top
        assert next(iter(alarms[0]["contributions"])) in FAULTY, alarms[0]

        # the status-change line is logged once its transaction is committed: poll for it
        wait_for(lambda: re.search(r"engine pump-1: \w+ -> alarm .*driven by Bearing 3 C\d \d+%",
                                   (tmp_path / "serve.log").read_text()),
                 30, "the alarm's log line naming bearing 3")
        code, metrics = service.get("/metrics")
        assert code == 200
        shares = re.findall(r'^vibewatch_engine_channel_contribution\{channel="(Bearing 3 C\d)",'
                            r'engine_id="pump-1"\} (\S+)$', metrics, re.M)
        assert {c for c, _ in shares} == set(FAULTY)
    finally:
        assert service.stop() == 0, service.log_tail()
