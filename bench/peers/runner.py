"""A running peer: its process, the markers it prints, and how it is stopped.

Started from the project's virtualenv with the peer's own interpreter
(:func:`bench.peers.venv.python`); stdout is read by a thread that records the
``BOOT``/``FIRST``/``DONE``/``COUNT`` markers of :class:`bench.peers.job.Progress` with the
peer's own clock and RSS, and keeps the last lines for error messages.
"""

from __future__ import annotations

import collections
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.machine import rss_kib
from bench.peers.venv import ROOT, environment, python

_MARKER = re.compile(r"(BOOT|FIRST|DONE|COUNT) (\d+\.\d+) (\d+)(?: (\d+))?\s*$")


@dataclass(frozen=True)
class Marker:
    t: float  # the peer's time.time()
    rss_kib: int
    readings: int = 0  # COUNT only


class PeerProcess:
    """One peer process; ``stop`` (SIGTERM, then SIGKILL) must be called, or use ``with``."""

    def __init__(self, peer: str, args: list[str]) -> None:
        self.peer = peer
        self.started = time.time()
        self.proc = subprocess.Popen(
            [str(python(peer)), "-m", f"bench.peers.{peer}_app", *args], cwd=ROOT,
            env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.markers: dict[str, Marker] = {}
        self.counts: list[Marker] = []
        self.tail: collections.deque[str] = collections.deque(maxlen=60)
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def __enter__(self) -> PeerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            found = _MARKER.search(line)  # anywhere: Faust's spinner prefixes escape codes
            if found:
                name, t, rss, n = found.groups()
                m = Marker(float(t), int(rss), int(n or 0))
                with self._cond:
                    if name == "COUNT":
                        self.counts.append(m)
                    else:
                        self.markers.setdefault(name, m)
                    self._cond.notify_all()
            else:
                self.tail.append(line.rstrip())
        with self._cond:
            self._cond.notify_all()

    def wait(self, name: str, timeout: float) -> Marker:
        """The marker ``name`` once printed; RuntimeError if the process ends or time runs out."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while name not in self.markers:
                left = deadline - time.monotonic()
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(f"{self.peer} exited ({self.proc.returncode}) before "
                                       f"{name}:\n" + "\n".join(self.tail))
                if left <= 0:
                    raise RuntimeError(f"{self.peer}: no {name} in {timeout:.0f} s:\n"
                                       + "\n".join(list(self.tail)[-20:]))
                self._cond.wait(min(left, 1.0))
            return self.markers[name]

    def rss_kib(self) -> int:
        return rss_kib(self.proc.pid)

    def exited(self, timeout: float) -> bool:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (each framework commits and closes on it), SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if not self.exited(timeout):
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)


def state_size_mib(path: Path) -> float:
    """Bytes under ``path`` (a peer's local state), MiB."""
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
    return round(total / (1 << 20), 1)
