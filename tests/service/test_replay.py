"""``vibewatch replay`` publishes a dataset the service's decoder accepts, in order."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from models.data import load
from service.ingest import MessageDecoder
from service.replay import event_times
from tests.support import VIBEWATCH, read_all

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / "models/data/ims"
IMS2 = f"ims:{DATA / 'ims_test2_snapshot_meanabs.csv'}"


def test_replay_ims_test2(kafka_bootstrap: str) -> None:
    topic = f"replay-{uuid.uuid4().hex[:8]}"
    out = subprocess.run(
        [VIBEWATCH, "replay", IMS2, "--bootstrap", kafka_bootstrap, "--topic", topic,
         "--speed", "0", "--start-ms", "1795608000000", "--batch", "10"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    decoder = MessageDecoder(("vibration",))
    by_engine: dict[str, list[int]] = defaultdict(list)
    for rec in read_all(kafka_bootstrap, topic):
        readings = decoder.decode(rec.value, rec.key)
        by_engine[readings[0].engine_id] += [r.ts_ms for r in readings]
    assert sorted(by_engine) == [f"ims2-bearing-{i}" for i in range(1, 5)]
    expected = {s.engine_id: len(s) for s in load(IMS2).series}
    for engine, ts in by_engine.items():
        assert len(ts) == expected[engine]  # every row, once
        assert ts[0] == 1_795_608_000_000
        assert all(b - a == 600_000 for a, b in itertools.pairwise(ts))


def test_replay_takes_the_service_settings_and_ends_now(kafka_bootstrap: str) -> None:
    """No --bootstrap or --topic: VIBEWATCH_KAFKA__* as for the service; the default time
    base dates the last reading when it was sent, none later."""
    topic = f"replay-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "VIBEWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
           "VIBEWATCH_KAFKA__READINGS_TOPIC": topic}
    before = time.time() * 1000
    out = subprocess.run([VIBEWATCH, "replay", IMS2, "--speed", "0", "--batch", "50"],
                         capture_output=True, text=True, timeout=120, env=env)
    after = time.time() * 1000
    assert out.returncode == 0, out.stderr
    assert f"to {topic}" in out.stdout
    last = {}
    for rec in read_all(kafka_bootstrap, topic):
        doc = json.loads(rec.value)
        last[doc["engine_id"]] = doc["readings"][-1]["ts"]
    assert len(last) == 4
    assert all(before <= ts <= after for ts in last.values())


def test_replay_in_data_time(kafka_bootstrap: str) -> None:
    topic = f"replay-{uuid.uuid4().hex[:8]}"
    out = subprocess.run(
        [VIBEWATCH, "replay", IMS2, "--bootstrap", kafka_bootstrap, "--topic", topic,
         "--speed", "0", "--time-base", "data", "--batch", "1000"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    first = json.loads(read_all(kafka_bootstrap, topic)[0].value)["readings"][0]["ts"]
    assert first == int(datetime(2004, 2, 12, 10, 32, 39, tzinfo=UTC).timestamp() * 1000)
    assert "2004-02-12T10:32:39+00:00" in out.stdout


def test_event_times_end_now_never_in_the_future() -> None:
    times = event_times([5, 3], interval_s=600, speed=3600, start_ms=0, now_ms=1_000_000)
    # 5 steps paced at 600 s / 3600 = 1/6 s each: the last is sent 4/6 s after now
    assert times[0][-1] == 1_000_000 + int(4 * 600_000 / 3600)
    assert list(np.diff(times[0])) == [600_000] * 4 and list(times[1]) == list(times[0][:3])
    for step, ts in enumerate(times[0]):
        assert ts <= 1_000_000 + step * 600_000 / 3600  # dated no later than it is sent
