"""What the peers' latency watchers count, and what the scenario reads from the pins."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from bench.peers.job import Dims, EngineState
from bench.peers.measure import _NewReadings, _probe_stamps
from bench.peers.scenario import versions
from bench.peers.venv import PEERS, requirements


def test_changelog_records_count_each_reading_once() -> None:
    dims = Dims(channels=1, model=2, score=3, window=4)
    st = EngineState(dims, np.zeros(2, np.float32), np.zeros(3))
    watch = _NewReadings(dims)

    def record() -> SimpleNamespace:
        return SimpleNamespace(key=b"e1", value=st.to_bytes())

    for ts in (1_000, 2_000):
        st.push(ts, np.zeros(1))
    assert watch(record()) == [1_000, 2_000]  # first record of a key: its whole window
    for ts in (3_000, 4_000, 5_000):
        st.push(ts, np.zeros(1))
    assert watch(record()) == [3_000, 4_000, 5_000]
    assert watch(SimpleNamespace(key=b"e1", value=None)) == []  # a tombstone
    assert watch(SimpleNamespace(key=b"e2", value=b"short")) == [] and watch.undecodable == 1


def test_probe_records_of_other_source_partitions_are_ignored() -> None:
    assert _probe_stamps(SimpleNamespace(value=b"0 1795608000000")) == [1_795_608_000_000]
    assert _probe_stamps(SimpleNamespace(value=b"3 1795608000000")) == []


def test_every_peer_is_pinned() -> None:
    found = versions()
    for peer in PEERS:
        lines = [ln for ln in requirements(peer).read_text().splitlines()
                 if ln and not ln.startswith("#")]
        assert lines and all("==" in ln for ln in lines), peer
        assert found[peer]["numpy"]
    assert found["quix"]["quixstreams"] and found["faust"]["faust-streaming"]
    assert found["bytewax"]["bytewax"]
