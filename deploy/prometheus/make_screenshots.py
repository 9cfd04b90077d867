"""Reproduce the README's dashboard pictures from a real run, without Docker or Grafana.

Starts (or uses) a Kafka broker, ``vibewatch serve`` on isolated topics, ``vibewatch
simulate`` (20 engines, 30 readings/s over the fleet in real time), a malformed message
every second (so the dead-letter panels have data) and Debian's ``prometheus`` scraping the
service every 2 s with the committed alert rules; lets it run for ``--duration`` (15 min);
then draws both dashboards over that range with ``dashboard_snapshot.py`` (the engine view
for engine-0003) and stops every process::

    .venv/bin/python deploy/prometheus/make_screenshots.py
    # about 16 minutes; writes docs/img/fleet-dashboard.png and docs/img/engine-dashboard.png

The service runs its default settings, so every engine spends its first
``scoring.commission_s`` (10 min) in warmup; engine-0003 starts wearing a minute and a bit
after that (``--fault-at``, default :func:`fault_onset`), so the pictures show warmup, the
healthy fleet and the worn engine in alarm.

``--bootstrap host:port`` uses an existing broker instead of starting one with
``deploy/kafka/local_kafka.py``. The Prometheus configuration is generated from the committed
``deploy/prometheus/prometheus.yml`` (see :func:`prometheus_config`);
``tests/deploy/test_live_prometheus.py`` reuses it and :class:`Prometheus`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
COMMITTED_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES_GLOB = str(PROMETHEUS_DIR / "rules" / "*.yml")
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
PROMETHEUS_BIN = "/usr/bin/prometheus"
VIBEWATCH = str(Path(sys.executable).parent / "vibewatch")

#: The engine the simulator degrades, and the reading its wear starts at.
FAULT_ENGINE = "engine-0003"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def prometheus_config(
    vibewatch_target: str, prometheus_target: str, interval: str = "1s"
) -> dict[str, Any]:
    """The committed ``prometheus.yml`` with loopback targets and a short interval.

    Kept from the committed file: the ``vibewatch`` and ``prometheus`` jobs, the metrics path,
    the external labels and the rule files (as an absolute glob, since the generated file
    lives elsewhere). Replaced: Docker's DNS discovery by a static ``vibewatch_target``, the
    Prometheus target by ``prometheus_target``, and the scrape and evaluation intervals.
    """
    config: dict[str, Any] = yaml.safe_load(COMMITTED_CONFIG.read_text())
    config["global"].update(
        scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval
    )
    config["rule_files"] = [RULES_GLOB]
    targets = {"vibewatch": vibewatch_target, "prometheus": prometheus_target}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    if set(jobs) != set(targets):
        raise ValueError(f"{COMMITTED_CONFIG}: expected jobs {sorted(targets)}, got {sorted(jobs)}")
    for name, job in jobs.items():
        job.pop("dns_sd_configs", None)
        job["static_configs"] = [{"targets": [targets[name]]}]
    return config


class Prometheus:
    """``/usr/bin/prometheus`` on a free loopback port, its TSDB and config in ``data_dir``."""

    def __init__(self, data_dir: Path, vibewatch_target: str, interval: str = "1s") -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.config_path = data_dir / "prometheus.yml"
        self.log_path = data_dir / "prometheus.log"
        self.config = prometheus_config(vibewatch_target, f"127.0.0.1:{self.port}", interval)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Prometheus:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    PROMETHEUS_BIN,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def is_ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited {self.proc.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(self.base + "/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``; the parsed JSON body, also for 4xx answers."""
        url = f"{self.base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as exc:
            return json.load(exc)

    def query(self, expr: str) -> Any:
        """An instant query at the current time: the whole response body."""
        return self.api("query", query=expr)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class BadMessages(threading.Thread):
    """Publishes malformed messages to ``topic`` every ``interval_s`` until stopped."""

    PAYLOADS = (b"not json", b'{"engine_id": "engine-0001", "ts": "yesterday"}')

    def __init__(self, bootstrap: str, topic: str, interval_s: float) -> None:
        super().__init__(name="bad-messages", daemon=True)
        self.bootstrap, self.topic, self.interval_s = bootstrap, topic, interval_s
        self.sent = 0
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        from kafka import KafkaProducer

        try:
            producer = KafkaProducer(bootstrap_servers=self.bootstrap)
            try:
                while not self._stop_event.is_set():
                    payload = self.PAYLOADS[self.sent % len(self.PAYLOADS)]
                    producer.send(self.topic, key=b"bad-gateway", value=payload)
                    producer.flush()
                    self.sent += 1
                    self._stop_event.wait(self.interval_s)
            finally:
                producer.close()
        except BaseException as exc:  # reported by the caller
            self.error = exc

    def stop(self) -> None:
        """Stop publishing; safe to call whether or not the thread was started."""
        self._stop_event.set()
        if self.is_alive():
            self.join(10)


def fault_onset(engines: int, rate: float, after_s: float = 70.0) -> int:
    """The reading of each engine at which the wear starts: ``after_s`` seconds after the
    default commissioning ends (``ScoringSettings.commission_s``, in real time here), so the
    fault is judged against a commissioned baseline rather than learned as the engine's
    normal."""
    from service.config import ScoringSettings

    return int((ScoringSettings().commission_s + after_s) * rate / engines)


def simulator_command(
    bootstrap: str, topic: str, engines: int, rate: float, fault_at: int = 40
) -> list[str]:
    """``vibewatch simulate`` in real time with a wear fault starting at reading ``fault_at``."""
    return [
        VIBEWATCH, "simulate", "--bootstrap", bootstrap, "--topic", topic,
        "--engines", str(engines), "--rate", str(rate),
        "--fault", f"{FAULT_ENGINE}:wear@{fault_at}",
    ]  # fmt: skip


