"""Engine classes on the real broker: a mixed fleet of bearings (1 channel) and pumps (8
channels) in one consumer group of two ``vibewatch serve`` processes, a model reload through
one instance that both apply, and a restart whose changelog rows another model wrote."""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaProducer

from tests.service.model.helpers import ARTIFACTS
from tests.support import ServiceProcess, read_all, topic_env, wait_for

pytestmark = pytest.mark.integration

TOKEN = "classes-test-token"
SKAB = ARTIFACTS / "skab-pump"
IMS8 = ARTIFACTS / "ims1-8ch"
DEFAULT = ARTIFACTS / "default"
T0 = 1_795_608_000_000
TICKS = 40


def _channels(artifact: Path) -> list[str]:
    return list(json.loads((artifact / "manifest.json").read_text())["channels"])


def _version(artifact: Path) -> str:
    return str(json.loads((artifact / "manifest.json").read_text())["version"])


def _copy_as(artifact: Path, to: Path, version: str) -> Path:
    """The artifact under another version: the same weights, another model for the rows."""
    shutil.copytree(artifact, to)
    manifest = json.loads((to / "manifest.json").read_text())
    manifest["version"] = version
    (to / "manifest.json").write_text(json.dumps(manifest))
    return to


def _classes_env(prefix: str, bootstrap: str, pump: Path, default: Path = DEFAULT,
                 **extra: str) -> dict[str, str]:
    classes = [{"name": "pump", "artifact_dir": str(pump), "id_pattern": "pump-.*"}]
    return topic_env(bootstrap, prefix, VIBEWATCH_API__TOKEN=TOKEN,
                     VIBEWATCH_MODEL__ARTIFACT_DIR=str(default),
                     VIBEWATCH_MODEL__CLASSES=json.dumps(classes), **extra)


