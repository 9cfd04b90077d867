"""Alertmanager: the configuration loads, routes by severity, inhibits per-engine alerts of
an instance that is not ready, and delivers to its receivers.

``amtool`` and ``prometheus-alertmanager`` come from Debian's ``prometheus-alertmanager``
package, which ``make test`` installs; without them these tests fail (not skip). The live
test runs a real Alertmanager on loopback with the committed configuration, only the
receivers' URLs pointed at a local deploy/alertmanager/alert_log.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import require
from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
ALERT_LOG = ROOT / "deploy" / "alertmanager" / "alert_log.py"
PACKAGE = "prometheus-alertmanager"


def _amtool(*args: str) -> str:
    proc = subprocess.run([require("amtool", PACKAGE), *args], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 0, f"amtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_amtool_check_config() -> None:
    out = _amtool("check-config", str(CONFIG))
    assert "SUCCESS" in out


@pytest.mark.parametrize(("labels", "receiver"), [
    (["severity=page", "alertname=VibewatchDown"], "page"),
    (["severity=ticket", "alertname=VibewatchEngineSilent"], "ticket"),
    (["alertname=SomethingElse"], "ticket"),
])
def test_alerts_are_routed_by_severity(labels: list[str], receiver: str) -> None:
    out = _amtool("config", "routes", "test", f"--config.file={CONFIG}", *labels)
    assert out.strip() == receiver


def test_every_rule_severity_has_a_route() -> None:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/vibewatch-alerts.yml").read_text())
    severities = {r["labels"]["severity"] for g in rules["groups"] for r in g["rules"]}
    routes = yaml.safe_load(CONFIG.read_text())["route"]["routes"]
    routed = {m.split("=")[1].strip('"') for r in routes for m in r["matchers"]}
    assert severities <= routed


class _Sink:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.log = tmp / "alert-log.out"
        self.proc = subprocess.Popen(
            [sys.executable, str(ALERT_LOG), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=self.log.open("w"), stderr=subprocess.DEVNULL,
        )
        wait_for(self._listening, 10, "alert_log.py to listen")

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def lines(self) -> list[str]:
        """Complete lines only: the sink may be writing one."""
        text = self.log.read_text()
        return text.splitlines()[: text.count("\n")]


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[str, _Sink]]:
    binary = require("prometheus-alertmanager", PACKAGE)
    sink = _Sink(tmp_path)
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = hook["url"].replace("http://alert-log:9095",
                                              f"http://127.0.0.1:{sink.port}")
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'alertmanager.yml'}",
         f"--storage.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address="],
        stdout=(tmp_path / "am.log").open("w"), stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get(f"{base}/-/ready") is not None, 30, "Alertmanager to be ready")
        yield base, sink
    finally:
        for p in (proc, sink.proc):
            p.terminate()
            p.wait(10)


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            body = resp.read()
            return json.loads(body) if body.startswith((b"[", b"{")) else body
    except OSError:
        return None


def _alert(name: str, instance: str, **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, "job": "vibewatch", "instance": instance, **labels},
            "annotations": {"summary": f"{name} on {instance}"}}


def test_per_engine_alerts_wait_while_their_instance_is_not_ready(
    alertmanager: tuple[str, _Sink]
) -> None:
    base, sink = alertmanager
    alerts = [
        _alert("VibewatchNotReady", "a:8000", severity="page"),
        _alert("VibewatchEngineInAlarm", "a:8000", severity="page", scope="engine",
               engine_id="engine-001"),
        _alert("VibewatchEngineInAlarm", "b:8000", severity="page", scope="engine",
               engine_id="engine-002"),
        _alert("VibewatchEngineSilent", "b:8000", severity="ticket", scope="engine",
               engine_id="engine-003"),
    ]
    request = urllib.request.Request(f"{base}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200

    def states() -> dict[str, str] | None:
        got = _get(f"{base}/api/v2/alerts") or []
        out = {f"{a['labels']['alertname']}@{a['labels']['instance']}": a["status"]["state"]
               for a in got}
        return out if len(out) == len(alerts) else None

    assert wait_for(states, 30, "the alerts in Alertmanager") == {
        "VibewatchNotReady@a:8000": "active",
        "VibewatchEngineInAlarm@a:8000": "suppressed",  # inhibited: a is not ready
        "VibewatchEngineInAlarm@b:8000": "active",
        "VibewatchEngineSilent@b:8000": "active",
    }
    # Pages reach the page receiver within its group_wait (10 s); the ticket waits 2 min.
    lines = wait_for(lambda: (sink.lines() if len(sink.lines()) >= 2 else None), 40,
                     "the page notifications")
    delivered = {(n["receiver"], n["labels"]["alertname"], n["labels"]["instance"])
                 for n in map(json.loads, lines)}
    assert delivered == {("page", "VibewatchNotReady", "a:8000"),
                         ("page", "VibewatchEngineInAlarm", "b:8000")}
