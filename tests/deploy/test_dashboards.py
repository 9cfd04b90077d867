"""Grafana dashboards and provisioned alert rules: structure, and every PromQL expression.

Without a Grafana server the checks are: the JSON and YAML parse; every data panel has a data
source and a unique id; every expression names only metrics that ``service/metrics.py``
defines (collected from a fresh registry, not hard-coded) or Prometheus built-ins; promtool
parses every expression; the Grafana alert rules mirror the Prometheus ones; and
Grafana's dashboard-linter passes when it is installed.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from service.metrics import Metrics
from tests.deploy.tools import promtool

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
GRAFANA_ALERTS = sorted((GRAFANA / "provisioning" / "alerting").glob("*.yml"))
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROMETHEUS_RULES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))

#: Series that Prometheus itself adds to every scrape or rule evaluation.
PROMETHEUS_BUILTINS = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
        "ALERTS",
        "ALERTS_FOR_STATE",
    }
)

_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "unknown": ("",),
}

_KEYWORDS = frozenset(
    {
        "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
        "group_left", "group_right", "inf", "nan", "atan2", "start", "end",
    }
)  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.:$])[A-Za-z_:][A-Za-z0-9_:]*")
_GRAFANA_DURATION = re.compile(r"\$(?:__|\{__)(?:rate_interval|interval|range)\b\}?")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<expr>.*),\s*[A-Za-z_]\w*\s*\)\s*$", re.S)


def defined_metric_names() -> set[str]:
    """Sample names the service exports, from a fresh registry (no hard-coded list)."""
    registry = CollectorRegistry()
    Metrics(registry)
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, keywords,
    label names, durations or strings."""
    text = _GRAFANA_DURATION.sub("5m", expr)
    text = _STRING.sub('""', text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def promql_for_promtool(expr: str) -> str:
    """The expression with Grafana's interval variables replaced so promtool can parse it."""
    return _GRAFANA_DURATION.sub("5m", expr)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _load_dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in DASHBOARDS}


def _load_grafana_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in GRAFANA_ALERTS:
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            rules.extend(group["rules"])
    return rules


def _load_prometheus_alerts() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in PROMETHEUS_RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(r for r in group["rules"] if "alert" in r)
    return rules


