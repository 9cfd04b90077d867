"""The Prometheus configuration, alert rules and their unit tests, checked by promtool.

promtool comes with Debian's ``prometheus`` package, which ``make test`` installs; without it
these tests fail (not skip) so a missing check never passes silently.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import promtool

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))
OPERATIONS_DOC = ROOT / "docs" / "operations.md"


def _run_promtool(*args: str) -> None:
    """Run promtool from the repository root; fail the test with its output on error."""
    proc = subprocess.run(
        [promtool(), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"promtool {' '.join(args)} exited with {proc.returncode}:\n"
            f"{proc.stdout}\n{proc.stderr}"
        )


def _alerts() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in RULE_FILES:
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            rules.extend(r for r in group["rules"] if "alert" in r)
    return rules


def test_files_exist() -> None:
    assert CONFIG.is_file()
    assert RULE_FILES, "no rule files in deploy/prometheus/rules"
    assert RULE_TESTS, "no promtool unit tests in deploy/prometheus/tests"


def test_config_is_valid() -> None:
    _run_promtool("check", "config", str(CONFIG.relative_to(ROOT)))


def test_rules_are_valid() -> None:
    _run_promtool("check", "rules", *(str(p.relative_to(ROOT)) for p in RULE_FILES))


def test_rule_unit_tests_pass() -> None:
    _run_promtool("test", "rules", *(str(p.relative_to(ROOT)) for p in RULE_TESTS))


def test_every_alert_has_a_firing_unit_test() -> None:
    fired: set[str] = set()
    for path in RULE_TESTS:
        doc = yaml.safe_load(path.read_text())
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    missing = sorted({r["alert"] for r in _alerts()} - fired)
    assert not missing, f"alerts without a unit test that expects them to fire: {missing}"


def test_every_alert_has_severity_summary_and_runbook() -> None:
    doc = OPERATIONS_DOC.read_text()
    for rule in _alerts():
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in {"page", "ticket"}, name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary"), f"{name}: no summary"
        assert annotations.get("runbook_url") == f"docs/operations.md#{name.lower()}", name
        assert f"### {name}\n" in doc, f"{name}: no '### {name}' section in docs/operations.md"
