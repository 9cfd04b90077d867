"""Engine classes through the API and the runtime, without Kafka: a bearing (1 channel)
and a pump (8 channels) class side by side."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.api import create_app
from service.api.schemas import EngineOut
from service.config import load_settings
from service.domain import Reading
from service.runtime import Runtime
from service.testing import FakeStepModel
from tests.service.api.fed_runtime import T0, TOKEN
from tests.service.model.helpers import ARTIFACTS

SKAB = ARTIFACTS / "skab-pump"
PUMP_CHANNELS = tuple(json.loads((SKAB / "manifest.json").read_text())["channels"])


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    pump_dir = tmp_path / "pump"
    pump_dir.mkdir()
    settings = load_settings(
        api={"token": TOKEN}, model={"artifact_dir": tmp_path, "classes": [
            {"name": "pump", "artifact_dir": pump_dir, "id_pattern": "pump-.*"}]},
        scoring={"commission_readings": 20, "commission_s": 0}, state={"window": 16},
    )
    rt = Runtime(settings, models={
        "default": FakeStepModel(), "pump": FakeStepModel(PUMP_CHANNELS, version="pump-1"),
    })
    rng = np.random.default_rng(0)
    for k in range(30):
        rt.processor.process(
            [Reading(f"b-{i}", T0 + 1000 * k, {"vibration": 1.0 + rng.normal(0, 0.01)})
             for i in range(3)], [0] * 3)
        rt.classes.by_name["pump"].processor.process(
            [Reading(f"pump-{i}", T0 + 1000 * k,
                     {c: 2.0 + rng.normal(0, 0.01) for c in PUMP_CHANNELS}) for i in range(2)],
            [1] * 2)
    return rt


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(lambda: runtime, start_pipeline=False)) as c:
        yield c


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def test_engine_views_say_their_class_and_its_model(client: TestClient,
                                                    runtime: Runtime) -> None:
    runtime.engine_index.refresh()
    engines = client.get("/engines", params={"limit": 10}).json()["engines"]
    by_id = {e["engine_id"]: e for e in engines}
    assert len(by_id) == 5
    for e in engines:
        EngineOut.model_validate(e)
    assert by_id["pump-1"]["class"] == "pump" and by_id["pump-1"]["model_version"] == "pump-1"
    assert set(by_id["pump-1"]["values"]) == set(PUMP_CHANNELS)
    assert by_id["b-0"]["class"] == "default" and set(by_id["b-0"]["values"]) == {"vibration"}
    one = client.get("/engines/pump-0").json()
    assert one["class"] == "pump" and len(one["predicted"]) == 8
    # contributions come from the pump class's own scoring, named by its channels
    assert set(one["contributions"]) <= set(PUMP_CHANNELS) and one["contributions"]
    assert 0.92 < sum(one["contributions"].values()) <= 1.0001  # shares < 0.01 left out
    assert client.get("/engines/b-0").json()["contributions"] == {"vibration": 1.0}
    history = client.get("/engines/pump-0/history", params={"limit": 2}).json()
    assert set(history["points"][0]["values"]) == set(PUMP_CHANNELS)


def test_the_model_lists_every_class(client: TestClient) -> None:
    m = client.get("/model").json()
    assert m["version"] == "fake-1"  # the default class's, as before classes
    classes = {c["class"]: c for c in m["classes"]}
    assert classes["default"]["default"] and not classes["pump"]["default"]
    assert classes["pump"]["channels"] == list(PUMP_CHANNELS)
    assert classes["pump"]["id_pattern"] == "pump-.*" and classes["pump"]["engines"] == 2
    assert classes["pump"]["reload_error"] is None
    text = client.get("/metrics").text
    assert 'vibewatch_model_info{artifact=' in text
    assert text.count("vibewatch_model_info{") == 2 and 'class="pump"' in text


def test_a_reload_switches_one_class_and_rewarms_its_engines(client: TestClient,
                                                             runtime: Runtime) -> None:
    pump = runtime.classes.by_name["pump"]
    before = pump.store.encode_row(pump.store.index["pump-0"])
    bad = client.post("/model/reload", json={"artifact_dir": str(SKAB), "class": "valve"},
                      headers=_auth())
    assert bad.status_code == 404 and "valve" in bad.json()["detail"]
    wrong = client.post("/model/reload", json={"artifact_dir": str(SKAB)}, headers=_auth())
    assert wrong.status_code == 422 and "channels" in wrong.json()["detail"]  # default: 1 ch
    resp = client.post("/model/reload", json={"artifact_dir": str(SKAB), "class": "pump"},
                       headers=_auth())
    assert resp.status_code == 200, resp.text
    classes = {c["class"]: c for c in resp.json()["classes"]}
    assert classes["pump"]["version"] != "pump-1" and classes["default"]["version"] == "fake-1"
    slot = pump.store.index["pump-0"]
    after = pump.store.encode_row(slot)
    assert after != before and after.startswith(pump.store.row_header())
    assert pump.store.model_state.shape[1] == pump.model.state_size  # resized, re-warmed
    assert np.abs(pump.store.model_state[slot]).sum() > 0


def test_a_reload_this_instance_cannot_load_keeps_the_model(client: TestClient,
                                                           runtime: Runtime,
                                                           tmp_path: Path) -> None:
    runtime._apply_reload("pump", tmp_path / "missing")
    pump = client.get("/model").json()["classes"][1]
    assert pump["version"] == "pump-1" and "missing" in pump["reload_error"]
    assert 'vibewatch_model_reload_failures_total{class="pump"} 1.0' in \
        client.get("/metrics").text
    runtime._apply_reload("pump", SKAB)  # a later good one clears it
    pump = client.get("/model").json()["classes"][1]
    assert pump["reload_error"] is None and pump["version"] != "pump-1"
