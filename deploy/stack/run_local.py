#!/usr/bin/env python3
"""``make run``: the whole local stack without Docker.

Starts a Kafka broker (deploy/kafka/local_kafka.py, data in .run/kafka), ``vibewatch serve``
with the default model, and ``vibewatch simulate`` with one wearing engine; prints where the
API docs, the metrics and the broker are, a replay command that works as printed, and
whether the state of an earlier run was restored; Ctrl-C (or SIGTERM) stops everything it
started, in reverse order. ``--reset`` (``make reset-local``) deletes the local stack's data
(.run) and nothing else, refusing while its broker runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
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


def _engines_tracked(base: str) -> int | None:
    """``vibewatch_engines_tracked`` of the service (set once its partitions are restored)."""
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    m = re.search(r"^vibewatch_engines_tracked (\S+)$", text, re.M)
    return int(float(m.group(1))) if m else None


def _shown(path: Path) -> str:
    """``path`` relative to the current directory when it is inside it (shorter to copy)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def reset(run_dir: Path, data_dir: Path) -> int:
    """Delete the local stack's data; refuse while its broker is running."""
    lk = _load_local_kafka()
    if (data_dir / "server.properties").exists():
        pid = lk.LocalKafka.from_data_dir(data_dir).running_pid()
        if pid is not None:
            print(f"the local broker (pid {pid}) is running: stop make run first",
                  file=sys.stderr)
            return 1
    if not run_dir.exists():
        print(f"nothing to reset: {_shown(run_dir)} does not exist")
        return 0
    shutil.rmtree(run_dir)
    print(f"deleted {_shown(run_dir)}: the next make run starts with an empty broker")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    port = int(os.environ.get("VIBEWATCH_API__PORT", "8000"))  # the service's setting
    parser.add_argument("--port", type=int, default=port,
                        help="API port (default: VIBEWATCH_API__PORT, else 8000)")
    parser.add_argument("--engines", type=int, default=50, help="simulated engines (default 50)")
    parser.add_argument("--rate", type=float, default=200.0, help="readings/s (default 200)")
    parser.add_argument("--run-dir", default=str(ROOT / ".run"),
                        help="local stack data (default .run)")
    parser.add_argument("--reset", action="store_true",
                        help="delete the local stack's data and exit")
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    data_dir = run_dir / "kafka"
    if args.reset:
        return reset(run_dir, data_dir)

    lk = _load_local_kafka()
    reused = (data_dir / "server.properties").exists()
    if reused:
        broker = lk.LocalKafka.from_data_dir(data_dir)
        print(f"reusing the broker data of an earlier run in {_shown(data_dir)}: its topics "
              "and engine state are restored (make reset-local starts afresh)", flush=True)
    else:
        broker = lk.LocalKafka.on_free_ports(data_dir)
        print(f"new broker data in {_shown(data_dir)}", flush=True)
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
               # the local checkpoint beside the broker's data: make reset-local drops both
               "VIBEWATCH_STATE__CHECKPOINT_DIR": str(run_dir / "checkpoints"),
               "VIBEWATCH_API__PORT": str(args.port)}
        children.append(subprocess.Popen([VIBEWATCH, "serve"], env=env))
        base = f"http://127.0.0.1:{args.port}"
        if not _wait_http(f"{base}/readyz", 120):
            print("the service did not become ready; see its log above", file=sys.stderr)
            return 1
        if reused:
            print(f"restored the state of {_engines_tracked(base)} engines from the earlier "
                  "run", flush=True)
        children.append(subprocess.Popen([
            VIBEWATCH, "simulate", "--engines", str(args.engines), "--rate", str(args.rate),
            "--fault", "engine-0007:wear@200",
        ], env=env))
        data = _shown(ROOT / "models/data/ims/ims_test2_snapshot_meanabs.csv")
        print(
            f"\nvibewatch is running:\n  API docs   {base}/docs\n  engines    {base}/engines\n"
            f"  metrics    {base}/metrics\n  Kafka      {broker.bootstrap}\n"
            "engine-0007 develops bearing wear after ~50 s. Replay a bearing failure beside "
            "it (IMS test 2, ~3 min):\n"
            f"  {_shown(Path(VIBEWATCH))} replay --bootstrap {broker.bootstrap} ims:{data}\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        while all(c.poll() is None for c in children):
            time.sleep(0.5)
        name, gone = next((n, c) for n, c in zip(("serve", "simulate"), children, strict=False)
                          if c.poll() is not None)
        print(f"vibewatch {name} exited with status {gone.returncode}; stopping the stack",
              file=sys.stderr)
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
