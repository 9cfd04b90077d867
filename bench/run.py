#!/usr/bin/env python3
"""vibewatch benchmarks: throughput, baselines, memory, cost per reading, latency, cold start.

Starts its own Kafka broker (deploy/kafka/local_kafka.py) on free ports in a temp dir unless
--bootstrap is given, prints tables and writes JSON to bench/results/<UTC timestamp>.json.
See docs/benchmarks.md for what each scenario measures and the latest results.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` and `service` importable
    sys.path.insert(0, str(ROOT))

from bench import machine  # noqa: E402
from bench.report import header, write_json  # noqa: E402

SCENARIOS = ("throughput", "baselines", "memory", "cost", "latency", "coldstart")
#: long scenarios, run only when named (``--scenarios restart,failover,broker-restart,api``);
#: `peers` also installs three stream processors into .venv-peers/ on first use (bench/peers/)
EXTRA = ("restart", "failover", "broker-restart", "peers", "api", "channels")
DEFAULT_ARTIFACT = ROOT / "models" / "artifacts" / "default"


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Scenarios: " + ", ".join(SCENARIOS) + "; only when named: "
        + ", ".join(EXTRA) + ". Example: bench/run.py --quick; "
        "bench/run.py --scenarios throughput,baselines --engines 10000 --forms single; "
        "bench/run.py --scenarios peers",
    )
    p.add_argument("--scenarios", type=_names, default=list(SCENARIOS),
                   help="comma-separated scenarios (default: all but those run only when named)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes everywhere (about a minute; a smoke run, not a measurement)")
    p.add_argument("--bootstrap", help="use this broker instead of starting one")
    p.add_argument("--artifact", type=Path, default=DEFAULT_ARTIFACT,
                   help="model artifact directory (default models/artifacts/default)")
    p.add_argument("--engines", type=_ints, default=[100, 1000, 10_000],
                   help="fleet sizes for throughput/baselines (default 100,1000,10000)")
    p.add_argument("--forms", type=_names, default=["single", "batch"],
                   help="message forms: single, batch (default both)")
    p.add_argument("--batch", type=int, default=50, help="readings per batch message (50)")
    p.add_argument("--modes", type=_names, default=["eos", "alos"],
                   help="service modes: eos (exactly-once), alos (at-least-once)")
    p.add_argument("--repeat", type=int, default=1,
                   help="timed service runs per case; the median is reported (default 1)")
    p.add_argument("--single-readings", type=int, default=200_000,
                   help="readings in a single-reading-message topic (default 200000)")
    p.add_argument("--batch-readings", type=int, default=1_000_000,
                   help="readings in a batch-message topic (default 1000000)")
    p.add_argument("--naive-sample", type=int, default=300,
                   help="readings the naive baseline is timed on (default 300)")
    p.add_argument("--rewindow-budget", type=float, default=20.0,
                   help="seconds the re-windowing baseline runs per topic at most (20)")
    p.add_argument("--memory-engines", type=_ints, default=[1000, 10_000, 100_000],
                   help="fleet sizes for RSS per engine (default 1000,10000,100000)")
    p.add_argument("--windows", type=_ints, default=[16, 64, 256, 1024],
                   help="window lengths for cost per reading (default 16,64,256,1024)")
    p.add_argument("--cost-engines", type=_ints, default=[100, 1000, 10_000, 100_000],
                   help="fleet sizes for cost per reading (default 100,...,100000)")
    p.add_argument("--latency-rates", type=_ints, default=[1000, 10_000],
                   help="produce rates in readings/s (default 1000,10000)")
    p.add_argument("--latency-seconds", type=float, default=20.0,
                   help="measured seconds per latency rate (default 20)")
    p.add_argument("--restart-engines", type=_ints, default=[10_000, 100_000],
                   help="restart: fleet sizes (default 10000,100000)")
    p.add_argument("--restart-rate", type=float, default=10_000.0,
                   help="restart: readings/s of traffic (default 10000)")
    p.add_argument("--traffic-s", type=float, default=1800.0,
                   help="restart: seconds of traffic before the restarts (default 1800)")
    p.add_argument("--peers", type=_names, default=["quix", "faust", "bytewax"],
                   help="peers: stream processors to compare (default quix,faust,bytewax)")
    p.add_argument("--peer-engines", type=_ints, default=[1000, 10_000],
                   help="peers: fleet sizes (default 1000,10000)")
    p.add_argument("--peer-single-readings", type=int, default=100_000,
                   help="peers: readings in a single-reading-message topic (default 100000)")
    p.add_argument("--peer-batch-readings", type=int, default=500_000,
                   help="peers: readings in a 50-reading-message topic (default 500000)")
    p.add_argument("--peer-budget", type=float, default=30.0,
                   help="peers: seconds a peer runs on a topic at most, once it has seen "
                   "every engine (default 30)")
    p.add_argument("--peer-latency-rates", type=_ints, default=[10_000],
                   help="peers: produce rates of the latency runs (default 10000; engines = "
                   "rate)")
    p.add_argument("--api-engines", type=int, default=100_000,
                   help="api: engines in the fleet (default 100000)")
    p.add_argument("--api-rate", type=float, default=10_000,
                   help="api: readings/s ingested meanwhile (default 10000)")
    p.add_argument("--api-clients", type=int, default=50,
                   help="api: concurrent HTTP clients (default 50)")
    p.add_argument("--api-seconds", type=float, default=30.0,
                   help="api: seconds of each phase, without and with API load (default 30)")
    p.add_argument("--channels-engines", type=_ints, default=[1000, 10_000],
                   help="channels: fleet sizes for the 8- against 1-channel cost (default "
                   "1000,10000)")
    p.add_argument("--out", type=Path, help="JSON path (default bench/results/<time>.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def apply_quick(a: argparse.Namespace) -> None:
    a.engines, a.single_readings, a.batch_readings = [100], 5_000, 20_000
    a.naive_sample, a.rewindow_budget = 20, 3.0
    a.memory_engines, a.windows, a.cost_engines = [1000], [16, 256], [1000]
    a.latency_rates, a.latency_seconds = [1000], 4.0
    a.restart_engines, a.restart_rate, a.traffic_s = [1000], 1000.0, 10.0
    a.peer_engines, a.peer_single_readings, a.peer_batch_readings = [200], 2_000, 10_000
    a.peer_budget, a.peer_latency_rates = 5.0, [500]
    a.api_engines, a.api_rate, a.api_seconds, a.api_clients = 2000, 1000, 5.0, 10
    a.channels_engines = [1000]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS) - set(EXTRA)
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; known: "
                         f"{', '.join(SCENARIOS + EXTRA)}")
    unknown = set(args.peers) - {"quix", "faust", "bytewax"}
    if unknown:
        raise SystemExit(f"unknown peers {sorted(unknown)}; known: quix, faust, bytewax")
    if args.quick:
        apply_quick(args)
    if not (args.artifact / "manifest.json").is_file():
        raise SystemExit(f"no model artifact at {args.artifact} (train one, or --artifact DIR)")
    logging.basicConfig(level=logging.ERROR)
    mach = machine.describe()
    command = "bench/run.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    print(header(mach, command), flush=True)
    print(f"load average {mach['load_average_at_start']} (other processes on the box skew "
          "the numbers)", flush=True)
    doc: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command, "machine": mach, "quick": args.quick,
        "artifact": str(args.artifact), "artifact_version": _version(args.artifact),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    began = time.perf_counter()
    from bench.scenarios import run_all

    try:
        run_all(args, doc)
    finally:
        doc["elapsed_s"] = round(time.perf_counter() - began, 1)
        doc["load_average_at_end"] = machine.load_average()
        out = write_json(doc, args.out)
        print(f"\nresults written to {out} ({doc['elapsed_s']:.0f} s)")
    return 0


def _version(artifact: Path) -> str:
    try:
        return str(json.loads((artifact / "manifest.json").read_text())["version"])
    except (OSError, KeyError, ValueError):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
