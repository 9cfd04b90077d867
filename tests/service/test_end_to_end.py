"""Walking skeleton on the real broker: simulator -> service -> REST API and /metrics."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support import VIBEWATCH, ServiceProcess, topic_env, wait_for

pytestmark = pytest.mark.integration

ENGINES = 12
TICKS = 40


def test_simulated_readings_reach_the_api_and_metrics(kafka_bootstrap: str,
                                                      tmp_path: Path) -> None:
    check_end_to_end(kafka_bootstrap, tmp_path, VIBEWATCH)


def check_end_to_end(kafka_bootstrap: str, tmp_path: Path, vibewatch: str) -> None:
    """``vibewatch simulate`` -> ``vibewatch serve`` -> API and /metrics, both commands from
    ``vibewatch`` (also run with a serving-only install: tests/deploy/test_lean_install.py)."""
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    env = topic_env(kafka_bootstrap, prefix)
    service = ServiceProcess(env, tmp_path / "serve.log", vibewatch=vibewatch).start()
    try:
        service.wait_ready()
        sim = subprocess.run(
            [vibewatch, "simulate", "--bootstrap", kafka_bootstrap, "--topic",
             f"{prefix}.readings", "--engines", str(ENGINES), "--ticks", str(TICKS),
             "--rate", "0", "--interval-ms", "1000", "--start-ms", "1795608000000"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert sim.returncode == 0, sim.stderr

        def all_engines() -> list[dict[str, Any]] | None:
            status, page = service.get("/engines?limit=1000&sort=engine_id&order=asc")
            assert status == 200
            done = [e for e in page["engines"] if e["readings"] == TICKS]
            return page["engines"] if len(done) == ENGINES else None

        engines = wait_for(all_engines, 60, "every engine's readings in the API")
        assert [e["engine_id"] for e in engines] == [f"engine-{i:04d}" for i in range(ENGINES)]
        for e in engines:
            assert set(e["values"]) == {"vibration"}
            assert 0.0 < e["predicted"]["vibration"] < 1.0
            assert e["ts"].startswith("2026-11-25T12:00:39")

        status, one = service.get("/engines/engine-0003")
        assert status == 200 and one["readings"] == TICKS
        assert service.get("/engines/engine-9999")[0] == 404

        def counted() -> str | None:
            # the counters move right after the state the API shows: poll briefly
            status, text = service.get("/metrics")
            assert status == 200
            m = re.search(r'^vibewatch_readings_total\{outcome="processed"\} (\S+)$', text, re.M)
            assert m is not None
            committed = re.search(r"^vibewatch_last_processed_timestamp_seconds 0\.0$", text, re.M)
            return text if float(m.group(1)) == ENGINES * TICKS and not committed else None

        metrics = wait_for(counted, 10, "the processed-readings counter")
        assert re.search(r"^vibewatch_engines_tracked 12\.0$", metrics, re.M)
    finally:
        code = service.stop()
        assert code == 0, service.log_tail()
