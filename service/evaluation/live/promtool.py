"""A promtool unit test of the alert rules on the series a live run recorded.

For each run, the status and score series of the faulty engines and of the most anomalous
healthy engine, as a Prometheus scraping every 15 s would have seen them with the
simulated time running at 1x (see :mod:`.outcome`), are fed to the alert rules
(``deploy/prometheus/rules``). The test expects ``VibewatchEngineInAlarm`` (the page) and
``VibewatchAnomalyScoreHigh`` (the ticket) to fire exactly when the model in
:mod:`.outcome` says: at every evaluation where the set of firing engines changes, the one
before it, and two minutes after each fault's onset (issue 12: the page within 2 minutes).
``promtool test rules FILE`` runs it; the expected annotations are rendered from the rules
themselves.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.errors import UsageError
from service.evaluation.live.observe import RunRecord
from service.evaluation.live.outcome import (
    PAGE_DELAY_S,
    SCRAPE_S,
    STALE,
    by_engine,
    page_fires,
    score_series,
    scrape_times,
    status_series,
)
from service.evaluation.live.processes import ROOT
from service.evaluation.live.scenario import Scenario

RULES = ROOT / "deploy" / "prometheus" / "rules" / "vibewatch-alerts.yml"
PAGE = "VibewatchEngineInAlarm"
TICKET = "VibewatchAnomalyScoreHigh"
TICKET_FOR_S = 900.0  #: ``for`` of VibewatchAnomalyScoreHigh
LABELS = {"job": "vibewatch", "instance": "live:8000"}
_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def _yaml() -> Any:
    try:
        import yaml
    except ModuleNotFoundError:
        raise UsageError("--promtool-test needs PyYAML (pip install pyyaml)") from None
    return yaml


def duration(seconds: float) -> str:
    """A Prometheus duration: ``11m15s``."""
    whole = round(seconds)
    m, s = divmod(whole, 60)
    return (f"{m}m" if m else "") + (f"{s}s" if s or not m else "")


def series_values(values: Sequence[float] | np.ndarray) -> str:
    """promtool's expanding notation, run-length coded: ``1x40 3x79``; ``_`` for no
    sample, ``stale`` for a failed scrape."""
    def token(v: float) -> str:
        if np.isnan(v):
            return "_"
        if v == STALE:
            return "stale"
        return f"{v:.4g}" if v != int(v) else str(int(v))

    tokens = [token(v) for v in values]
    out: list[str] = []
    k = 0
    while k < len(tokens):
        j = k
        while j + 1 < len(tokens) and tokens[j + 1] == tokens[k]:
            j += 1
        run = j - k + 1
        if tokens[k] == "stale":
            out.extend(["stale"] * run)
        else:
            out.append(tokens[k] if run == 1 else f"{tokens[k]}x{run - 1}")
        k = j + 1
    return " ".join(out)


def _render(text: str, labels: dict[str, str], value: float) -> str:
    """The rule's annotation template with ``$labels.X`` and ``$value`` filled in."""
    def one(m: re.Match[str]) -> str:
        expr = m.group(1)
        if expr.startswith("$labels."):
            return labels[expr[len("$labels."):]]
        fmt = re.fullmatch(r'\$value(?:\s*\|\s*printf\s+"([^"]+)")?', expr)
        if fmt is None:
            raise ValueError(f"cannot render template {expr!r}")
        return (fmt.group(1) or "%g") % value

    # A ``range query`` (the channels behind the score) over series the written test does
    # not carry renders empty in promtool too.
    text = _RANGE_QUERY.sub("", text)
    return _TEMPLATE.sub(one, text)


_RANGE_QUERY = re.compile(r"\{\{\s*range query .*?\{\{\s*end\s*\}\}", re.S)


def _rules() -> dict[str, dict[str, Any]]:
    doc = _yaml().safe_load(RULES.read_text())
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def _ticket_fires(scores: np.ndarray, level: float) -> np.ndarray:
    """VibewatchAnomalyScoreHigh at each evaluation: score at or above the warning level
    for TICKET_FOR_S."""
    firing = np.zeros(len(scores), dtype=bool)
    since: float | None = None
    for k, v in enumerate(scores):
        if not np.isnan(v) and v != STALE and v >= level:
            since = k * SCRAPE_S if since is None else since
            firing[k] = k * SCRAPE_S - since >= TICKET_FOR_S
        else:
            since = None
    return firing