def service_env(bootstrap: str, prefix: str, port: int) -> dict[str, str]:
    """Environment for ``vibewatch serve`` on its own topics and port."""
    return {
        **os.environ,
        "VIBEWATCH_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "VIBEWATCH_KAFKA__READINGS_TOPIC": f"{prefix}.readings",
        "VIBEWATCH_KAFKA__DEAD_LETTER_TOPIC": f"{prefix}.dead-letter",
        "VIBEWATCH_KAFKA__CONTROL_TOPIC": f"{prefix}.control",
        "VIBEWATCH_KAFKA__ANOMALIES_TOPIC": f"{prefix}.anomalies",
        "VIBEWATCH_KAFKA__CHANGELOG_TOPIC": f"{prefix}.changelog",
        "VIBEWATCH_KAFKA__GROUP_ID": f"{prefix}.group",
        "VIBEWATCH_API__PORT": str(port),
    }


def wait_until(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _load_script(name: str, path: Path) -> ModuleType:
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _broker(bootstrap: str | None, work: Path) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    local_kafka = _load_script("local_kafka", ROOT / "deploy" / "kafka" / "local_kafka.py")
    broker = local_kafka.LocalKafka.on_free_ports(work / "kafka")
    broker.start()
    try:
        yield str(broker.bootstrap)
    finally:
        broker.stop()


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout_s: float = 30.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--bootstrap", help="existing Kafka broker (default: start one)")
    parser.add_argument("--duration", default="15m",
                        help="how long to run before drawing (default %(default)s)")
    parser.add_argument("--engines", type=int, default=20, help="simulated engines")
    parser.add_argument("--rate", type=float, default=30.0,
                        help="readings per second over the fleet (default %(default)s)")
    parser.add_argument("--fault-at", type=int, default=None,
                        help=f"reading at which {FAULT_ENGINE} starts wearing (default: 70 s "
                        "after the default commissioning, at --rate over --engines)")
    parser.add_argument("--scrape-interval", type=int, default=2,
                        help="Prometheus scrape and rule interval in seconds (default %(default)s)")
    parser.add_argument("--bad-every", type=float, default=1.0,
                        help="seconds between malformed messages (default %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--work-dir", type=Path, help="logs and TSDB (default: a temp dir)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    snapshot = _load_script("dashboard_snapshot", PROMETHEUS_DIR / "dashboard_snapshot.py")
    duration_s: float = snapshot.parse_duration(args.duration)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="vibewatch-screens-"))
    work.mkdir(parents=True, exist_ok=True)
    prefix = f"screens-{uuid.uuid4().hex[:8]}"
    port = free_port()
    service: subprocess.Popen[bytes] | None = None
    simulator: subprocess.Popen[bytes] | None = None
    bad: BadMessages | None = None
    interval = f"{args.scrape_interval}s"
    fault_at = args.fault_at if args.fault_at is not None else fault_onset(args.engines,
                                                                           args.rate)
    prometheus = Prometheus(work / "prometheus", f"127.0.0.1:{port}", interval)
    with _broker(args.bootstrap, work) as bootstrap:
        env = service_env(bootstrap, prefix, port)
        try:
            with (work / "serve.log").open("ab") as log:
                service = subprocess.Popen([VIBEWATCH, "serve"], env=env, stdout=log,
                                           stderr=subprocess.STDOUT)
            prometheus.start()
            wait_until(lambda: _http_ok(f"http://127.0.0.1:{port}/readyz"), 120, "the service")
            wait_until(prometheus.is_ready, 60, "Prometheus")
            with (work / "simulate.log").open("ab") as log:
                simulator = subprocess.Popen(
                    simulator_command(bootstrap, f"{prefix}.readings", args.engines, args.rate,
                                      fault_at),
                    env=env, stdout=log, stderr=subprocess.STDOUT,
                )
            bad = BadMessages(bootstrap, f"{prefix}.readings", args.bad_every)
            bad.start()
            began = time.monotonic()
            print(f"running for {duration_s:g} s; logs and TSDB in {work}", flush=True)
            while time.monotonic() - began < duration_s:
                time.sleep(10)
                status = prometheus.query(f'vibewatch_engine_status{{engine_id="{FAULT_ENGINE}"}}')
                values = [r["value"][1] for r in status.get("data", {}).get("result", [])]
                print(f"{time.monotonic() - began:5.0f} s  {FAULT_ENGINE} status {values}",
                      flush=True)
            rng = f"{int(duration_s)}s"
            # One end for both pictures: the service keeps scoring while they are drawn, and
            # the fleet's top engines should show the scores the engine view shows.
            end = f"{time.time():.3f}"
            # $job as Grafana's "All" would have it: the values of label_values(vibewatch_ready,
            # job), not the snapshot's default .* (which would count Prometheus' own target).
            common = ["--prometheus", prometheus.base, "--range", rng, "--end", end,
                      "--scrape-interval", str(args.scrape_interval), "--var", "job=vibewatch"]
            args.out_dir.mkdir(parents=True, exist_ok=True)
            codes: list[int] = [
                snapshot.main([*common, "--dashboard", str(DASHBOARDS / "fleet.json"),
                               "--out", str(args.out_dir / "fleet-dashboard.png")]),
                snapshot.main([*common, "--dashboard", str(DASHBOARDS / "engine.json"),
                               "--var", f"engine_id={FAULT_ENGINE}",
                               "--out", str(args.out_dir / "engine-dashboard.png")]),
            ]
            return max(codes)
        finally:
            if bad is not None:
                bad.stop()
            _stop(simulator, signal.SIGINT)
            _stop(service, signal.SIGTERM)
            prometheus.stop()


if __name__ == "__main__":
    sys.exit(main())
