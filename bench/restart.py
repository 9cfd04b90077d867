"""Restarts at fleet scale: how long until a restarted instance processes again, and its RSS.

Scenario ``restart`` (``bench/run.py --scenarios restart``): for each fleet size, a real
``vibewatch serve`` process consumes ``rate`` readings/s from ``bench/RateProducer.java``
(single-reading messages, round robin over the engines) for ``traffic_s`` seconds, so the
changelog holds what that much traffic leaves behind. Then, with the traffic going on:

1. a graceful restart (SIGTERM, start again: the checkpoint written at shutdown, an empty
   changelog tail);
2. a crash (SIGKILL, start again: the checkpoint of the last interval plus the changelog's
   tail since);

each timed from the new process's start to ready (``/readyz`` 200) and to the first new
reading processed, with the RSS while running before, and the peak and settled RSS after.

Scenario ``failover``: two instances share the traffic; one is killed with SIGKILL; timed
from the kill until the survivor owns every partition and its consumer lag is back under
one second of traffic (the group notices the loss only after ``kafka.session_timeout_ms``).

Scenario ``broker-restart`` (a broker started by the benchmark only): the broker is
stopped and started again under traffic; timed from the broker being ready again to the
service processing again.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data import create_topic
from bench.latency import java_producer

ROOT = Path(__file__).resolve().parent.parent
VIBEWATCH = str(Path(sys.executable).parent / "vibewatch")
PARTITIONS = 6


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Instance:
    """One ``vibewatch serve`` process on its own port; state in ``state_dir``."""

    bootstrap: str
    prefix: str
    readings: str
    state_dir: Path
    instance_id: str = "bench"
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    def env(self) -> dict[str, str]:
        p = self.prefix
        return {
            **os.environ,
            "VIBEWATCH_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "VIBEWATCH_KAFKA__READINGS_TOPIC": self.readings,
            "VIBEWATCH_KAFKA__CHANGELOG_TOPIC": f"{p}.changelog",
            "VIBEWATCH_KAFKA__ANOMALIES_TOPIC": f"{p}.anomalies",
            "VIBEWATCH_KAFKA__DEAD_LETTER_TOPIC": f"{p}.dead-letter",
            "VIBEWATCH_KAFKA__CONTROL_TOPIC": f"{p}.control",
            "VIBEWATCH_KAFKA__GROUP_ID": f"{p}.group",
            "VIBEWATCH_KAFKA__INSTANCE_ID": self.instance_id,
            "VIBEWATCH_API__PORT": str(self.port),
            "VIBEWATCH_STATE__CHECKPOINT_DIR": str(self.state_dir),
            "VIBEWATCH_STATE__MAX_ENGINES": "1000000",
        }

    def start(self) -> Instance:
        log = (self.state_dir / f"{self.instance_id}.log").open("ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([VIBEWATCH, "serve"], env=self.env(), stdout=log,
                                     stderr=subprocess.STDOUT)
        return self

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                body = r.read().decode()
                return r.status, json.loads(body) if path != "/metrics" else body
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except OSError:
            return 0, None

    def metric(self, name: str) -> float:
        """Sum of every sample of ``name`` (0 when the service does not answer yet)."""
        code, text = self.get("/metrics")
        if code != 200:
            return 0.0
        return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$",
                                                  text, re.M))

    def rss_mib(self) -> tuple[float, float]:
        """(current, peak) resident memory of the process, MiB."""
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        return rss / 1024, hwm / 1024

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 120.0) -> float:
        """Signal the process and wait for it; returns the seconds it took to exit."""
        assert self.proc is not None
        t = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return time.monotonic() - t


def _wait(check: Any, timeout_s: float, what: str, interval_s: float = 0.05) -> float:
    """Poll ``check`` until truthy; the monotonic time it became so."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _restart(inst: Instance, sig: int, rate: float) -> dict[str, float]:
    """Stop ``inst`` with ``sig``, start it again, time it back to processing."""
    rss_before, _ = inst.rss_mib()
    stop_s = inst.stop(sig)
    inst.start()
    t_ready = _wait(lambda: inst.get("/readyz")[0] == 200, 600, "ready")
    t_proc = _wait(lambda: inst.metric('vibewatch_readings_total{outcome="processed"}') > 0
                   or False, 600, "processing")
    peak = inst.rss_mib()[1]
    # caught up: lag below one second of traffic
    t_caught = _wait(lambda: inst.metric("vibewatch_consumer_lag_messages") < rate, 900,
                     "caught up", interval_s=0.5)
    time.sleep(10)  # let the heap settle (malloc_trim runs every state.trim_interval_s)
    settled, peak2 = inst.rss_mib()
    return {
        "stop_s": round(stop_s, 2),
        "to_ready_s": round(t_ready - inst.started, 2),
        "to_processing_s": round(t_proc - inst.started, 2),
        "to_caught_up_s": round(t_caught - inst.started, 2),
        "rss_running_mib": round(rss_before, 1),
        "rss_peak_mib": round(max(peak, peak2), 1),
        "rss_settled_mib": round(settled, 1),
        "rss_peak_ratio": round(max(peak, peak2) / rss_before, 2),
    }


