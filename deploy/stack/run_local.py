#!/usr/bin/env python3
"""``make run``: the whole local stack without Docker.

Starts a Kafka broker (deploy/kafka/local_kafka.py, data in .run/kafka), ``vibewatch serve``
with the default model, and ``vibewatch simulate`` with one wearing engine; prints where the
API docs and the metrics are; Ctrl-C (or SIGTERM) stops everything it started, in reverse
order.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType, ModuleType

ROOT = Path(__file__).resolve().parents[2]
VIBEWATCH = str(Path(sys.executable).parent / "vibewatch")


def _load_local_kafka() -> ModuleType:
    path = ROOT / "deploy/kafka/local_kafka.py"
    spec = importlib.util.spec_from_file_location("local_kafka", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_kafka"] = module
    spec.loader.exec_module(module)
    return module


def _wait_http(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    parser.add_argument("--engines", type=int, default=50, help="simulated engines (default 50)")
    parser.add_argument("--rate", type=float, default=200.0, help="readings/s (default 200)")
    parser.add_argument("--data-dir", default=str(ROOT / ".run/kafka"), help="broker data dir")
    args = parser.parse_args()

    lk = _load_local_kafka()
    data_dir = Path(args.data_dir)
    if (data_dir / "server.properties").exists():
        broker = lk.LocalKafka.from_data_dir(data_dir)
    else:
        broker = lk.LocalKafka.on_free_ports(data_dir)
    children: list[subprocess.Popen[bytes]] = []

    def _term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Explicit handlers: a shell that starts us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    try:
        print(f"starting Kafka broker in {data_dir} ...", flush=True)
        broker.start()
        print(f"Kafka broker ready at {broker.bootstrap}", flush=True)
        env = {**os.environ, "VIBEWATCH_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
               "VIBEWATCH_KAFKA__INSTANCE_ID": "local-0",
               "VIBEWATCH_API__PORT": str(args.port)}
        children.append(subprocess.Popen([VIBEWATCH, "serve"], env=env))
        base = f"http://127.0.0.1:{args.port}"
        if not _wait_http(f"{base}/readyz", 120):
            print("the service did not become ready; see its log above", file=sys.stderr)
            return 1
        children.append(subprocess.Popen([
            VIBEWATCH, "simulate", "--bootstrap", broker.bootstrap, "--engines",
            str(args.engines), "--rate", str(args.rate), "--fault", "engine-0007:wear@200",
        ], env=env))
        print(
            f"\nvibewatch is running:\n  API docs   {base}/docs\n  engines    {base}/engines\n"
            f"  metrics    {base}/metrics\n  Kafka      {broker.bootstrap}\n"
            "engine-0007 develops bearing wear after ~50 s. Ctrl-C stops everything.\n",
            flush=True,
        )
        while all(c.poll() is None for c in children):
            time.sleep(0.5)
        print("a process exited; stopping the stack", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    child.kill()
        broker.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