def _send(bootstrap: str, topic: str, docs: list[dict[str, Any]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    for doc in docs:
        producer.send(topic, key=doc["engine_id"].encode(), value=json.dumps(doc).encode())
    producer.flush(timeout=60)
    producer.close(timeout=10)


def _batch(engine_id: str, channels: list[str], ticks: range, seed: int,
           **extra: Any) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    readings = [{"ts": T0 + 1000 * t,
                 "values": {c: round(float(1.0 + 0.01 * rng.normal()), 6) for c in channels}}
                for t in ticks]
    return {"engine_id": engine_id, "readings": readings, **extra}


def _engines(service: ServiceProcess) -> dict[str, dict[str, Any]]:
    code, page = service.get("/engines?limit=1000")
    assert code == 200, page
    return {e["engine_id"]: e for e in page["engines"]}


def _metric(service: ServiceProcess, pattern: str) -> float | None:
    _, text = service.get("/metrics")
    m = re.search(pattern, text, re.M)
    return None if m is None else float(m.group(1))


def _reload(service: ServiceProcess, artifact: Path, klass: str) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"{service.base}/model/reload", method="POST",
        data=json.dumps({"artifact_dir": str(artifact), "class": klass}).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _pump_model(service: ServiceProcess) -> dict[str, Any]:
    classes: list[dict[str, Any]] = service.get("/model")[1]["classes"]
    return next(c for c in classes if c["class"] == "pump")


def test_a_mixed_fleet_in_one_group_and_a_reload_that_reaches_both(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"classes-{uuid.uuid4().hex[:8]}"
    readings = f"{prefix}.readings"
    env = _classes_env(prefix, kafka_bootstrap, SKAB)
    pump_channels = _channels(SKAB)
    a = ServiceProcess(env, tmp_path / "a.log", "a").start()
    b = ServiceProcess(env, tmp_path / "b.log", "b").start()
    try:
        a.wait_ready()
        b.wait_ready()
        fleet = (
            [_batch(f"bearing-{i}", ["vibration"], range(TICKS), i) for i in range(8)]
            + [_batch(f"pump-{i}", pump_channels, range(TICKS), 100 + i) for i in range(6)]
            # a pump whose id matches no pattern: the message says so
            + [_batch(f"unit-{i}", pump_channels, range(TICKS), 200 + i, **{"class": "pump"})
               for i in range(2)]
        )
        bad = [
            _batch("valve-0", ["vibration"], range(1), 0, **{"class": "valve"}),
            # after pump-0's readings in its partition: it is a pump by now
            _batch("pump-0", ["vibration"], range(TICKS, TICKS + 1), 0,
                   **{"class": "default"}),
        ]
        _send(kafka_bootstrap, readings, fleet + bad)

        def settled(ticks: int) -> bool:
            for s in (a, b):
                engines = _engines(s)
                if len(engines) != len(fleet) or any(
                        e["readings"] != ticks for e in engines.values()):
                    return False
            return True

        wait_for(lambda: settled(TICKS), 120, "both instances to list every engine")
        seen_a, seen_b = _engines(a), _engines(b)
        local_a = {k for k, e in seen_a.items() if e["source"] == "local"}
        local_b = {k for k, e in seen_b.items() if e["source"] == "local"}
        assert local_a and local_b and local_a.isdisjoint(local_b), "one group, shared"
        for view in (seen_a, seen_b):
            for engine_id, e in view.items():
                pump = not engine_id.startswith("bearing-")
                assert e["class"] == ("pump" if pump else "default"), engine_id
                assert len(e["values"]) == (8 if pump else 1)
                assert e["model_version"] == _version(SKAB if pump else DEFAULT)
        reasons = sorted(
            dict(r.headers)["vibewatch.reason"].decode()
            for r in read_all(kafka_bootstrap, f"{prefix}.dead-letter"))
        assert reasons == ["class_mismatch", "unknown_class"]

        # A reload through a reaches b: both run the new pump model, the bearings' is kept.
        reloaded = _copy_as(SKAB, tmp_path / "pump-v2", "skab-pump-reloaded")
        code, body = _reload(a, reloaded, "pump")
        assert code == 200, body
        assert _pump_model(a)["version"] == "skab-pump-reloaded"
        wait_for(lambda: _pump_model(b)["version"] == "skab-pump-reloaded", 30,
                 "b to apply the reload")
        for s in (a, b):
            model = _pump_model(s)
            assert model["artifact_dir"] == str(reloaded) and model["reload_error"] is None
            assert _metric(s, r'^vibewatch_model_info\{.*class="pump".*'
                              r'version="skab-pump-reloaded"\} (\S+)$') == 1.0
            assert {c["class"]: c for c in s.get("/model")[1]["classes"]}["default"][
                "version"] == _version(DEFAULT)
        _send(kafka_bootstrap, readings,
              [_batch(e, ["vibration"] if e.startswith("bearing-") else pump_channels,
                      range(TICKS, TICKS + 2), 7) for e in seen_a])
        wait_for(lambda: settled(TICKS + 2), 60, "the readings after the reload")
        for s in (a, b):
            for engine_id, e in _engines(s).items():
                if e["class"] == "pump":
                    assert e["model_version"] == "skab-pump-reloaded", engine_id
    finally:
        stopped = [s.stop() for s in (a, b) if s.proc is not None]
    assert stopped == [0, 0], a.log_tail() + b.log_tail()


def test_rows_of_another_model_are_recommissioned_or_rewarmed_on_restore(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"classes-{uuid.uuid4().hex[:8]}"
    readings = f"{prefix}.readings"
    log = tmp_path / "svc.log"
    svc = ServiceProcess(_classes_env(prefix, kafka_bootstrap, SKAB), log, "r").start()
    try:
        svc.wait_ready()
        _send(kafka_bootstrap, readings,
              [_batch(f"pump-{i}", _channels(SKAB), range(TICKS), i) for i in range(3)]
              + [_batch(f"bearing-{i}", ["vibration"], range(TICKS), 9 + i) for i in range(2)])
        wait_for(lambda: len(_engines(svc)) == 5 and all(
            e["readings"] == TICKS for e in _engines(svc).values()), 90, "every engine")
    finally:
        assert svc.stop() == 0, svc.log_tail()
    # The pump class now has a model of other channels and state (another layout); the
    # default class another version of the same layout.
    bearing_v2 = _copy_as(DEFAULT, tmp_path / "bearing-v2", "bearing-v2")
    env = _classes_env(prefix, kafka_bootstrap, IMS8, default=bearing_v2)
    svc = ServiceProcess(env, log, "r").start()
    try:
        svc.wait_ready()
        assert _metric(svc, r'^vibewatch_engines_recommissioned_total\{class="pump"\} (\S+)$') \
            == 3.0
        assert "re-commissioned 3 engines of class pump" in log.read_text()
        assert "their recurrent state was re-warmed with model bearing-v2" in log.read_text()
        engines = _engines(svc)
        assert sorted(engines) == ["bearing-0", "bearing-1"]  # pumps: nothing to show yet
        for e in engines.values():  # re-warmed: history and scoring kept
            assert e["readings"] == TICKS and e["model_version"] == "bearing-v2"
        assert _pump_model(svc)["engines"] == 3  # still pumps, started afresh
        _send(kafka_bootstrap, readings,
              [_batch("pump-0", _channels(IMS8), range(TICKS, TICKS + 1), 5)])
        pump = wait_for(lambda: _engines(svc).get("pump-0"), 30, "pump-0's next reading")
        assert pump["class"] == "pump" and pump["readings"] == 1
        assert pump["status"] == "warmup" and pump["model_version"] == _version(IMS8)
    finally:
        assert svc.stop() == 0, svc.log_tail()
