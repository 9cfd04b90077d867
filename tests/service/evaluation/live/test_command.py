"""``vibewatch evaluate live`` end to end, in a quick form: five engines, 13 minutes of
simulated time at 60x, a restart, a re-baseline, on the test broker (about a minute)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.cli import main
from tests.deploy.tools import promtool

pytestmark = pytest.mark.integration

QUICK = ["--engines", "5", "--span", "13m", "--speed", "60",
         "--fault", "engine-0001:wear@11m", "--fault", "engine-0002:step@11m+1m",
         "--fault", "engine-0003:intermittent@11m",
         "--rebaseline", "engine-0002@12m20s", "--restart", "term@12m"]


def test_quick_live_scenario(kafka_bootstrap: str, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    promtool()  # the command runs the test it writes; fail (not skip) without promtool
    report_path, rules_test = tmp_path / "live.json", tmp_path / "live.test.yml"
    argv = ["evaluate", "live", "--bootstrap", kafka_bootstrap, *QUICK,
            "--json", str(report_path), "--promtool-test", str(rules_test)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert set(report) == {"scenario", "scoring", "runs", "passed", "promtool"}
    assert report["scenario"]["engines"] == 5 and report["scenario"]["speed"] == 60
    runs = report["runs"]
    assert [r["name"] for r in runs] == ["no restart", "restart (term)"]
    assert runs[0]["restart"] is None
    restart = runs[1]["restart"]
    assert restart["mode"] == "term" and restart["exit_code"] == 0
    assert restart["outage_wall_s"] > 0 and restart["catch_up_wall_s"] is not None
    for run in runs:
        assert run["readings"] == 5 * 13 * 60 * 4
        assert isinstance(run["passed"], bool) and isinstance(run["missed"], list)
        faults = {f["engine_id"]: f for f in run["faults"]}
        assert set(faults) == {"engine-0001", "engine-0002", "engine-0003"}
        for f in faults.values():
            # every fault is alarmed, after its onset
            assert f["first_alarm_s"] is not None and f["first_alarm_s"] >= f["onset_s"], f
            assert f["delay_s"] == pytest.approx(f["first_alarm_s"] - f["onset_s"])
            assert f["raises"] >= 1
        assert faults["engine-0001"]["held"] in (True, False)
        rb = run["rebaseline"]
        assert rb["http_status"] == 202 and rb["applied"] and rb["previous"] == "alarm"
        assert set(run["false_alarms"]) <= {"engine-0000", "engine-0004"}
    assert report["promtool"]["passed"], report["promtool"]["output"]
    assert rules_test.is_file()
    for line in ("no restart:", "restart (term):", "engine-0001 wear", "engine-0003 intermittent",
                 "re-baseline engine-0002 at 12:20: HTTP 202", "promtool test rules"):
        assert line in printed, printed
