"""One run of the live scenario against a real service and broker.

The run starts ``vibewatch serve`` on topics of its own, then publishes the simulated
fleet's readings paced at ``speed`` simulated seconds per wall second, as sensors would
(one JSON message per reading, keyed by engine). Meanwhile a poller reads
``GET /engines`` as an operator's screen would; at the scenario's times the
service is restarted (the readings keep coming) and an engine re-baselined through the
API. At the end the run waits until every reading is processed and committed and reads
the committed anomaly events.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from service.config import KafkaSettings
from service.evaluation.live.observe import (
    Event,
    Poll,
    RebaselineRecord,
    RestartRecord,
    RunRecord,
)
from service.evaluation.live.processes import (
    ServeProcess,
    ServiceFailedError,
    free_port,
    read_topic,
    service_env,
)
from service.evaluation.live.scenario import Restart, Scenario
from service.publisher import Publisher
from service.simulator import Fleet, messages

log = logging.getLogger(__name__)
POLL_S = 0.25
DRAIN_TIMEOUT_S = 180.0
CATCH_UP_TIMEOUT_S = 120.0


class _Poller(threading.Thread):
    """Reads the engine list every ``POLL_S`` seconds until stopped (a failed request,
    while the service restarts, is skipped)."""

    def __init__(self, service: ServeProcess, engines: int, began: float) -> None:
        super().__init__(name="live-poller", daemon=True)
        self.service = service
        self.path = f"/engines?sort=severity&limit={min(engines, 10_000)}"
        self.began = began
        self.polls: list[Poll] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(POLL_S):
            with contextlib.suppress(OSError, ValueError, KeyError):
                code, page = self.service.get(self.path, timeout_s=2.0)
                if code == 200:
                    self.polls.append(Poll.from_page(time.monotonic() - self.began, page))

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def _listed_up_to(service: ServeProcess, engines: int, ts_ms: int,
                  committed: bool = False) -> bool:
    """Whether the engine list shows every engine at ``ts_ms`` or later (and committed)."""
    try:
        code, page = service.get(f"/engines?sort=engine_id&order=asc&limit={engines}")
    except (OSError, ValueError):
        return False
    if code != 200 or page["total"] < engines:
        return False
    for doc in page["engines"]:
        if Poll.from_page(0.0, {"engines": [doc]}).rows[0].ts_ms < ts_ms:
            return False
        if committed and not doc["committed"]:
            return False
    return True


def _wait(check: Callable[[], bool], timeout_s: float, what: str, service: ServeProcess) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if not service.running:
            raise ServiceFailedError(f"vibewatch serve exited while {what}:\n"
                                     f"{service.log_tail()}")
        if time.monotonic() > deadline:
            raise ServiceFailedError(f"timed out after {timeout_s:.0f} s {what}:\n"
                                     f"{service.log_tail()}")
        time.sleep(0.2)


def _restart(service: ServeProcess, record: RestartRecord, engines: int,
             position_ms: Callable[[], int]) -> None:
    """Stop the service with the record's signal, start it again, wait until it is ready
    and has caught up with the readings sent meanwhile."""
    began = time.monotonic()
    sig = signal.SIGTERM if record.mode == "term" else signal.SIGKILL
    record.exit_code = service.stop(sig)
    record.stopped_wall_s = time.monotonic() - began
    service.start()
    service.wait_ready()
    ready = time.monotonic()
    record.outage_wall_s = ready - began
    target = position_ms()
    _wait(lambda: _listed_up_to(service, engines, target), CATCH_UP_TIMEOUT_S,
          "catching up after the restart", service)
    record.catch_up_wall_s = time.monotonic() - ready


def _rebaseline(service: ServeProcess, engine_id: str, at_s: float) -> RebaselineRecord:
    record = RebaselineRecord(engine_id, at_s)
    code, body = service.post(f"/engines/{engine_id}/baseline")
    record.http_status = code
    record.detail = str((body or {}).get("detail", ""))
    return record


def run_once(
    scenario: Scenario,
    *,
    name: str,
    bootstrap: str,
    kafka: KafkaSettings,
    speed: float,
    restart: Restart | None,
    work_dir: Path,
    show_progress: bool = True,
) -> RunRecord:
    """Run the scenario once through a fresh service on topics of its own; returns what was
    observed. Raises ServiceFailedError (with the service's log tail) when the service
    does not start, dies, or does not catch up."""
    prefix = f"live-{uuid.uuid4().hex[:10]}"
    run_dir = work_dir / prefix
    run_dir.mkdir(parents=True, exist_ok=True)
    env = service_env(bootstrap, prefix, free_port(), secrets.token_urlsafe(16),
                      run_dir / "checkpoints")
    service = ServeProcess(env, run_dir / "serve.log")
    service.start()
    try:
        service.wait_ready()
        return _publish_and_observe(scenario, name, bootstrap, kafka, speed, restart,
                                    service, prefix, show_progress)
    finally:
        service.stop()


def _publish_and_observe(
    scenario: Scenario, name: str, bootstrap: str, kafka: KafkaSettings, speed: float,
    restart: Restart | None, service: ServeProcess, prefix: str, show_progress: bool,
) -> RunRecord:
    from tqdm import tqdm

    interval_ms = scenario.interval_ms
    # Event time ends about now, so no reading is dated in the future.
    start_ms = (int(time.time()) - int(scenario.span_s)) * 1000
    record = RunRecord(name, start_ms)
    fleet = Fleet(scenario.engines, seed=scenario.seed, faults=scenario.fleet_faults())
    began = time.monotonic()
    poller = _Poller(service, scenario.engines, began)
    poller.start()
    restart_tick = None if restart is None else scenario.tick_at(restart.at_s)
    rb = scenario.rebaseline
    rebaseline_tick = None if rb is None else scenario.tick_at(rb.at_s)
    restarter: threading.Thread | None = None
    failure: list[BaseException] = []
    sent_ms = [start_ms]
    settings = kafka.model_copy(update={"bootstrap_servers": bootstrap,
                                        "readings_topic": f"{prefix}.readings"})
    bar = tqdm(total=scenario.ticks, desc=name, unit="tick", disable=not show_progress,
               mininterval=0.5 if sys.stderr.isatty() else 30.0)
    try:
        with Publisher(settings, "live") as out:
            for t in range(scenario.ticks):
                if t == restart_tick and restart is not None:
                    record.restart = RestartRecord(restart.mode, restart.at_s)
                    restarter = _thread(failure, _restart, service, record.restart,
                                        scenario.engines, lambda: sent_ms[0])
                    bar.set_postfix_str(f"restart ({restart.mode})")
                if t == rebaseline_tick and rb is not None:
                    out.flush()  # the command comes after every reading sent so far
                    if restarter is not None:
                        restarter.join()
                    record.rebaseline = _rebaseline(service, rb.engine_id, rb.at_s)
                if failure:
                    raise failure[0]
                ahead = began + t * interval_ms / 1000 / speed - time.monotonic()
                if ahead > 0.002:
                    time.sleep(ahead)
                ts = start_ms + t * interval_ms
                for key, value in messages(fleet, 1, start_ms=ts, interval_ms=interval_ms):
                    out.send(key, value)
                sent_ms[0] = ts
                bar.update(1)
            record.readings = out.sent
        if restarter is not None:
            restarter.join()
        if failure:
            raise failure[0]
        bar.set_postfix_str("waiting for the last commits")
        _wait(lambda: _listed_up_to(service, scenario.engines, sent_ms[0], committed=True),
              DRAIN_TIMEOUT_S, "processing the last readings", service)
    finally:
        bar.close()
        poller.stop()
    record.wall_s = time.monotonic() - began
    record.polls = poller.polls
    record.events = [Event.from_record(r.value)
                     for r in read_topic(bootstrap, f"{prefix}.anomalies")]
    record.service_log = str(service.log_path)
    return record


def _thread(failure: list[BaseException], target: Callable[..., None],
            *args: object) -> threading.Thread:
    """Run ``target`` in a thread; an exception it raises is put in ``failure``."""
    def body() -> None:
        try:
            target(*args)
        except BaseException as exc:  # handed to the producer loop, which re-raises it
            failure.append(exc)

    thread = threading.Thread(target=body, name="live-restart", daemon=True)
    thread.start()
    return thread
