"""Every endpoint, including the error cases, on a runtime fed without Kafka."""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api import create_app
from service.api.schemas import EngineOut
from service.domain import Reading
from service.runtime import Runtime
from tests.service.api.fed_runtime import T0, TOKEN, fed_runtime


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    return fed_runtime(tmp_path)


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(lambda: runtime, start_pipeline=False)) as c:
        yield c


def test_list_engines_sorted_by_score(client: TestClient) -> None:
    body = client.get("/engines", params={"sort": "score"}).json()
    assert body["total"] == 4
    scores = [e["score"] for e in body["engines"]]
    assert scores == sorted(scores, reverse=True)
    assert body["engines"][0]["engine_id"] == "engine-2"


def test_list_engines_most_severe_first_by_default(client: TestClient) -> None:
    order = ["warmup", "normal", "warning", "alarm"]
    engines = client.get("/engines").json()["engines"]
    keys = [(order.index(e["status"]), e["score"]) for e in engines]
    assert keys == sorted(keys, reverse=True)
    assert len({e["status"] for e in engines}) > 1, "the fixture must mix statuses"


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


@pytest.mark.parametrize("params", [{"status": "broken"}, {"min_score": -1},
                                    {"min_score": "nan"}, {"limit": 0}, {"offset": -1},
                                    {"sort": "size"}, {"stale": "maybe"}])
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
    # since after until matches nothing (not an error: the schema cannot say it is one)
    none = client.get("/anomalies", params={"since": "2026-11-26T00:00:00Z",
                                            "until": "2026-11-25T00:00:00Z"})
    assert none.status_code == 200 and none.json()["total"] == 0
    # a time without an offset is ambiguous: refused, saying how to write it
    naive = client.get("/anomalies", params={"since": "2026-11-25T12:00:41"})
    assert naive.status_code == 422 and "2026-11-25T12:00:00Z" in naive.json()["detail"]


@pytest.mark.parametrize(("params", "code"), [
    ({"since": "2026-11-25T12:00:00", "until": "2026-11-25T13:00:00+02:00"}, 422),
    ({"since": "0001-01-01T00:00:00"}, 422),
    ({"since": "0001-01-01T00:00:00+14:00", "until": "9999-12-31T23:59:59-14:00"}, 200),
    ({"since": "0001-01-01T00:00:00Z"}, 200),
])
def test_anomalies_any_times_no_server_error(
    client: TestClient, params: dict[str, str], code: int
) -> None:
    """Two of the three 500s of issue #14 (comparing naive with aware times; year 1):
    a time without an offset is a clear 422, any other is answered."""
    resp = client.get("/anomalies", params=params)
    assert resp.status_code == code, resp.text
    if code == 422:
        assert "offset" in resp.json()["detail"]
    else:
        assert resp.json()["total"] >= 0


