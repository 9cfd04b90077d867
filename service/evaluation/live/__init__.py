"""``vibewatch evaluate live``: the live acceptance scenario of issue 12 (docs/scoring.md).

A simulated fleet (50 engines, 30 minutes of simulated time, a reading every 250 ms as
``make run`` has it; three faults of different kinds: a step that is repaired, intermittent
spikes and wear; the other engines healthy) is published to a real broker and processed
by the real service (``vibewatch serve`` as a child process, with the settings of the
environment, ``VIBEWATCH_*``), paced at ``--speed`` simulated seconds per wall second.
The scoring works in event time, so the acceleration changes nothing it sees. An operator
re-baselines the repaired engine through the API. The same scenario then runs again with
the service restarted in the middle (SIGTERM, or kill -9), while the readings keep coming.

Reported per run and fault: detection delay, alarm raises, whether the alarm is held, the
engine's rank in ``GET /engines`` while it is in alarm, and when the page alert
would fire; false alarms on healthy engines; the re-baseline. Without ``--bootstrap`` a
local broker (``deploy/kafka/local_kafka.py``) is started and removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from service.errors import UsageError
from service.evaluation.live.observe import RunRecord
from service.evaluation.live.outcome import RunOutcome, outcome
from service.evaluation.live.processes import broker
from service.evaluation.live.report import print_outcomes
from service.evaluation.live.run import run_once
from service.evaluation.live.scenario import (
    DEFAULT_FAULTS,
    DEFAULT_REBASELINE,
    DEFAULT_RESTART,
    LiveFault,
    Rebaseline,
    Restart,
    Scenario,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "The live acceptance scenario (docs/scoring.md): a simulated fleet with three faults "
        "(a step that is repaired and re-baselined through the API, intermittent spikes, "
        "wear) published to a real broker and processed by vibewatch serve (settings from "
        "the environment), in accelerated event time; then again with the service "
        "restarted in the middle. Reports per fault the detection delay, alarm raises, rank "
        "in GET /engines while in alarm and the page alert; false alarms on healthy engines."
    )
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: start a local "
                        "broker for the run, deploy/kafka/local_kafka.py)")
    parser.add_argument("--engines", type=int, default=50, help="simulated engines")
    parser.add_argument("--span", default="30m",
                        help="simulated time of a run (30m, 14m30s, 900s)")
    parser.add_argument("--interval-ms", type=int, default=250,
                        help="event time between an engine's readings (make run's)")
    parser.add_argument("--speed", type=float, default=10.0,
                        help="simulated seconds per wall second")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed")
    parser.add_argument(
        "--fault", action="append", default=[], metavar="ENGINE:KIND@ONSET[+DURATION]",
        help="a fault (repeatable), e.g. engine-0007:wear@16m or engine-0011:step@11m+5m; "
        "KIND is wear, step or intermittent (default: "
        + ", ".join(f"{f.engine_id}:{f.kind}@{f.onset_s / 60:g}m"
                    + (f"+{f.duration_s / 60:g}m" if f.duration_s else "")
                    for f in DEFAULT_FAULTS) + ")")
    rb = DEFAULT_REBASELINE
    parser.add_argument("--rebaseline", default=f"{rb.engine_id}@{rb.at_s / 60:g}m",
                        metavar="ENGINE@TIME|none",
                        help="an operator re-baselines ENGINE at TIME through the API")
    rs = DEFAULT_RESTART
    parser.add_argument(
        "--restart", action="append", default=[], metavar="MODE@TIME|none",
        help="after the run without restart, one run per --restart: MODE term (SIGTERM) or "
        f"kill (kill -9) at TIME (default: {rs.mode}@{int(rs.at_s // 60)}m"
        f"{int(rs.at_s % 60)}s; none: no restart run)")
    parser.add_argument("--json", type=Path, help="write the report as JSON here")
    parser.add_argument("--promtool-test", type=Path, metavar="PATH",
                        help="write a promtool unit test of the alert rules on the runs' "
                        "series here, and run it when promtool is installed")
    parser.add_argument("--work-dir", type=Path,
                        help="keep the services' logs and checkpoints here (default: a "
                        "temporary directory, removed)")


def _scenario(args: argparse.Namespace) -> tuple[Scenario, list[Restart]]:
    try:
        faults = tuple(LiveFault.parse(f) for f in args.fault) or DEFAULT_FAULTS
        rebaseline = (None if args.rebaseline == "none"
                      else Rebaseline.parse(args.rebaseline))
        restarts = [Restart.parse(r) for r in args.restart if r != "none"]
        if not args.restart:
            restarts = [DEFAULT_RESTART]
        from service.evaluation.live.scenario import parse_span

        scenario = Scenario(args.engines, parse_span(args.span), args.interval_ms, args.seed,
                            faults, rebaseline)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.speed <= 0:
        raise UsageError("--speed must be positive")
    for r in restarts:
        if r.at_s >= scenario.span_s:
            raise UsageError(f"--restart at {r.at_s:g} s is after the end of the run")
    return scenario, restarts


def run(args: argparse.Namespace) -> int:
    scenario, restarts = _scenario(args)
    settings = args._settings
    plans: list[tuple[str, Restart | None]] = [("no restart", None)]
    plans += [(f"restart ({r.mode})", r) for r in restarts]
    records: list[RunRecord] = []
    outcomes: list[RunOutcome] = []
    with tempfile.TemporaryDirectory(prefix="vibewatch-live-") as tmp, \
            broker(args.bootstrap) as bootstrap:
        work = args.work_dir or Path(tmp)
        for name, restart in plans:
            record = run_once(scenario, name=name, bootstrap=bootstrap, kafka=settings.kafka,
                              speed=args.speed, restart=restart, work_dir=work,
                              show_progress=True)
            records.append(record)
            outcomes.append(outcome(record, scenario))
    promtool: dict[str, object] | None = None
    if args.promtool_test is not None:
        from service.evaluation.live.promtool import run_promtool, write_test

        command = "vibewatch evaluate live " + " ".join(shlex.quote(a) for a in sys.argv[3:])
        write_test(args.promtool_test, records, scenario, settings.scoring.warning_score,
                   command.strip())
        passed, output = run_promtool(args.promtool_test)
        promtool = {"path": str(args.promtool_test), "passed": passed, "output": output}
    print_outcomes(scenario, args.speed, outcomes, promtool)
    if args.json is not None:
        report = {
            "scenario": {**asdict(scenario), "speed": args.speed},
            "scoring": settings.scoring.model_dump(),
            "runs": [{**asdict(o), "passed": o.passed} for o in outcomes],
            "passed": all(o.passed for o in outcomes),
            "promtool": promtool,
        }
        args.json.write_text(json.dumps(report, indent=1))
    return 0
