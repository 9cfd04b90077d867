"""Helpers for tests that run ``vibewatch`` as real processes against the real broker."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from service.evaluation.live.processes import read_topic

VIBEWATCH = str(Path(sys.executable).parent / "vibewatch")
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(check: Callable[[], T | None], timeout_s: float, what: str,
             interval_s: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")


def topic_env(bootstrap: str, prefix: str, **extra: str) -> dict[str, str]:
    """Environment for a service instance on its own set of topics."""
    env = {
        **os.environ,
        "VIBEWATCH_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "VIBEWATCH_KAFKA__READINGS_TOPIC": f"{prefix}.readings",
        "VIBEWATCH_KAFKA__DEAD_LETTER_TOPIC": f"{prefix}.dead-letter",
        "VIBEWATCH_KAFKA__CONTROL_TOPIC": f"{prefix}.control",
        "VIBEWATCH_KAFKA__ANOMALIES_TOPIC": f"{prefix}.anomalies",
        "VIBEWATCH_KAFKA__CHANGELOG_TOPIC": f"{prefix}.changelog",
        "VIBEWATCH_KAFKA__GROUP_ID": f"{prefix}.group",
        "VIBEWATCH_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "VIBEWATCH_KAFKA__HEARTBEAT_INTERVAL_MS": "2000",
        # The tests' fleets span seconds of event time: commissioning by its reading count
        # (30) instead of the default 10 minutes, so their engines leave warm-up.
        "VIBEWATCH_SCORING__COMMISSION_S": "0",
    }
    env.update(extra)
    return env


class ServiceProcess:
    """``vibewatch serve`` in a subprocess on a free port; log in ``log_path``."""

    def __init__(self, env: dict[str, str], log_path: Path, instance_id: str = "i0",
                 vibewatch: str = VIBEWATCH) -> None:
        self.port = free_port()
        self.env = {**env, "VIBEWATCH_API__PORT": str(self.port),
                    "VIBEWATCH_KAFKA__INSTANCE_ID": instance_id}
        self.log_path = log_path
        self.vibewatch = vibewatch  # the command: another virtualenv's (lean install test)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([self.vibewatch, "serve"], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT)
        return self

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as resp:
                body = resp.read()
                ctype = resp.headers.get("content-type", "")
                return resp.status, json.loads(body) if "json" in ctype else body.decode()
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"service exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                return self.get("/readyz")[0] == 200
            except OSError:
                return False
        wait_for(ready, timeout_s, f"service on port {self.port} to be ready")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def read_all(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Any]:
    """Every committed record of ``topic`` (read_committed), in partition order."""
    return read_topic(bootstrap, topic, timeout_s)


def latest_by_key(records: list[Any]) -> dict[bytes, bytes]:
    """Compaction's view of a topic: the last value of each key."""
    out: dict[bytes, bytes] = {}
    for r in records:
        out[r.key] = r.value
    return out
