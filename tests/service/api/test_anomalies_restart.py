"""GET /anomalies of a running service: committed events, the same after a restart."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support import VIBEWATCH, ServiceProcess, topic_env, wait_for

pytestmark = pytest.mark.integration


def test_anomalies_survive_a_restart(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"anom-{uuid.uuid4().hex[:8]}"
    env = topic_env(kafka_bootstrap, prefix)
    service = ServiceProcess(env, tmp_path / "serve.log").start()
    try:
        service.wait_ready()
        sim = subprocess.run(
            [VIBEWATCH, "simulate", "--engines", "6", "--ticks", "80", "--rate", "0",
             "--interval-ms", "1000", "--start-ms", "1795608000000",
             "--fault", "engine-0002:spike@50"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert sim.returncode == 0, sim.stderr

        def events() -> list[dict[str, Any]] | None:
            status, page = service.get("/anomalies?limit=1000")
            assert status == 200
            alarms = [e for e in page["events"] if e["engine_id"] == "engine-0002"
                      and e["status"] == "alarm"]
            return page["events"] if alarms else None

        wait_for(events, 60, "the spike's alarm in /anomalies")

        def processed() -> bool:
            text = service.get("/metrics")[1]
            m = re.search(r'^vibewatch_readings_total\{outcome="processed"\} (\S+)$', text,
                          re.M)
            return m is not None and float(m.group(1)) == 6 * 80

        wait_for(processed, 60, "every reading processed")
        seen: list[Any] = []

        def settled() -> list[dict[str, Any]] | None:  # the same events twice in a row
            page = service.get("/anomalies?limit=1000")[1]["events"]
            seen.append(page)
            return page if len(seen) > 1 and seen[-2] == page else None

        before = wait_for(settled, 30, "the committed events to stop changing",
                          interval_s=1.0)
        assert service.stop() == 0, service.log_tail()
        # a new process: nothing in memory, the events come back from the topic
        service = ServiceProcess(env, tmp_path / "serve2.log").start()
        service.wait_ready()

        def restored() -> list[dict[str, Any]] | None:
            page = service.get("/anomalies?limit=1000")[1]
            return page["events"] if page["total"] >= len(before) else None

        after = wait_for(restored, 60, "the events after the restart")
        assert after == before
    finally:
        assert service.stop() == 0, service.log_tail()