def all_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for every expression in the dashboards and both sets of alert rules."""
    found: list[tuple[str, str]] = []
    for name, dash in _load_dashboards().items():
        for panel in _panels(dash["panels"]):
            for target in panel.get("targets", []):
                found.append((f"{name} panel {panel['title']!r} {target['refId']}", target["expr"]))
        for var in dash["templating"]["list"]:
            if var["type"] == "query":
                query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
                match = _LABEL_VALUES.match(query)
                assert match, f"{name} variable {var['name']}: expected label_values(), got {query}"
                found.append((f"{name} variable {var['name']}", match["expr"]))
    for rule in _load_grafana_rules():
        for query in rule["data"]:
            if "expr" in query["model"]:
                where = f"Grafana rule {rule['title']} {query['refId']}"
                found.append((where, query["model"]["expr"]))
    for rule in _load_prometheus_alerts():
        found.append((f"Prometheus rule {rule['alert']}", rule["expr"]))
    return found


def _provisioned_datasource_uid() -> str:
    doc = yaml.safe_load(DATASOURCES.read_text())
    (source,) = doc["datasources"]
    assert source["type"] == "prometheus"
    uid: str = source["uid"]
    return uid


# --- the metric-name extractor itself ------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('sum by (le) (rate(a_bucket{job=~"$job"}[$__rate_interval]))', {"a_bucket"}),
        ("topk(10, b) > on (instance) group_left (version) c_info", {"b", "c_info"}),
        ('time() - d{engine_id="x-1"} > 600 and on (job) e == bool 1', {"d", "e"}),
        ("histogram_quantile(0.99, f[5m] offset 1h) * 1e3", {"f"}),
        ('absent(up{job="vibewatch"}) or vector(0)', {"up"}),
    ],
)
def test_metric_names_extracts_only_selected_metrics(expr: str, expected: set[str]) -> None:
    assert metric_names(expr) == expected


def test_defined_metric_names_come_from_the_registry() -> None:
    names = defined_metric_names()
    assert "vibewatch_readings_total" in names
    assert "vibewatch_batch_duration_seconds_bucket" in names
    assert "vibewatch_model_info" in names
    assert "vibewatch_ready" in names


# --- dashboards ------------------------------------------------------------------------------


def test_dashboards_exist() -> None:
    assert {p.name for p in DASHBOARDS} >= {"fleet.json", "engine.json"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    dash = json.loads(path.read_text())
    assert dash["uid"] and len(dash["uid"]) <= 40
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert "datasource" in variables, "panels select the data source through $datasource"
    ids: list[int] = []
    for panel in _panels(dash["panels"]):
        ids.append(panel["id"])
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] == "row":
            continue
        where = f"{path.name} panel {panel['id']} {panel['title']!r}"
        assert panel.get("datasource", {}).get("uid"), f"{where}: no data source"
        assert panel.get("targets"), f"{where}: no queries"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), f"{where}: duplicate refId"
        for target in panel["targets"]:
            assert target.get("datasource", {}).get("uid"), f"{where}: query without data source"
            assert target.get("expr", "").strip(), f"{where}: empty query"
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"{path.name}: duplicate panel ids {duplicates}"


def test_dashboard_uids_are_unique_and_linked() -> None:
    dashboards = _load_dashboards()
    uids = [d["uid"] for d in dashboards.values()]
    assert len(uids) == len(set(uids))
    engine = dashboards["engine.json"]
    assert "engine_id" in {v["name"] for v in engine["templating"]["list"]}
    fleet_text = json.dumps(dashboards["fleet.json"])
    assert f"/d/{engine['uid']}/" in fleet_text, "fleet dashboard should link to the drill-down"


# --- every expression ------------------------------------------------------------------------


def test_every_expression_uses_known_metrics() -> None:
    defined = defined_metric_names()
    allowed = defined | PROMETHEUS_BUILTINS
    unknown = {
        where: sorted(metric_names(expr) - allowed)
        for where, expr in all_expressions()
        if metric_names(expr) - allowed
    }
    assert not unknown, f"metrics that service/metrics.py does not define: {unknown}"


def test_every_expression_parses_with_promtool(tmp_path: Path) -> None:
    expressions = all_expressions()
    rules = {
        "groups": [
            {
                "name": "parse-check",
                "rules": [
                    {"record": f"parse_check:expr_{i}", "expr": promql_for_promtool(expr)}
                    for i, (_, expr) in enumerate(expressions)
                ],
            }
        ]
    }
    path = tmp_path / "expressions.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    proc = subprocess.run(
        [promtool(), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        index = "\n".join(f"  expr_{i}: {where}" for i, (where, _) in enumerate(expressions))
        pytest.fail(f"promtool rejects an expression:\n{proc.stdout}\n{proc.stderr}\n{index}")


# --- Grafana alert rules -----------------------------------------------------------------------


def _score_panels() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path, dashboard in _load_dashboards().items():
        for panel in _panels(dashboard["panels"]):
            exprs = [t.get("expr", "") for t in panel.get("targets", [])]
            # the score itself (not "count by (instance) (score)": who scores it)
            if exprs and "vibewatch_engine_anomaly_score" in exprs[0] \
                    and not exprs[0].startswith("count"):
                out.append((f"{path}: {panel['title']}", panel))
    return out


def test_score_panels_agree_with_the_scoring_levels() -> None:
    """Scores have no upper bound and the levels are the scoring defaults: a score panel
    is no percentage, has no maximum of 1, and is orange from the warning level and red from
    the alarm level, so its colour agrees with the engine's status."""
    from service.config import ScoringSettings

    s = ScoringSettings()
    panels = _score_panels()
    assert len(panels) >= 3, [name for name, _ in panels]
    for name, panel in panels:
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults.get("unit") != "percentunit", name
        assert defaults.get("max") is None, name
        steps = defaults.get("thresholds", {}).get("steps")
        if steps is None:
            continue
        assert [(x["color"], x["value"]) for x in steps] == [
            ("green", None), ("orange", s.warning_score), ("red", s.alarm_score)], name


def test_overrides_name_a_series_of_their_panel() -> None:
    """A ``byName`` override styles the series whose legend it names; a name no target
    produces styles nothing (the engine view's alarm level was drawn as a plain line while
    its override named an "alarm threshold" series that no longer existed)."""
    unmatched = []
    for path, dashboard in _load_dashboards().items():
        for panel in _panels(dashboard["panels"]):
            legends = [t.get("legendFormat", "") for t in panel.get("targets", [])]
            if any("{{" in legend for legend in legends):
                continue  # names come from label values, known only at query time
            for override in panel.get("fieldConfig", {}).get("overrides", []):
                matcher = override["matcher"]
                if matcher.get("id") == "byName" and matcher.get("options") not in legends:
                    unmatched.append(f"{path}: {panel['title']}: {matcher.get('options')!r} "
                                     f"(series {legends})")
    assert not unmatched, unmatched


