"""API latency at fleet scale while ingesting, and what the API load costs the ingestion.

One ``vibewatch serve`` process (the real service, HTTP included) on its own topics; the
Java load generator (``bench/RateProducer.java``) sends ``rate`` readings/s round-robin over
``engines`` engines for the whole run. Once every engine is tracked:

- phase A, ``seconds`` without API load: readings processed per second (the service's own
  ``vibewatch_readings_total`` counter, read at the phase's ends) and consumer lag;
- phase B, the same with ``clients`` concurrent HTTP clients (wrk, closed loop: each sends
  its next request when the previous answer arrived) on ``GET /engines?sort=score&limit=50``:
  wrk's latency percentiles and requests/s, and the processed rate again.

Ingestion "within 5 %" compares B's processed rate with A's (both are the offered rate
while the service keeps up; the lag at the end of each phase says whether it did).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from kafka.admin import KafkaAdminClient, NewTopic

from bench.latency import java_producer
from bench.machine import load_average

ROOT = Path(__file__).resolve().parent.parent
VIBEWATCH = str(Path(sys.executable).parent / "vibewatch")
QUERY = "/engines?sort=score&limit=50"


def _metrics(base: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {"lag": 0.0}
    for line in text.splitlines():
        if line.startswith('vibewatch_readings_total{outcome="processed"}'):
            out["processed"] = float(line.split()[-1])
        elif line.startswith("vibewatch_engines_tracked "):
            out["engines"] = float(line.split()[-1])
        elif line.startswith("vibewatch_consumer_lag_messages{"):
            out["lag"] += float(line.split()[-1])
        elif line.startswith("process_resident_memory_bytes "):
            out["rss_mib"] = float(line.split()[-1]) / 2**20
    return out


def _wait(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            got = check()
        except OSError:
            got = None
        if got:
            return got
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def _phase(base: str, seconds: float, load: list[str] | None) -> dict[str, Any]:
    """Processed readings/s over ``seconds``, with ``load`` (a wrk command) running."""
    before, t0 = _metrics(base), time.monotonic()
    wrk = subprocess.Popen(load, stdout=subprocess.PIPE, text=True) if load else None
    if wrk is not None:
        out, _ = wrk.communicate(timeout=seconds + 60)
    else:
        time.sleep(seconds)
        out = ""
    after, t1 = _metrics(base), time.monotonic()
    res: dict[str, Any] = {
        "seconds": round(t1 - t0, 2),
        "processed_per_s": round((after["processed"] - before["processed"]) / (t1 - t0), 1),
        "lag_end": after["lag"], "rss_mib_end": round(after.get("rss_mib", 0.0), 1),
        "load_1m_end": load_average()[0],
    }
    if wrk is not None:
        res["wrk"] = parse_wrk(out)
    return res


def parse_wrk(text: str) -> dict[str, Any]:
    """Latency percentiles (ms), requests/s and errors from ``wrk --latency`` output."""
    def ms(value: str) -> float:
        m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
        if m is None:
            raise ValueError(f"not a wrk duration: {value!r}")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]

    pct = {f"p{p}": ms(v) for p, v in re.findall(r"^\s+(\d+)%\s+(\S+)$", text, re.M)}
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    requests = re.search(r"^\s+(\d+) requests in", text, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)$", text, re.M)
    return {**pct, "requests_per_s": float(rps.group(1)) if rps else None,
            "requests": int(requests.group(1)) if requests else None,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else None}


def run_api(bootstrap: str, artifact: Path, *, engines: int, rate: float, seconds: float,
            clients: int, log_dir: Path) -> dict[str, Any]:
    wrk_bin = shutil.which("wrk")
    if wrk_bin is None:
        raise RuntimeError("wrk is not installed (make system-deps installs it from Debian)")
    prefix = f"bench-api-{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.readings"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
    admin.close()
    from tests.support import free_port  # the test helper: a free loopback port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ,
           "VIBEWATCH_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
           "VIBEWATCH_KAFKA__READINGS_TOPIC": topic,
           "VIBEWATCH_KAFKA__DEAD_LETTER_TOPIC": f"{prefix}.dead-letter",
           "VIBEWATCH_KAFKA__CONTROL_TOPIC": f"{prefix}.control",
           "VIBEWATCH_KAFKA__ANOMALIES_TOPIC": f"{prefix}.anomalies",
           "VIBEWATCH_KAFKA__CHANGELOG_TOPIC": f"{prefix}.changelog",
           "VIBEWATCH_KAFKA__GROUP_ID": f"{prefix}.group",
           "VIBEWATCH_KAFKA__INSTANCE_ID": prefix,
           "VIBEWATCH_MODEL__ARTIFACT_DIR": str(artifact),
           "VIBEWATCH_API__PORT": str(port),
           "VIBEWATCH_LOG__LEVEL": "WARNING"}
    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / f"{prefix}.serve.log").open("wb")
    service = subprocess.Popen([VIBEWATCH, "serve"], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    producer = None
    try:
        _wait(lambda: urllib.request.urlopen(f"{base}/readyz", timeout=2).status == 200,
              120, "the service to be ready")
        # every engine twice before the measurement, then two phases with margins
        fill_s = 2 * engines / rate
        total_s = fill_s + 2 * seconds + 60
        producer = java_producer(bootstrap, topic, rate, engines, total_s, time.time() + 1)
        if producer is None:
            raise RuntimeError("java or the Kafka jars are missing (make kafka-jars)")
        _wait(lambda: _metrics(base).get("engines", 0) >= engines, fill_s + 120,
              f"{engines} engines tracked")
        time.sleep(max(0.0, fill_s - engines / rate))  # a second reading for every engine
        wrk = [wrk_bin, "-t2", f"-c{clients}", f"-d{seconds:.0f}s", "--latency",
               f"{base}{QUERY}"]
        quiet = _phase(base, seconds, None)
        loaded = _phase(base, seconds, wrk)
        return {
            "engines": engines, "rate": rate, "seconds": seconds, "clients": clients,
            "query": QUERY, "without_api_load": quiet, "with_api_load": loaded,
            "ingestion_ratio": round(loaded["processed_per_s"] / quiet["processed_per_s"], 4)
            if quiet["processed_per_s"] else None,
            "service_log": str(log_dir / f"{prefix}.serve.log"),
        }
    finally:
        if producer is not None:
            producer.kill()
            producer.wait()
        service.terminate()
        try:
            service.wait(60)
        except subprocess.TimeoutExpired:
            service.kill()
        log.close()
