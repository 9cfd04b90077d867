"""The fleet view: every instance answers for every engine, and holds only others' engines.

Two real ``vibewatch serve`` processes in one group on a real broker. Each must list all
engines (its own as ``local``, the other's as ``fleet``, with the same figures as the owner
shows), hold none of its own engines in the view (``vibewatch_fleet_view_engines``), and
keep answering for every engine while partitions move between them.
"""

from __future__ import annotations

import re
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from service.simulator import Fleet, messages
from tests.support import ServiceProcess, topic_env, wait_for

pytestmark = pytest.mark.integration

ENGINES = 24
TICKS = 40
FIELDS = ("ts", "values", "predicted", "error", "score", "status", "readings", "last_seen")


def _produce(bootstrap: str, topic: str, start_tick: int, ticks: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    start_ms = 1_795_608_000_000 + start_tick * 1000
    for key, value in messages(Fleet(ENGINES, seed=3), ticks, start_ms=start_ms,
                               interval_ms=1000):
        producer.send(topic, key=key.encode(), value=value)
    producer.flush(timeout=60)
    producer.close(timeout=10)


def _engines(service: ServiceProcess) -> dict[str, dict[str, Any]]:
    status, page = service.get(f"/engines?limit={ENGINES * 10}")
    assert status == 200, page
    return {e["engine_id"]: e for e in page["engines"]}


def _view_size(service: ServiceProcess) -> float:
    _, text = service.get("/metrics")
    m = re.search(r"^vibewatch_fleet_view_engines (\S+)$", text, re.M)
    assert m, "vibewatch_fleet_view_engines missing from /metrics"
    return float(m.group(1))


def _settled(services: list[ServiceProcess], readings: int) -> bool:
    """Every instance owns some engines and lists every engine, at ``readings``; its view
    holds exactly the engines it does not own."""
    for s in services:
        engines = _engines(s)
        if len(engines) != ENGINES or any(e["readings"] != readings for e in engines.values()):
            return False
        local = sum(e["source"] == "local" for e in engines.values())
        if not local or _view_size(s) != ENGINES - local:
            return False
    return True


def _alone(service: ServiceProcess) -> bool:
    """A single instance owns every engine: its view holds nothing."""
    engines = _engines(service)
    return all(e["source"] == "local" for e in engines.values()) and _view_size(service) == 0


class Watch(threading.Thread):
    """Lists the engines of one instance every 50 ms; records every incomplete answer."""

    def __init__(self, service: ServiceProcess) -> None:
        super().__init__(daemon=True)
        self.service = service
        self.stop = threading.Event()
        self.polls = 0
        self.missing: list[int] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                n = len(_engines(self.service))
            except OSError:
                n = -1
            self.polls += 1
            if n != ENGINES:
                self.missing.append(n)
            self.stop.wait(0.05)


def test_each_instance_answers_for_all_engines_through_rebalances(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"fleet-{uuid.uuid4().hex[:8]}"
    env = topic_env(kafka_bootstrap, prefix)
    a = ServiceProcess(env, tmp_path / "a.log", "a").start()
    b = ServiceProcess(env, tmp_path / "b.log", "b")
    try:
        a.wait_ready()
        _produce(kafka_bootstrap, f"{prefix}.readings", 0, TICKS)
        wait_for(lambda: _settled([a], TICKS), 90, "a alone to process every engine")
        assert _alone(a)

        watch = Watch(a)
        watch.start()
        b.start().wait_ready()
        wait_for(lambda: _settled([a, b], TICKS), 90, "both instances to list every engine")
        seen_a, seen_b = _engines(a), _engines(b)
        local_a = {k for k, e in seen_a.items() if e["source"] == "local"}
        local_b = {k for k, e in seen_b.items() if e["source"] == "local"}
        assert local_a and local_b, "the partitions were not shared"
        assert local_a.isdisjoint(local_b) and len(local_a | local_b) == ENGINES
        for engine_id in seen_a:
            assert {f: seen_a[engine_id][f] for f in FIELDS} == {
                f: seen_b[engine_id][f] for f in FIELDS
            }, engine_id

        # New readings owned by b reach a's view.
        _produce(kafka_bootstrap, f"{prefix}.readings", TICKS, 5)
        wait_for(lambda: _settled([a, b], TICKS + 5), 60, "the new readings in both views")

        assert b.stop() == 0, b.log_tail()
        wait_for(lambda: _alone(a), 60, "a to own every engine again")
        watch.stop.set()
        watch.join(10)
        assert watch.polls > 20
        assert not watch.missing, f"a answered for fewer engines while partitions moved: " \
                                  f"{watch.missing[:10]}"
        assert _settled([a], TICKS + 5)
    finally:
        if b.proc is not None:
            b.stop()
        assert a.stop() == 0, a.log_tail()
