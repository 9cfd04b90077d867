"""The alert rules' score thresholds and the scoring settings have one source.

The service exports its scoring levels (``vibewatch_scoring_level{level=...}``, set from
``scoring.*_score``); every rule about anomaly scores compares against that series, never
against a number copied from the settings. These tests fail when a rule (Prometheus or
Grafana) holds a literal threshold for a score, or when the exported levels stop following
the settings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from service.config import load_settings
from service.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_RULES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
GRAFANA_RULES = ROOT / "deploy" / "grafana" / "provisioning" / "alerting" / "vibewatch-alerts.yml"
SCORE = "vibewatch_engine_anomaly_score"
LEVEL = "vibewatch_scoring_level"
NUMBER = re.compile(r"(?<![\w.])\d*\.\d+|(?<![\w.])[1-9]\d*(?![\w.\]smhd])")


def _prometheus_exprs() -> dict[str, str]:
    out: dict[str, str] = {}
    for path in PROMETHEUS_RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            out |= {r["alert"]: r["expr"] for r in group["rules"] if "alert" in r}
    return out


def _grafana_exprs() -> dict[str, str]:
    out = {}
    for group in yaml.safe_load(GRAFANA_RULES.read_text())["groups"]:
        for rule in group["rules"]:
            models: list[dict[str, Any]] = [d["model"] for d in rule["data"]]
            query = " ".join(m.get("expr", "") for m in models)
            condition = " ".join(m.get("expression", "") for m in models)
            out[rule["title"]] = f"{query} ;; {condition}"
    return out


@pytest.mark.parametrize("exprs", [_prometheus_exprs(), _grafana_exprs()],
                         ids=["prometheus", "grafana"])
def test_score_rules_compare_with_the_exported_levels_not_numbers(
    exprs: dict[str, str]
) -> None:
    score_rules = {name: e for name, e in exprs.items() if SCORE in e}
    assert score_rules, "no rule about anomaly scores: this test checks nothing"
    for name, expr in score_rules.items():
        assert f'{LEVEL}{{level="warning"}}' in expr or f'{LEVEL}{{level="alarm"}}' in expr, name
        query = expr.split(";;")[0]
        assert not NUMBER.findall(query), f"{name}: a literal threshold in {query!r}"


def test_the_number_check_catches_a_copied_threshold() -> None:
    assert NUMBER.findall(f"{SCORE} >= 0.25")
    assert NUMBER.findall(f"{SCORE} > 1")
    assert not NUMBER.findall(f'{SCORE} >= on (job) group_left {LEVEL}{{level="warning"}}')


def test_the_service_exports_the_levels_of_its_settings() -> None:
    settings = load_settings(scoring={"warning_score": 0.41, "alarm_score": 0.52,
                                      "clear_score": 0.2})
    registry = CollectorRegistry()
    Runtime(settings, registry=registry)
    for level in ("warning", "alarm", "clear"):
        exported = registry.get_sample_value(LEVEL, {"level": level})
        assert exported == getattr(settings.scoring, f"{level}_score"), level
