"""Each peer runs its job on a real broker (installs .venv-peers/ on first use: slow)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from bench.data import Dataset, fill
from bench.peers.measure import throughput
from bench.run import DEFAULT_ARTIFACT


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("peer", ["quix", "faust", "bytewax"])
def test_peer_processes_every_reading(kafka_bootstrap: str, tmp_path: Path, peer: str) -> None:
    ds = Dataset(f"peers-smoke-{uuid.uuid4().hex[:8]}", engines=20, ticks=10, batch=5)
    fill(kafka_bootstrap, ds, workers=1, progress=False)
    run = throughput(peer, kafka_bootstrap, ds, DEFAULT_ARTIFACT, tmp_path, budget_s=60.0)
    assert run["finished"] and run["readings"] + 5 == ds.readings  # FIRST: one message
    assert run["readings_per_s"] > 0 and run["rss_end_kib"] > 0
