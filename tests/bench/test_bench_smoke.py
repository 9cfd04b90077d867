"""Smoke tests of the benchmark code: the smallest scenarios end to end, no timing asserted.

They keep ``bench/`` from rotting: the numbers themselves come from ``make bench``.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bench import machine
from bench.data import Dataset, encoded, fill
from bench.memory import measure
from bench.report import table
from bench.run import ROOT, build_parser
from bench.service_run import run_service

ARTIFACT = ROOT / "models" / "artifacts" / "default"
needs_artifact = pytest.mark.skipif(
    not (ARTIFACT / "manifest.json").is_file(), reason="no default model artifact"
)


def test_parser_knows_every_scenario() -> None:
    args = build_parser().parse_args(["--quick", "--scenarios", "memory,cost", "--engines",
                                      "10,20"])
    assert args.quick and args.scenarios == ["memory", "cost"] and args.engines == [10, 20]


def test_machine_is_described() -> None:
    m = machine.describe()
    assert m["cores"] >= 1 and m["cpu_model"]
    assert machine.rss_kib() > 0


def test_table_aligns_columns() -> None:
    text = table(["engines", "rate"], [[100, 1234.5], [10_000, 7.25]])
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert "10,000" in text and "1,234" in text


def test_encoded_messages_match_the_contract() -> None:
    single = list(encoded(Dataset("t", engines=3, ticks=2)))
    batch = list(encoded(Dataset("t", engines=3, ticks=5, batch=2)))
    assert len(single) == 6 and single[0][0] == b"engine-0000"
    assert len(batch) == 9  # ceil(5 / 2) messages per engine
    from service.ingest.decode import MessageDecoder

    decoder = MessageDecoder(("vibration",), max_bytes=1 << 20, max_batch=100)
    assert sum(len(decoder.decode(v, k)) for k, v in batch) == 15


@needs_artifact
def test_memory_and_cost_measure_in_a_subprocess() -> None:
    rss = measure("rss", engines=200, window=16, artifact=ARTIFACT)
    assert rss["engines"] == 200 and rss["rss_after_kib"] > 0
    cost = measure("cost", engines=100, window=16, artifact=ARTIFACT, ticks=3)
    assert cost["readings"] == 300 and cost["process_us"] > 0


@pytest.mark.integration
@needs_artifact
@pytest.mark.parametrize("batch", [1, 5])
def test_service_throughput_smallest(kafka_bootstrap: str, batch: int) -> None:
    ds = Dataset(f"bench-smoke-{uuid.uuid4().hex[:8]}", engines=20, ticks=10, batch=batch)
    fill(kafka_bootstrap, ds, workers=1, progress=False)
    result = run_service(kafka_bootstrap, ds, ARTIFACT, exactly_once=True, timeout_s=120)
    assert result.processed == ds.readings == 200
    assert result.dead_letters == 0 and result.readings_per_s > 0


@pytest.mark.slow
@needs_artifact
def test_quick_run_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--no-progress",
         "--out", str(out)], capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert out.is_file() and "Sustained throughput" in proc.stdout