def test_grafana_alert_rules_are_well_formed() -> None:
    uid = _provisioned_datasource_uid()
    rules = _load_grafana_rules()
    assert rules
    uids = [r["uid"] for r in rules]
    assert len(uids) == len(set(uids)), "duplicate Grafana alert rule uid"
    for rule in rules:
        title = rule["title"]
        assert len(rule["uid"]) <= 40, title
        ref_ids = {q["refId"] for q in rule["data"]}
        assert rule["condition"] in ref_ids, f"{title}: condition refers to no query"
        for query in rule["data"]:
            assert query["datasourceUid"] in {uid, "__expr__"}, f"{title}: unknown data source"
            assert query["model"]["refId"] == query["refId"], title
        assert rule["noDataState"] in {"OK", "NoData", "Alerting"}, title
        assert rule["execErrState"] in {"OK", "Error", "Alerting"}, title
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{title.lower()}"


def test_grafana_alert_rules_mirror_prometheus_rules() -> None:
    grafana = {r["title"]: r for r in _load_grafana_rules()}
    prometheus = {r["alert"]: r for r in _load_prometheus_alerts()}
    assert set(grafana) == set(prometheus)
    for name, prom in prometheus.items():
        assert grafana[name]["for"] == prom.get("for", "0s"), f"{name}: different `for`"
        assert grafana[name]["labels"]["severity"] == prom["labels"]["severity"], name


# --- Grafana's own linter --------------------------------------------------------------------


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_linter(path: Path) -> None:
    linter = shutil.which("dashboard-linter")
    if linter is None:
        pytest.skip(
            "dashboard-linter not installed (go install github.com/grafana/dashboard-linter@latest)"
        )
    proc = subprocess.run(
        [linter, "lint", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, f"dashboard-linter on {path.name}:\n{proc.stdout}\n{proc.stderr}"


# --- deploy/prometheus/dashboard_snapshot.py (the README picture) ------------------------------


def _snapshot_module() -> Any:
    path = ROOT / "deploy" / "prometheus" / "dashboard_snapshot.py"
    spec = importlib.util.spec_from_file_location("dashboard_snapshot", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


def test_snapshot_draws_every_panel_type_and_resolves_every_variable() -> None:
    snapshot = _snapshot_module()
    for name, dash in _load_dashboards().items():
        for panel in _panels(dash["panels"]):
            assert panel["type"] in snapshot.SUPPORTED_PANELS, f"{name}: {panel['type']}"
            for target in panel.get("targets", []):
                expr = snapshot.substitute(target["expr"], {}, 3600, "1m")
                assert "$" not in expr, f"{name} {panel['title']}: {expr}"


def test_snapshot_renders_offline(tmp_path: Path) -> None:
    """Draw both dashboards from made-up query results: no Prometheus needed."""
    snapshot = _snapshot_module()
    end = 1_790_000_000.0
    times = [end - 600 + 15 * i for i in range(41)]
    for name, dash in _load_dashboards().items():
        results = {}
        for panel in _panels(dash["panels"]):
            results[panel["id"]] = [
                snapshot.QueryResult(
                    target.get("legendFormat", "__auto"),
                    [
                        snapshot.Series(
                            {"engine_id": f"engine-{k}", "status": "alarm", "version": "1"},
                            times,
                            [0.1 * k + 0.01 * (i % 7) for i in range(len(times))],
                        )
                        for k in range(3)
                    ],
                )
                for target in panel.get("targets", [])
            ]
        fig = snapshot.render(dash, results, end, 600.0)
        out = tmp_path / f"{name}.png"
        fig.savefig(out, dpi=40)
        assert out.stat().st_size > 10_000


def test_snapshot_draws_the_axis_scale_the_panel_asks_for() -> None:
    """Scores have no ceiling: the engine view's score panel is on a symlog axis (linear up
    to 1, log above) so the levels stay readable beside scores in the hundreds, in Grafana and
    in the snapshot alike."""
    from matplotlib.figure import Figure

    snapshot = _snapshot_module()
    (panel,) = [p for name, dash in _load_dashboards().items() if name.startswith("engine")
                for p in _panels(dash["panels"]) if p["title"].startswith("Anomaly score and")]
    scale = panel["fieldConfig"]["defaults"]["custom"]["scaleDistribution"]
    assert scale == {"type": "symlog", "log": 10, "linearThreshold": 1}
    times = [1_790_000_000.0 + 15 * i for i in range(40)]
    results = [snapshot.QueryResult("score", [snapshot.Series({}, times, [
        0.0 if i < 20 else 10.0 ** (i / 10) for i in range(40)])])]
    asked = panel["fieldConfig"]["defaults"]["custom"]
    for custom, expected in ((asked, "symlog"), ({}, "linear")):
        shown = {**panel, "fieldConfig": {"defaults": {"custom": custom}}}
        ax = Figure().subplots()
        snapshot.draw_timeseries(ax, shown, results)
        assert ax.get_yscale() == expected
