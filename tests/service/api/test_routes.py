"""Every endpoint, including the error cases, on a runtime fed without Kafka."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api import create_app
from service.runtime import Runtime
from tests.service.api.fed_runtime import TOKEN, fed_runtime


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    return fed_runtime(tmp_path)


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(lambda: runtime, start_pipeline=False)) as c:
        yield c


def test_list_engines_sorted_by_score(client: TestClient) -> None:
    body = client.get("/engines").json()
    assert body["total"] == 4
    scores = [e["score"] for e in body["engines"]]
    assert scores == sorted(scores, reverse=True)
    assert body["engines"][0]["engine_id"] == "engine-2"


def test_list_engines_filters_and_pages(client: TestClient) -> None:
    statuses = {e["engine_id"]: e["status"] for e in client.get("/engines").json()["engines"]}
    for status in ("normal", "warning", "alarm", "warmup"):
        got = client.get("/engines", params={"status": status}).json()["engines"]
        assert sorted(e["engine_id"] for e in got) == sorted(
            k for k, v in statuses.items() if v == status)
    page = client.get("/engines", params={"sort": "engine_id", "order": "asc", "limit": 2,
                                          "offset": 1}).json()
    assert [e["engine_id"] for e in page["engines"]] == ["engine-1", "engine-2"]
    assert page["total"] == 4
    assert client.get("/engines", params={"min_score": 0.999999}).json()["total"] <= 1


@pytest.mark.parametrize("params", [{"status": "broken"}, {"min_score": -1}, {"limit": 0},
                                    {"offset": -1}, {"sort": "size"}])
def test_list_engines_rejects_bad_parameters(client: TestClient, params: dict[str, object]) -> None:
    resp = client.get("/engines", params=params)
    assert resp.status_code == 422
    assert isinstance(resp.json()["detail"], str) and resp.json()["detail"]


def test_one_engine(client: TestClient) -> None:
    e = client.get("/engines/engine-1").json()
    assert e["readings"] == 60 and e["status"] == "normal"
    assert e["ts"].startswith("2026-11-25T12:00:59")
    assert e["model_version"] == "fake-1"
    assert abs(e["predicted"]["vibration"] - 1.0) < 0.05


def test_unknown_engine_is_404_with_message(client: TestClient) -> None:
    resp = client.get("/engines/nope")
    assert resp.status_code == 404
    assert "nope" in resp.json()["detail"]
    assert client.get("/engines/nope/history").status_code == 404


def test_history_is_the_window(client: TestClient) -> None:
    h = client.get("/engines/engine-0/history").json()
    assert len(h["points"]) == 16
    h = client.get("/engines/engine-0/history", params={"limit": 3}).json()
    assert len(h["points"]) == 3


def test_anomaly_events(client: TestClient) -> None:
    everything = client.get("/anomalies").json()
    assert everything["total"] >= 4  # at least each engine leaving warm-up
    ts = [e["ts"] for e in everything["events"]]
    assert ts == sorted(ts, reverse=True)  # newest first
    body = client.get("/anomalies", params={"engine_id": "engine-2"}).json()
    assert body["total"] >= 1 and {e["engine_id"] for e in body["events"]} == {"engine-2"}
    assert body["events"][-1]["previous"] == "warmup"
    late = client.get("/anomalies", params={"since": "2026-11-25T12:00:41Z"}).json()
    assert all(e["ts"] >= "2026-11-25T12:00:41" for e in late["events"])
    assert late["total"] < everything["total"]
    bad = client.get("/anomalies", params={"since": "2026-11-26T00:00:00Z",
                                           "until": "2026-11-25T00:00:00Z"})
    assert bad.status_code == 422


def test_model_and_reload_auth(client: TestClient) -> None:
    m = client.get("/model").json()
    assert m["version"] == "fake-1" and m["card_summary"] == "A fake model for tests."
    assert client.post("/model/reload", json={"artifact_dir": "/x"}).status_code == 401
    wrong = client.post("/model/reload", json={"artifact_dir": "/x"},
                        headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    missing = client.post("/model/reload", json={"artifact_dir": "/does/not/exist"},
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert missing.status_code == 422 and "/does/not/exist" in missing.json()["detail"]


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").status_code == 503  # no Kafka in this test


def test_metrics_exposed(client: TestClient) -> None:
    text = client.get("/metrics").text
    assert "vibewatch_readings_total" in text and 'vibewatch_model_info{' in text