def test_reload_with_a_300_character_path_is_a_json_422(client: TestClient) -> None:
    """The third 500 of issue #14: a path longer than the OS allows."""
    for path in ("/" + "x" * 300, "/tmp/a\u0000b", "x" * 5000):
        resp = client.post("/model/reload", json={"artifact_dir": path},
                           headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status_code in (404, 422), resp.text
        assert resp.json()["detail"]


def test_model_and_reload_auth(client: TestClient) -> None:
    m = client.get("/model").json()
    assert m["version"] == "fake-1" and m["card_summary"] == "A fake model for tests."
    assert client.post("/model/reload", json={"artifact_dir": "/x"}).status_code == 401
    wrong = client.post("/model/reload", json={"artifact_dir": "/x"},
                        headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    missing = client.post("/model/reload", json={"artifact_dir": "/does/not/exist"},
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert missing.status_code == 404 and "/does/not/exist" in missing.json()["detail"]
    unusable = client.post("/model/reload", json={"artifact_dir": "/"},
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert unusable.status_code == 422 and "manifest" in unusable.json()["detail"]


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 503  # no Kafka in this test
    # the pipeline's own words for what is missing (Runtime.readiness)
    assert ready.json() == {"status": "not ready", "detail": "starting"}


def test_metrics_exposed(client: TestClient) -> None:
    text = client.get("/metrics").text
    assert "vibewatch_readings_total" in text and 'vibewatch_model_info{' in text
    # prometheus-client's default collectors on the injected registry, and the build
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total",
                 "process_open_fds", "python_gc_objects_collected_total"):
        assert f"\n{name}" in text, name
    assert f'vibewatch_build_info{{python="{platform.python_version()}",version="0.1.0"}} 1.0' \
        in text


def _feed(runtime: Runtime, engine: str, k: int, clock_s: float | None = None) -> None:
    if clock_s is not None:
        runtime.processor.clock = lambda: clock_s
    runtime.processor.process(
        [Reading(engine, T0 + 1000 * k, {"vibration": 1.0 + 0.001 * k})], [0])
    runtime.engine_index.refresh()


def test_engine_documents_match_the_schema(client: TestClient) -> None:
    listed = client.get("/engines").json()["engines"]
    one = client.get("/engines/engine-2").json()
    for doc in [*listed, one]:
        EngineOut.model_validate(doc)
        assert doc["source"] == "local" and doc["committed"] and not doc["stale"]
    listed_one = next(e for e in listed if e["engine_id"] == "engine-2")
    assert listed_one["contributions"] is None  # the list does not keep them
    assert one["contributions"] == {"vibration": 1.0}  # one channel drives it all
    assert {**one, "contributions": None} == listed_one


def test_scored_against_is_the_previous_prediction(client: TestClient, runtime: Runtime) -> None:
    before = client.get("/engines/engine-1").json()
    _feed(runtime, "engine-1", 60)
    after = client.get("/engines/engine-1").json()
    assert after["scored_against"] == before["predicted"]
    assert after["predicted"] != before["predicted"]
    assert after["readings"] == before["readings"] + 1
    # the list shows the same once the index has refreshed
    listed = client.get("/engines", params={"sort": "engine_id"}).json()["engines"]
    assert next(e for e in listed if e["engine_id"] == "engine-1") == {
        **after, "contributions": None}


def test_first_reading_has_nothing_it_was_scored_against(
    client: TestClient, runtime: Runtime
) -> None:
    _feed(runtime, "engine-new", 0)
    doc = client.get("/engines/engine-new").json()
    assert doc["scored_against"] is None and doc["error"] is None
    assert doc["contributions"] is None
    EngineOut.model_validate(doc)


def test_committed_follows_the_stores_committed_batch(
    client: TestClient, runtime: Runtime
) -> None:
    store = runtime.store
    store.seq = 7  # the pipeline's batch number
    _feed(runtime, "engine-3", 60)
    assert client.get("/engines/engine-3").json()["committed"] is False
    listed = {e["engine_id"]: e["committed"] for e in client.get("/engines").json()["engines"]}
    assert listed == {"engine-0": True, "engine-1": True, "engine-2": True, "engine-3": False}
    store.committed_seq = 7  # its transaction was acknowledged
    assert client.get("/engines/engine-3").json()["committed"] is True
    assert all(e["committed"] for e in client.get("/engines").json()["engines"])


def test_engines_that_stopped_reporting_are_stale(client: TestClient, runtime: Runtime) -> None:
    long_ago = time.time() - 2 * runtime.settings.api.stale_after_s
    for k in range(3):
        _feed(runtime, "replayed-1", k, clock_s=long_ago)
    doc = client.get("/engines/replayed-1").json()
    assert doc["stale"] is True
    stale = client.get("/engines", params={"stale": "true"}).json()
    assert [e["engine_id"] for e in stale["engines"]] == ["replayed-1"]
    fresh = client.get("/engines", params={"stale": "false"}).json()
    assert fresh["total"] == 4 and not any(e["stale"] for e in fresh["engines"])
    assert "\nvibewatch_engines_stale 1.0" in client.get("/metrics").text


def test_docs_pages_use_only_local_assets(client: TestClient) -> None:
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = client.get(page).text
        assert f"/docs-assets/{asset}" in html
        assert "https://" not in html and "http://" not in html, page
        js = client.get(f"/docs-assets/{asset}")
        assert js.status_code == 200 and len(js.content) > 100_000


def test_ready_only_once_the_list_shows_what_was_restored(
    client: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline says ready (restored): /readyz waits for a refresh of the engine list
    that began after that, so a client told "ready" finds the restored engines listed."""
    monkeypatch.setattr(runtime.pipeline, "readiness", lambda: (True, "owns [0]"))
    runtime.engine_index.stop()  # no refresh thread: the test drives the refreshes
    first = client.get("/readyz")
    assert first.status_code == 503 and first.json()["detail"] == "listing the restored engines"
    runtime.engine_index.refresh()
    assert client.get("/readyz").json() == {"status": "ready", "detail": "owns [0]"}


def test_baseline_takes_an_optional_window(client: TestClient, runtime: Runtime,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /engines/{id}/baseline: no body (the settings' commissioning) or a window in
    seconds; a bad window is a 422 naming the field, and nothing is sent."""
    sent: list[tuple[str, float | None]] = []

    def request(engine_id: str, commission_s: float | None = None) -> int:
        sent.append((engine_id, commission_s))
        return T0

    monkeypatch.setattr(runtime, "request_baseline", request)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = client.post("/engines/engine-1/baseline", headers=auth)
    assert r.status_code == 202 and r.json()["commission_s"] is None
    r = client.post("/engines/engine-1/baseline", headers=auth, json={"commission_s": 3600})
    assert r.status_code == 202 and r.json()["commission_s"] == 3600
    for bad in ({"commission_s": -1}, {"commission_s": 10**8}, {"window": 5}):
        r = client.post("/engines/engine-1/baseline", headers=auth, json=bad)
        assert r.status_code == 422, bad
    assert sent == [("engine-1", None), ("engine-1", 3600.0)]
