"""Cold start: ``vibewatch serve`` process start to ``/readyz`` 200, and its RSS.

The service is a real subprocess with its default settings (fleet view on), on its own
topics of the benchmark's broker. After it is ready, 10,000 engines x 10 readings (batch
messages of 10) are produced; once all are processed its VmRSS and VmHWM are read from
/proc/<pid>/status twice: 1 s after the last reading was processed, and again after one
``state.trim_interval_s`` (the service returns freed heap memory to the OS that often; the
second figure is what it settles at).
"""

from __future__ import annotations

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
from pathlib import Path
from typing import Any

from bench.data import Dataset, create_topic, fill
from bench.machine import hwm_kib, rss_kib
from service.config import StateSettings

VIBEWATCH = str(Path(sys.executable).parent / "vibewatch")
TRIM_INTERVAL_S = StateSettings().trim_interval_s


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), ""
    except OSError:
        return 0, ""


def run_coldstart(bootstrap: str, artifact: Path, engines: int = 10_000,
                  ticks: int = 10, progress: bool = True,
                  fleet_view: bool = True) -> dict[str, Any]:
    """Start ``vibewatch serve``, time it to ready, load ``engines`` engines, read its RSS.

    ``fleet_view=False`` turns off the changelog-tailing fleet view (``api.fleet_view``),
    which keeps a second store of every engine, to show what it costs.
    """
    prefix = f"bench-cold-{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.readings"
    create_topic(bootstrap, topic)
    port = _free_port()
    env = {**os.environ,
           "VIBEWATCH_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
           "VIBEWATCH_KAFKA__READINGS_TOPIC": topic,
           "VIBEWATCH_KAFKA__DEAD_LETTER_TOPIC": f"{prefix}.dead-letter",
           "VIBEWATCH_KAFKA__CONTROL_TOPIC": f"{prefix}.control",
           "VIBEWATCH_KAFKA__ANOMALIES_TOPIC": f"{prefix}.anomalies",
           "VIBEWATCH_KAFKA__CHANGELOG_TOPIC": f"{prefix}.changelog",
           "VIBEWATCH_KAFKA__GROUP_ID": f"{prefix}.group",
           "VIBEWATCH_KAFKA__INSTANCE_ID": prefix,
           "VIBEWATCH_KAFKA__SESSION_TIMEOUT_MS": "6000",
           "VIBEWATCH_KAFKA__HEARTBEAT_INTERVAL_MS": "2000",
           "VIBEWATCH_MODEL__ARTIFACT_DIR": str(artifact),
           "VIBEWATCH_API__PORT": str(port),
           "VIBEWATCH_API__FLEET_VIEW": "true" if fleet_view else "false"}
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen([VIBEWATCH, "serve"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            t_http = 0.0
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"serve exited: {log.read()[-2000:].decode()}")
                code, _ = _get(f"{base}/readyz")
                if code and not t_http:
                    t_http = time.perf_counter() - t0
                if code == 200:
                    ready_s = time.perf_counter() - t0
                    break
                if time.perf_counter() - t0 > 120:
                    raise RuntimeError("serve not ready in 120 s")
                time.sleep(0.02)
            rss_ready = rss_kib(proc.pid)
            ds = Dataset(topic, engines, ticks, batch=ticks)
            fill(bootstrap, ds, progress=progress)
            want = float(ds.readings)
            deadline = time.perf_counter() + 300
            while time.perf_counter() < deadline:
                _, text = _get(f"{base}/metrics")
                m = re.search(r'^vibewatch_readings_total\{outcome="processed"\} (\S+)$',
                              text, re.M)
                if m and float(m.group(1)) >= want:
                    break
                time.sleep(0.2)
            else:
                raise RuntimeError("serve did not process the 10k-engine fleet in 300 s")
            time.sleep(1.0)  # let the last commit and the fleet view settle
            rss_loaded, hwm = rss_kib(proc.pid), hwm_kib(proc.pid)
            time.sleep(TRIM_INTERVAL_S + 1.0)
            rss_settled = rss_kib(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {"fleet_view": fleet_view, "ready_s": round(ready_s, 2), "http_up_s": round(t_http, 2),
            "rss_ready_mib": round(rss_ready / 1024, 1), "engines": engines,
            "rss_loaded_mib": round(rss_loaded / 1024, 1),
            "rss_settled_mib": round(rss_settled / 1024, 1), "hwm_mib": round(hwm / 1024, 1)}