def restart(bootstrap: str, engines: int, rate: float, traffic_s: float) -> dict[str, Any]:
    """The ``restart`` scenario for one fleet size (see the module doc)."""
    prefix = f"bench-restart-{engines}-{uuid.uuid4().hex[:6]}"
    readings = f"{prefix}.readings"
    create_topic(bootstrap, readings, PARTITIONS)
    with tempfile.TemporaryDirectory(prefix="vibewatch-restart-") as tmp:
        inst = Instance(bootstrap, prefix, readings, Path(tmp))
        inst.start()
        _wait(lambda: inst.get("/readyz")[0] == 200, 120, "first ready")
        total_s = traffic_s + 1200  # and through both restarts
        prod = java_producer(bootstrap, readings, rate, engines, total_s, time.time())
        if prod is None:
            raise RuntimeError("the restart scenario needs java and the broker jars")
        try:
            _wait(lambda: inst.metric("vibewatch_engines_tracked") >= engines, traffic_s + 300,
                  "every engine seen", interval_s=1.0)
            began = time.monotonic()
            while time.monotonic() - began < traffic_s:
                time.sleep(min(5.0, traffic_s))
            out: dict[str, Any] = {
                "engines": engines, "rate": rate, "traffic_s": traffic_s,
                "readings_before_restart": inst.metric(
                    'vibewatch_readings_total{outcome="processed"}'),
            }
            out["graceful"] = _restart(inst, signal.SIGTERM, rate)
            out["kill9"] = _restart(inst, signal.SIGKILL, rate)
            return out
        finally:
            prod.kill()
            prod.wait()
            inst.stop()


def failover(bootstrap: str, engines: int, rate: float, warm_s: float = 30.0) -> dict[str, Any]:
    """The ``failover`` scenario: SIGKILL one of two instances under traffic."""
    prefix = f"bench-failover-{uuid.uuid4().hex[:6]}"
    readings = f"{prefix}.readings"
    create_topic(bootstrap, readings, PARTITIONS)
    with tempfile.TemporaryDirectory(prefix="vibewatch-failover-") as tmp:
        a = Instance(bootstrap, prefix, readings, Path(tmp) / "a", "a")
        b = Instance(bootstrap, prefix, readings, Path(tmp) / "b", "b")
        for inst in (a, b):
            inst.state_dir.mkdir()
            inst.start()
        prod = java_producer(bootstrap, readings, rate, engines, warm_s + 600, time.time())
        if prod is None:
            raise RuntimeError("the failover scenario needs java and the broker jars")
        try:
            for inst in (a, b):
                _wait(lambda inst=inst: inst.get("/readyz")[0] == 200, 120, "ready")
            time.sleep(warm_s)
            t_kill = time.monotonic()
            a.stop(signal.SIGKILL)

            def owns_all() -> bool:
                code, body = b.get("/readyz")
                return code == 200 and body["detail"].startswith(
                    "ready; owns partitions [0, 1, 2, 3, 4, 5]")

            t_owned = _wait(owns_all, 300, "the survivor to own every partition")
            t_caught = _wait(lambda: b.metric("vibewatch_consumer_lag_messages") < rate, 600,
                             "the survivor to catch up", interval_s=0.2)
            return {"engines": engines, "rate": rate,
                    "to_owning_all_s": round(t_owned - t_kill, 2),
                    "to_caught_up_s": round(t_caught - t_kill, 2)}
        finally:
            prod.kill()
            prod.wait()
            b.stop()


def broker_restart(broker: Any, engines: int, rate: float, down_s: float = 5.0
                   ) -> dict[str, Any]:
    """The ``broker-restart`` scenario on the benchmark's own broker ``broker``."""
    bootstrap = str(broker.bootstrap)
    prefix = f"bench-brokerrestart-{uuid.uuid4().hex[:6]}"
    readings = f"{prefix}.readings"
    create_topic(bootstrap, readings, PARTITIONS)
    with tempfile.TemporaryDirectory(prefix="vibewatch-brokerrestart-") as tmp:
        inst = Instance(bootstrap, prefix, readings, Path(tmp)).start()
        prod = java_producer(bootstrap, readings, rate, engines, 900, time.time())
        if prod is None:
            raise RuntimeError("the broker-restart scenario needs java and the broker jars")
        try:
            _wait(lambda: inst.get("/readyz")[0] == 200, 120, "ready")
            time.sleep(20)
            broker.stop()
            _wait(lambda: inst.get("/readyz")[0] == 503, 120, "not ready without the broker")
            time.sleep(down_s)
            broker.start()
            t_back = time.monotonic()
            before = inst.metric('vibewatch_readings_total{outcome="processed"}')
            t_proc = _wait(
                lambda: inst.metric('vibewatch_readings_total{outcome="processed"}') > before,
                300, "processing again")
            t_ready = _wait(lambda: inst.get("/readyz")[0] == 200, 300, "ready again")
            return {"engines": engines, "rate": rate, "down_s": down_s,
                    "to_processing_s": round(t_proc - t_back, 2),
                    "to_ready_s": round(t_ready - t_back, 2)}
        finally:
            prod.kill()
            prod.wait()
            inst.stop()
