"""The peers' job computes what the service computes, one engine and one reading at a time."""

from __future__ import annotations

import io

import numpy as np
import pytest

from bench.peers.job import BadMessageError, EngineState, PeerJob, Progress
from bench.run import DEFAULT_ARTIFACT
from service.domain import Reading
from service.processor import BatchProcessor
from service.scoring import STATUS_ORDER
from service.state import EngineStore

needs_artifact = pytest.mark.skipif(
    not (DEFAULT_ARTIFACT / "manifest.json").is_file(), reason="no default model artifact"
)
T0 = 1_795_608_000_000
#: 20 s between readings: the 60 readings span the default commissioning (600 s) and more
STEP_MS = 20_000


def _series(engines: int, ticks: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    values = rng.uniform(0.05, 0.12, (ticks, engines))
    values[ticks - 12 :, 0] += 0.6  # a step on engine 0: statuses change
    return values


@needs_artifact
def test_job_matches_the_service_reading_for_reading() -> None:
    engines, ticks = 4, 60
    values = _series(engines, ticks)
    ids = [f"engine-{i}" for i in range(engines)]

    job = PeerJob(DEFAULT_ARTIFACT)
    stored: dict[str, bytes] = {}
    peer_events = []
    for t in range(ticks):
        for i, e in enumerate(ids):
            # the state goes through bytes every message, as in a framework's store
            state, events = job.apply(e, job.decode_state(stored.get(e)),
                                      [(T0 + t * STEP_MS, np.array([values[t, i]]))])
            stored[e] = state.to_bytes()
            peer_events += events

    store = EngineStore(window=256, channels=1, model_state_size=job.model.state_size,
                        score_state_size=job.scoring.state_size)
    proc = BatchProcessor(job.model, job.scoring, store, STATUS_ORDER)
    service_events = []
    for t in range(ticks):
        result = proc.process([Reading(e, T0 + t * STEP_MS, {"vibration": float(values[t, i])})
                               for i, e in enumerate(ids)], [0] * engines)
        service_events += result.events

    assert service_events, "the step must change some status, or this compares nothing"
    import json

    got = [json.loads(v) for _, v in peer_events]
    assert [(d["engine_id"], d["ts_ms"], d["previous"], d["status"]) for d in got] == [
        (ev.engine_id, ev.ts_ms, str(ev.previous), str(ev.status)) for ev in service_events]
    np.testing.assert_allclose([d["score"] for d in got],
                               [ev.score for ev in service_events], rtol=0, atol=1e-12)
    for e in ids:
        st = EngineState.from_bytes(stored[e], job.dims)
        slot = int(store.index[e])
        np.testing.assert_allclose(st.model, store.model_state[slot], rtol=0, atol=1e-6)
        np.testing.assert_allclose(st.score, store.score_state[slot], rtol=0, atol=1e-9)
        assert st.status == int(store.status[slot]) and st.count == ticks
        assert list(st.window_ts()) == [T0 + t * STEP_MS for t in range(ticks)]


@needs_artifact
def test_old_readings_are_skipped_and_bad_messages_refused() -> None:
    job = PeerJob(DEFAULT_ARTIFACT)
    state, _ = job.apply("e", None, [(T0, np.array([0.08])), (T0 + 1000, np.array([0.09]))])
    again, _ = job.apply("e", state, [(T0 + 1000, np.array([0.07])), (T0, np.array([0.07]))])
    assert again.count == 2 and job.skipped == 2
    ok = job.readings({"engine_id": "e", "readings": [
        {"ts": "2026-11-25T12:00:00.000Z", "values": {"vibration": 0.1}},
        {"ts": T0 + 1000, "values": {"vibration": 0.2}}]})
    assert [ts for ts, _ in ok] == [T0, T0 + 1000]
    bads: list[object] = [[], {"ts": T0, "values": {}}, {"ts": T0, "values": {"vibration": "x"}},
                          {"ts": T0, "values": {"vibration": float("nan")}},
                          {"ts": True, "values": {"vibration": 0.1}}, {"readings": 3}]
    for bad in bads:
        with pytest.raises(BadMessageError):
            job.readings(bad)


def test_window_wraps_and_keeps_the_newest_timestamps() -> None:
    from bench.peers.job import Dims

    dims = Dims(channels=1, model=2, score=3, window=4)
    st = EngineState(dims, np.zeros(2, np.float32), np.zeros(3))
    for k in range(6):
        st.push(1000 * k, np.array([0.1 * k]))
    assert list(st.window_ts()) == [2000, 3000, 4000, 5000]
    back = EngineState.from_bytes(st.to_bytes(), dims)
    assert back.to_bytes() == st.to_bytes() and back.last_ts == 5000
    with pytest.raises(ValueError, match="expected"):
        EngineState.from_bytes(st.to_bytes()[:-1], dims)


def test_progress_prints_first_and_done_once() -> None:
    out = io.StringIO()
    p = Progress(expect=3, out=out)
    p.mark("BOOT")
    for _ in range(4):
        p.add(1)
    names = [line.split()[0] for line in out.getvalue().splitlines()]
    assert names[0] == "BOOT" and names.count("FIRST") == 1 and names.count("DONE") == 1
    done = next(line for line in out.getvalue().splitlines() if line.startswith("DONE"))
    assert done.split()[3] == "3"