def _checks(
    alert: dict[str, Any], engines: list[str], fires: dict[str, np.ndarray],
    values: dict[str, np.ndarray], extra: list[float],
) -> list[dict[str, Any]]:
    """alert_rule_test entries: the firing engines at every change, the evaluation before
    it, the start, the end and the ``extra`` times."""
    n = len(next(iter(fires.values())))
    keys = {0, n - 1}
    for e in engines:
        changes = np.flatnonzero(np.diff(fires[e].astype(int))) + 1
        keys |= {int(k) for k in changes} | {int(k) - 1 for k in changes}
    keys |= {int(t // SCRAPE_S) for t in extra if 0 <= t // SCRAPE_S < n}
    checks = []
    for k in sorted(keys):
        exp = []
        for e in engines:
            if fires[e][k]:
                labels = {**alert["labels"], **LABELS, "engine_id": e}
                series_labels = {**LABELS, "engine_id": e}
                exp.append({
                    "exp_labels": labels,
                    "exp_annotations": {
                        name: _render(str(text), series_labels, float(values[e][k]))
                        for name, text in alert["annotations"].items()
                    },
                })
        checks.append({"eval_time": duration(k * SCRAPE_S), "alertname": alert["alert"],
                       "exp_alerts": exp})
    return checks


def _group(record: RunRecord, scenario: Scenario, warning_level: float,
           rules: dict[str, dict[str, Any]]) -> dict[str, Any]:
    events = by_engine(record.events)
    span = scenario.span_s
    faulty = [f.engine_id for f in scenario.faults]
    healthy = [e for e in scenario.engine_ids if e not in faulty]
    worst = max(healthy, key=lambda e: max(
        (r.score for p in record.polls for r in p.rows if r.engine_id == e), default=0.0))
    engines = [*faulty, worst]
    status = {e: status_series(record, events.get(e, []), span).astype(float) for e in engines}
    score = {e: score_series(record, e, span) for e in engines}
    n = len(scrape_times(span))
    series = [{"series": 'vibewatch_scoring_level{job="vibewatch",instance="live:8000",'
                         'level="warning"}', "values": f"{warning_level:g}x{n - 1}"}]
    for e in engines:
        labels = f'job="vibewatch",instance="live:8000",engine_id="{e}"'
        series.append({"series": f"vibewatch_engine_status{{{labels}}}",
                       "values": series_values(status[e])})
        series.append({"series": f"vibewatch_engine_anomaly_score{{{labels}}}",
                       "values": series_values(score[e])})
    page = {e: page_fires(status[e].astype(np.int64)) for e in engines}
    ticket = {e: _ticket_fires(score[e], warning_level) for e in engines}
    targets = [f.onset_s + PAGE_DELAY_S for f in scenario.faults]
    checks = (_checks(rules[PAGE], engines, page, status, targets)
              + _checks(rules[TICKET], engines, ticket, score, []))
    return {"interval": duration(SCRAPE_S), "input_series": series, "alert_rule_test": checks}


def write_test(path: Path, records: Sequence[RunRecord], scenario: Scenario,
               warning_level: float, command: str) -> None:
    """Write the promtool unit test of ``records`` (one test group per run) to ``path``."""
    yaml = _yaml()
    rules = _rules()
    groups = [_group(r, scenario, warning_level, rules) for r in records]
    header = [
        "# The live acceptance scenario's series fed to the alert rules (generated; do not edit).",
        f"#   {command}",
        f"# Scenario: {scenario.engines} engines, {scenario.describe()}.",
        "# One test group per run: "
        + "; ".join(f"{r.name}" + (f" ({r.restart.mode} at {duration(r.restart.at_s)}, "
                                   f"down {r.restart.outage_wall_s:.1f} s)"
                                   if r.restart else "") for r in records) + ".",
        "# Series as a Prometheus scraping every 15 s sees them with the simulated time at",
        "# 1x; 'stale': a scrape while the service restarted. Run: promtool test rules FILE",
    ]
    doc = {"rule_files": [os.path.relpath(RULES, path.resolve().parent)],
           "evaluation_interval": duration(SCRAPE_S), "tests": groups}
    path.write_text("\n".join(header) + "\n" + yaml.safe_dump(doc, sort_keys=False, width=100))


def run_promtool(path: Path, runner: Callable[..., Any] = subprocess.run) -> tuple[bool, str]:
    """``promtool test rules path``: (passed, output); (False, why) without promtool."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return False, "promtool not found (Debian package prometheus)"
    proc = runner([promtool, "test", "rules", str(path)], capture_output=True, text=True,
                  timeout=120, check=False)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()
