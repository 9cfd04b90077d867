"""Sustained throughput of the real service: an in-process Runtime on a pre-filled topic.

The Runtime is the one ``vibewatch serve`` builds (same settings, model, store, processor,
pipeline thread); only the HTTP server is left out. Each run gets its own consumer group and
output topics, so the exactly-once and the at-least-once runs read the same data.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient
from prometheus_client import CollectorRegistry

from bench.data import Dataset, end_offsets
from service.config import Settings, load_settings
from service.runtime import Runtime

POLL_S = 0.005
STARTUP_TIMEOUT_S = 45.0


@dataclass(frozen=True)
class ServiceResult:
    """One timed run: readings / seconds is the sustained rate."""

    mode: str  # "eos" or "alos"
    readings: int
    messages: int
    startup_s: float  # start() to the first batch's processing: join, restore, first fetch
    seconds: float  # first batch's processing to everything committed
    readings_per_s: float
    processed: int
    dead_letters: int
    load_1m: float  # the box's 1-minute load average when the run ended

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def service_settings(
    bootstrap: str, readings_topic: str, artifact: Path, *, exactly_once: bool,
    prefix: str | None = None, **sections: dict[str, Any],
) -> Settings:
    """Settings of one benchmark instance on its own group and output topics."""
    prefix = prefix or f"bench-{uuid.uuid4().hex[:8]}"
    kafka: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "readings_topic": readings_topic,
        "dead_letter_topic": f"{prefix}.dead-letter",
        "anomalies_topic": f"{prefix}.anomalies",
        "changelog_topic": f"{prefix}.changelog",
        "group_id": f"{prefix}.group",
        "instance_id": prefix,
        "exactly_once": exactly_once,
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 2000,
        **sections.pop("kafka", {}),
    }
    api: dict[str, Any] = {"fleet_view": False, **sections.pop("api", {})}
    # Each run is one instance on its own topics, never restarted: no local checkpoint
    # (one would be left behind per run); the restart scenarios set their own directory.
    state: dict[str, Any] = {"checkpoint_dir": "", **sections.pop("state", {})}
    return load_settings(kafka=kafka, model={"artifact_dir": artifact}, api=api, state=state,
                         **sections)


def _processed(registry: CollectorRegistry) -> float:
    v = registry.get_sample_value("vibewatch_readings_total", {"outcome": "processed"})
    return v or 0.0


def _dead(registry: CollectorRegistry) -> float:
    return sum(
        s.value
        for metric in registry.collect() if metric.name == "vibewatch_dead_letters"
        for s in metric.samples if s.name.endswith("_total")
    )


def run_service(
    bootstrap: str, ds: Dataset, artifact: Path, *, exactly_once: bool, timeout_s: float = 600.0,
    prefix: str | None = None, checkpoint_dir: Path | None = None,
) -> ServiceResult:
    """Start a Runtime on ``ds.topic`` and time it until every offset is committed.

    ``prefix`` names the group and output topics (default: fresh ones); a second run with
    the same prefix restarts the same instance, restoring its engines from the changelog
    (and from a local checkpoint in ``checkpoint_dir``, if given; none by default).

    A run that processes nothing for STARTUP_TIMEOUT_S is abandoned and retried once on a
    fresh group (seen before commit 57ad357: an empty first assignment whose second
    rebalance never completed). Raises TimeoutError when a run has not
    finished after ``timeout_s``, RuntimeError when it finished without processing every
    reading (a benchmark must not report a partial run).
    """
    for attempt in (1, 2):
        try:
            return _run_once(bootstrap, ds, artifact, exactly_once, timeout_s, prefix,
                             checkpoint_dir)
        except _StalledError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class _StalledError(TimeoutError):
    pass


def _run_once(
    bootstrap: str, ds: Dataset, artifact: Path, exactly_once: bool, timeout_s: float,
    prefix: str | None, checkpoint_dir: Path | None,
) -> ServiceResult:
    settings = service_settings(
        bootstrap, ds.topic, artifact, exactly_once=exactly_once, prefix=prefix,
        state={"checkpoint_dir": str(checkpoint_dir) if checkpoint_dir else ""},
    )
    registry = CollectorRegistry()
    runtime = Runtime(settings, registry=registry)
    ends = end_offsets(bootstrap, ds.topic)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-watch")
    group = settings.kafka.group_id
    try:
        t0 = time.perf_counter()
        runtime.start()
        deadline = t0 + timeout_s
        t_ready = t_first = 0.0
        while True:
            now = time.perf_counter()
            done = _processed(registry)
            if not t_ready and runtime.ready:
                t_ready = now
            if not t_first and done > 0:
                # The first batch began processing batch_seconds before it was counted.
                t_first = now - _first_batch_seconds(registry)
            if not t_first and now - t0 > STARTUP_TIMEOUT_S:
                raise _StalledError(f"nothing of {ds.topic} processed in {now - t0:.0f} s")
            if now > deadline:
                raise TimeoutError(
                    f"service did not finish {ds.topic} in {now - t0:.0f} s "
                    f"({int(done)} of {ds.readings} readings processed)"
                )
            if done >= ds.readings and _committed(admin, group, ends):
                t_done = time.perf_counter()
                break
            time.sleep(POLL_S if done < ds.readings else 0.02)
        processed = int(_processed(registry))
        dead = int(_dead(registry))
    finally:
        runtime.stop()
        admin.close()
    if processed != ds.readings:
        raise RuntimeError(f"processed {processed} readings of {ds.readings}")
    seconds = t_done - t_first
    return ServiceResult(
        mode="eos" if exactly_once else "alos", readings=ds.readings, messages=ds.messages,
        startup_s=round(t_first - t0, 3), seconds=round(seconds, 3),
        readings_per_s=round(ds.readings / seconds, 1), processed=processed, dead_letters=dead,
        load_1m=round(os.getloadavg()[0], 2),
    )


def _first_batch_seconds(registry: CollectorRegistry) -> float:
    v = registry.get_sample_value("vibewatch_batch_duration_seconds_sum")
    return v or 0.0


def _committed(admin: KafkaAdminClient, group: str, ends: dict[Any, int]) -> bool:
    offsets = admin.list_group_offsets({group: None}).get(group, {})
    return all(
        tp in offsets and offsets[tp].offset >= end for tp, end in ends.items() if end > 0
    )
