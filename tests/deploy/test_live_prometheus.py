"""Every PromQL expression of the dashboards and alert rules returns data from a real run.

Set-up: ``vibewatch serve`` on isolated topics, ``vibewatch simulate`` feeding 10 engines at
100 readings/s in real time with a wear fault on ``engine-0003`` (it reaches alarm within
~20 s), a thread publishing a malformed message every 0.2 s (``not_json`` and
``key_mismatch`` alternating: about 2.5 % of the messages per reason, so the dead-letter
counters move and VibewatchDeadLettersRising's per-reason > 1 % holds), and Debian's
``/usr/bin/prometheus`` scraping the service every second with the committed alert rules.
The Prometheus configuration is generated from the committed ``deploy/prometheus/prometheus.yml``
by ``deploy/prometheus/make_screenshots.py`` (targets replaced by loopback ones, 1 s
intervals, rule files as an absolute glob), so a broken committed config fails here too.

The expressions come from ``tests/deploy/test_dashboards.all_expressions`` (dashboard panel
targets, dashboard variable queries, Grafana alert rule queries, Prometheus alert rules).
Grafana variables are substituted with the values Grafana would offer for this run:
``$job`` = vibewatch, ``$instance`` = the service's scrape address, ``$engine_id`` = the
faulty engine, ``$__rate_interval`` = 4s (four scrape intervals), via
``dashboard_snapshot.substitute``.

How each expression is checked (instant queries, ``/api/v1/query``):

* **Strict** (every expression not listed in :data:`RELAXED`): the query succeeds and its
  result is non-empty at least once before the deadline. A sample may be NaN, e.g. the
  restore-duration p99 over a window without restores: the series exist, the quantile of
  zero observations is NaN. Alert rules checked strictly: VibewatchEngineInAlarm (the faulty
  engine reaches alarm) and VibewatchDeadLettersRising (the malformed messages are > 1 %).
* **Relaxed** (:data:`RELAXED`): alert conditions that are legitimately empty in this run
  (service up, ready and processing, one engine of ten in alarm, no lag). The full expression
  must evaluate without error; each relaxed variant (the thresholds dropped, written out as
  text substitutions that must match the expression, so the table cannot go stale silently)
  must return data. Where the run is known to be healthy for that condition,
  ``expect_empty`` also asserts that the full expression returns nothing at the end.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.test_dashboards import all_expressions
from tests.support import ServiceProcess, topic_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ENGINES = 10
RATE = 100  # readings per second over the fleet: 10 per engine
BAD_EVERY_S = 0.2  # two reasons alternating: ~2.5 % of the messages each
DEADLINE_S = 45.0  # from the first simulated reading until every check has passed


def _load(name: str, path: Path) -> ModuleType:
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


screens = _load("make_screenshots", PROMETHEUS_DIR / "make_screenshots.py")
snapshot = _load("dashboard_snapshot", PROMETHEUS_DIR / "dashboard_snapshot.py")


@dataclass(frozen=True)
class Relaxed:
    """How an alert condition that is empty in a healthy run is checked instead."""

    #: (text, replacement) pairs applied in order to the (whitespace-normalised) expression to
    #: get the relaxed variant that must return data; every text must occur.
    replace: tuple[tuple[str, str], ...]
    why: str
    #: The full expression must be empty at the end of the run (the run is healthy for it).
    expect_empty: bool
    #: Further relaxed variants, in the same form as ``replace``.
    more: tuple[tuple[tuple[str, str], ...], ...] = ()


RELAXED: dict[str, Relaxed] = {
    "Prometheus rule VibewatchEnginesInAlarmUnexported": Relaxed(
        ((" > 0", ""),),
        "every engine has a series (10 < api.max_engine_series): the difference is 0",
        expect_empty=True,
    ),
    "Prometheus rule VibewatchAnomalyScoreHigh": Relaxed(
        ((" >= on (job, instance) group_left", " - on (job, instance) group_left"),),
        "the faulty engine crosses the warning level only in bursts, which a 1 s scrape may "
        "miss; the difference checks that every score series joins its instance's level",
        expect_empty=False,
    ),
    "Prometheus rule VibewatchEngineSilent": Relaxed(
        ((" > 600", ""),),
        "no engine is silent for 10 minutes in a one-minute run",
        expect_empty=True,
    ),
    "Prometheus rule VibewatchManyEnginesInAlarm": Relaxed(
        ((" > 0.1", ""), (" >= 3", "")),
        "one engine of ten is faulty: at most 10 % and fewer than 3 in alarm",
        expect_empty=True,
    ),
    "Grafana rule VibewatchManyEnginesInAlarm A": Relaxed(
        ((" >= 3", ""),),
        "fewer than 3 engines in alarm (the > 0.1 is Grafana's math expression C)",
        expect_empty=True,
    ),
    "Prometheus rule VibewatchDown": Relaxed(
        ((' == 0 or absent(up{job="vibewatch"})', ""),),
        "the service is up and scraped",
        expect_empty=True,
        # the absent() branch, for a job without targets: what fires when nothing is scraped
        more=((('up{job="vibewatch"} == 0 or ', ""), ('job="vibewatch"', 'job="no-such-job"')),),
    ),
    "Prometheus rule VibewatchNotReady": Relaxed(
        ((" == 0", ""),),
        "the service is ready",
        expect_empty=True,
    ),
    "Prometheus rule VibewatchNoReadings": Relaxed(
        ((" > 300", ""),),
        "the service processes readings every second",
        expect_empty=True,
    ),
    "Prometheus rule VibewatchConsumerLagGrowing": Relaxed(
        ((" > 1000", ""), (" > 0", "")),
        "the service keeps up: the lag is a handful of messages and does not trend up",
        expect_empty=True,
    ),
    "Grafana rule VibewatchConsumerLagGrowing A": Relaxed(
        ((" > 0", ""),),
        "the lag's 10-minute derivative is not reliably positive (the > 1000 is Grafana's C)",
        expect_empty=False,
    ),
}


def normalise(expr: str) -> str:
    """Collapse whitespace (no expression here has runs of spaces inside a string)."""
    return " ".join(expr.split())


def relaxed_variants(where: str, expr: str) -> list[str]:
    """The relaxed expressions of ``where``; fails when a substitution no longer matches."""
    out = []
    relaxed = RELAXED[where]
    for variant in (relaxed.replace, *relaxed.more):
        text = expr
        for old, new in variant:
            assert old in text, f"{where}: RELAXED expects {old!r} in {text!r}: update the table"
            text = text.replace(old, new)
        out.append(text)
    return out


@dataclass
class Check:
    where: str
    expr: str  # variables substituted, whitespace normalised
    must_have_data: bool  # False: only has to evaluate without error
    passed: bool = False
    last: str = "not queried yet"


def build_checks(instance: str) -> list[Check]:
    variables = {"job": "vibewatch", "instance": instance, "engine_id": screens.FAULT_ENGINE}
    rate = snapshot.rate_interval(1.0, 1.0)
    checks: list[Check] = []
    seen = set()
    for where, raw in all_expressions():
        expr = normalise(snapshot.substitute(raw, variables, 600.0, rate))
        assert "$" not in expr, f"{where}: unresolved variable in {expr}"
        seen.add(where)
        if where in RELAXED:
            checks.append(Check(where, expr, must_have_data=False))
            checks.extend(
                Check(f"{where} [relaxed {i}]", variant, must_have_data=True)
                for i, variant in enumerate(relaxed_variants(where, expr))
            )
        else:
            checks.append(Check(where, expr, must_have_data=True))
    stale = sorted(set(RELAXED) - seen)
    assert not stale, f"RELAXED names expressions that no longer exist: {stale}"
    return checks


def run_check(prometheus: Any, check: Check) -> None:
    body = prometheus.query(check.expr)
    if body.get("status") != "success":
        check.last = f"error: {body.get('errorType')}: {body.get('error')}"
        return
    result = body["data"]["result"]
    has_data = bool(result) if body["data"]["resultType"] != "scalar" else True
    check.last = f"{len(result)} series" if has_data else "empty result"
    check.passed = has_data or not check.must_have_data


def test_relaxed_table_matches_the_expressions() -> None:
    """Offline: the relaxation table applies cleanly to the committed expressions."""
    checks = build_checks("127.0.0.1:8000")
    assert any(c.where.endswith("[relaxed 1]") for c in checks)
    assert sum(c.must_have_data for c in checks) > len(RELAXED)


def test_every_expression_returns_data_from_a_live_prometheus(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    if not Path(screens.PROMETHEUS_BIN).is_file():
        pytest.fail(f"{screens.PROMETHEUS_BIN} not found: install Debian's 'prometheus' package")
    prefix = f"live-prom-{uuid.uuid4().hex[:8]}"
    env = topic_env(kafka_bootstrap, prefix)
    service = ServiceProcess(env, tmp_path / "serve.log")
    prometheus = screens.Prometheus(tmp_path / "prometheus", f"127.0.0.1:{service.port}")
    simulator: subprocess.Popen[bytes] | None = None
    bad = screens.BadMessages(kafka_bootstrap, f"{prefix}.readings", BAD_EVERY_S)
    checks = build_checks(f"127.0.0.1:{service.port}")
    try:
        service.start()
        prometheus.start()
        service.wait_ready()
        with (tmp_path / "simulate.log").open("ab") as log:
            simulator = subprocess.Popen(
                screens.simulator_command(kafka_bootstrap, f"{prefix}.readings", ENGINES, RATE),
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        bad.start()
        deadline = time.monotonic() + DEADLINE_S
        while not prometheus.is_ready():
            assert time.monotonic() < deadline, f"Prometheus not ready:\n{prometheus.log_tail()}"
            time.sleep(0.2)

        pending = checks
        while pending and time.monotonic() < deadline:
            assert simulator.poll() is None, (tmp_path / "simulate.log").read_text()
            for check in pending:
                run_check(prometheus, check)
            pending = [c for c in pending if not c.passed]
            if pending:
                time.sleep(1.0)  # one scrape and rule evaluation interval
        assert bad.error is None, f"publishing malformed messages failed: {bad.error!r}"
        assert bad.sent > 0
        if pending:
            report = "\n".join(f"  {c.where}: {c.last}\n      {c.expr}" for c in pending)
            pytest.fail(
                f"{len(pending)} of {len(checks)} checks never passed within {DEADLINE_S:g} s:"
                f"\n{report}\n--- service log ---\n{service.log_tail(20)}"
            )

        # The run is healthy for these conditions: their alerts must not have data now.
        firing = {}
        for where, relaxed in RELAXED.items():
            if not relaxed.expect_empty:
                continue
            (full,) = [c for c in checks if c.where == where]
            body = prometheus.query(full.expr)
            assert body.get("status") == "success", f"{where}: {body}"
            if body["data"]["result"]:
                firing[where] = body["data"]["result"]
        assert not firing, f"alert conditions hold in a healthy run: {firing}"
    finally:
        bad.stop()
        if simulator is not None and simulator.poll() is None:
            simulator.send_signal(signal.SIGINT)
            try:
                simulator.wait(15)
            except subprocess.TimeoutExpired:
                simulator.kill()
                simulator.wait()
        prometheus.stop()
        if service.proc is not None:
            service.stop()
