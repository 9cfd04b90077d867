"""``vibewatch replay`` publishes a dataset the service's decoder accepts, in order."""

from __future__ import annotations

import itertools
import subprocess
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from models.data import load
from service.ingest import MessageDecoder
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
