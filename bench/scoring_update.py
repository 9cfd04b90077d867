"""Cost of one ``EngineScoring.update`` call on the service's hot path.

Run: ``.venv/bin/python -m bench.scoring_update [--engines 10000] [--repeat 200]``. Builds the
scoring from the service's default ``ScoringSettings``, warms ``--engines`` engines past
commissioning on healthy noise, then times ``update`` for one reading per engine (one
channel, as the default model) and prints the fastest and the median call in ms. The
fastest is the figure to compare between versions on a shared machine.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time

import numpy as np

from service.config import ScoringSettings
from service.scoring import EngineScoring


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", type=int, default=10_000, help="rows per call (10000)")
    parser.add_argument("--repeat", type=int, default=200, help="timed calls (200)")
    parser.add_argument("--warm", type=int, default=0,
                        help="readings before timing (default: past commissioning, +100)")
    parser.add_argument("--interval-ms", type=int, default=1000,
                        help="event-time step between readings (1000)")
    args = parser.parse_args(argv)
    scoring = EngineScoring(ScoringSettings(), 1)
    rng = np.random.default_rng(0)
    n = args.engines
    state = scoring.init_state(n)
    with_ts = "ts_ms" in inspect.signature(scoring.update).parameters
    ts = np.full(n, 1_700_000_000_000, dtype=np.int64)

    def call(res: np.ndarray, st: np.ndarray) -> np.ndarray:
        if with_ts:
            return scoring.update(res, st, ts)[1]
        return scoring.update(res, st)[1]  # type: ignore[call-arg]  # before ts_ms existed

    settings = scoring.settings if hasattr(scoring, "settings") else None
    warm = args.warm or (
        100 + max(settings.commission_readings,
                  int(settings.commission_s * 1000 / args.interval_ms) + 1)
        if settings is not None and hasattr(settings, "commission_s") else 300
    )
    for _ in range(warm):
        ts += args.interval_ms
        state = call(np.abs(rng.normal(size=(n, 1))), state)
    times = []
    for _ in range(args.repeat):
        res = np.abs(rng.normal(size=(n, 1)))
        ts += args.interval_ms
        t0 = time.perf_counter()
        state = call(res, state)
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1000
    sys.stdout.write(
        f"EngineScoring.update, {n} engines, {warm} readings in: fastest {ms.min():.3f} ms, "
        f"median {np.median(ms):.3f} ms over {args.repeat} calls\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
