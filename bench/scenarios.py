"""The scenarios of one benchmark run, in order; each prints its table as it finishes."""

from __future__ import annotations

import argparse
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench.baselines import BaselineResult, run_baselines
from bench.broker import running_broker
from bench.data import Dataset, fill
from bench.report import table
from bench.service_run import ServiceResult, run_service

ROOT = Path(__file__).resolve().parent.parent

TARGETS = {"single": 40_000.0, "batch": 250_000.0}


def datasets(a: argparse.Namespace) -> list[Dataset]:
    run = uuid.uuid4().hex[:6]
    out = []
    for engines in a.engines:
        for form in a.forms:
            batch = 1 if form == "single" else a.batch
            total = a.single_readings if form == "single" else a.batch_readings
            ticks = max(1, total // engines)
            out.append(Dataset(f"bench-{run}-{engines}-{form}", engines, ticks, batch))
    return out


def run_all(a: argparse.Namespace, doc: dict[str, Any]) -> None:
    wanted = set(a.scenarios)
    progress = not a.no_progress
    if wanted & {"restart", "failover", "broker-restart"}:
        restarts(a, doc)
    needs_broker = wanted & {"throughput", "baselines", "latency", "coldstart", "peers", "api"}
    if wanted & {"memory", "cost"}:
        memory_scenarios(a, doc)
    if "channels" in wanted:
        channel_cost(a, doc)
    if not needs_broker:
        return
    with running_broker(a.bootstrap) as bootstrap:
        doc["broker"] = "external " + bootstrap if a.bootstrap else "local (started by bench)"
        if wanted & {"throughput", "baselines"}:
            throughput(a, doc, bootstrap, progress)
        if "latency" in wanted:
            latency(a, doc, bootstrap)
        if "coldstart" in wanted:
            coldstart(a, doc, bootstrap, progress)
        if "peers" in wanted:
            from bench.peers.scenario import run_peers

            run_peers(a, doc, bootstrap, progress)
        if "api" in wanted:
            api(a, doc, bootstrap)


def api(a: argparse.Namespace, doc: dict[str, Any], bootstrap: str) -> None:
    from bench.api import run_api

    r = run_api(bootstrap, a.artifact, engines=a.api_engines, rate=a.api_rate,
                seconds=a.api_seconds, clients=a.api_clients,
                log_dir=Path(tempfile.gettempdir()) / "vibewatch-bench")
    quiet, loaded = r["without_api_load"], r["with_api_load"]
    w = loaded["wrk"]
    print(f"api: GET {r['query']} at {r['engines']:,} engines, {r['clients']} clients, "
          f"ingesting {r['rate']:,.0f}/s: p50 {w.get('p50')} ms, p99 {w.get('p99')} ms, "
          f"{w['requests_per_s']} requests/s; processed {quiet['processed_per_s']:,.0f}/s "
          f"without and {loaded['processed_per_s']:,.0f}/s with the API load "
          f"(ratio {r['ingestion_ratio']}), lag at the ends {quiet['lag_end']:.0f} / "
          f"{loaded['lag_end']:.0f}; load {loaded['load_1m_end']}", flush=True)
    doc["api"] = r


def throughput(a: argparse.Namespace, doc: dict[str, Any], bootstrap: str,
               progress: bool) -> None:
    sets = datasets(a)
    fills = []
    for ds in sets:
        took = fill(bootstrap, ds, progress=progress)
        fills.append({"topic": ds.topic, "messages": ds.messages, "readings": ds.readings,
                      "seconds": round(took, 2), "messages_per_s": round(ds.messages / took)})
        print(f"filled {ds.topic}: {ds.messages:,} messages / {ds.readings:,} readings in "
              f"{took:.1f} s ({ds.messages / took:,.0f} msg/s)", flush=True)
    doc["fills"] = fills
    service: dict[str, list[ServiceResult]] = {}
    repeats: dict[tuple[str, str], list[float]] = {}
    if "throughput" in a.scenarios:
        for _ in range(a.repeat):  # interleaved, so a slow spell hits every case once
            for ds in sets:
                for mode in a.modes:
                    r = run_service(bootstrap, ds, a.artifact, exactly_once=mode == "eos")
                    service.setdefault(ds.topic, []).append(r)
                    repeats.setdefault((ds.topic, mode), []).append(r.readings_per_s)
                    print(f"service {ds.engines} engines {ds.form} {mode}: "
                          f"{r.readings_per_s:,.0f} readings/s ({r.seconds:.1f} s, "
                          f"ready after {r.startup_s:.1f} s)", flush=True)
        for topic, runs in service.items():  # keep the median run of each mode
            service[topic] = [_median_run([r for r in runs if r.mode == m]) for m in a.modes]
    base: dict[str, dict[str, BaselineResult]] = {}
    if "baselines" in a.scenarios:
        def show(r: BaselineResult) -> None:
            base.setdefault(r.topic, {})[r.name] = r
            print(f"baseline {r.name} {r.topic}: {r.readings_per_s:,.1f} readings/s "
                  f"({r.readings} readings in {r.seconds:.1f} s)", flush=True)

        run_baselines(bootstrap, sets, a.artifact, sample=a.naive_sample,
                      budget_s=a.rewindow_budget, on_result=show)
    rows: list[list[Any]] = []
    out: list[dict[str, Any]] = []
    for ds in sets:
        b = base.get(ds.topic, {})
        naive, rew = b.get("naive"), b.get("rewindow")
        form = "single" if ds.batch == 1 else "batch"
        for r in service.get(ds.topic, []):
            rates = repeats[(ds.topic, r.mode)]
            spread = (f"{min(rates):,.0f}-{max(rates):,.0f}" if len(rates) > 1 else "")
            x_naive = r.readings_per_s / naive.readings_per_s if naive else None
            x_rew = r.readings_per_s / rew.readings_per_s if rew else None
            rows.append([ds.engines, ds.form, r.mode, r.readings, r.seconds, r.readings_per_s,
                         spread, f"{x_naive:,.0f}x" if x_naive else "",
                         f"{x_rew:.2f}x" if x_rew else "",
                         f">= {TARGETS[form]:,.0f}" if r.mode == "eos" else ""])
            out.append({"engines": ds.engines, "form": ds.form, **r.to_json(),
                        "all_runs_readings_per_s": rates,
                        "speedup_vs_naive": x_naive and round(x_naive, 1),
                        "speedup_vs_rewindow": x_rew and round(x_rew, 2)})
        for name, br in b.items():
            rows.append([ds.engines, ds.form, name, br.readings, br.seconds, br.readings_per_s,
                         "", "", "", ""])
    doc["throughput"] = out
    doc["baselines"] = [r.to_json() for b in base.values() for r in b.values()]
    print("\nSustained throughput (readings/s, median of the repeats; eos = exactly-once, "
          "alos = at-least-once; naive extrapolated from its sample)")
    print(table(["engines", "form", "run", "readings", "seconds", "readings/s", "runs",
                 "vs naive",
                 "vs rewindow", "target"], rows), flush=True)


def _median_run(runs: list[ServiceResult]) -> ServiceResult:
    return sorted(runs, key=lambda r: r.readings_per_s)[len(runs) // 2]


def memory_scenarios(a: argparse.Namespace, doc: dict[str, Any]) -> None:
    from bench.memory import measure

    if "memory" in a.scenarios:
        rows = []
        res = []
        for n in a.memory_engines:
            r = measure("rss", engines=n, window=256, artifact=a.artifact)
            res.append(r)
            rows.append([n, r["window"], r["store_capacity"], r["row_bytes"],
                         r["bytes_per_engine"], r["bytes_per_engine_untrimmed"],
                         round(r["rss_after_kib"] / 1024, 1)])
        doc["memory"] = res
        print("\nMemory per tracked engine (window 256, LSTM(64); VmRSS growth / engines "
              "after malloc_trim, as the service trims periodically, and before it; "
              "target <= 4,096 B)")
        print(table(["engines", "window", "capacity", "row bytes", "RSS B/engine",
                     "untrimmed B/engine", "RSS MiB"], rows), flush=True)
    if "cost" in a.scenarios:
        rows = []
        res = []
        engines = 10_000 if 10_000 in a.cost_engines else a.cost_engines[0]
        points = [(engines, w) for w in a.windows]
        points += [(n, 256) for n in a.cost_engines if (n, 256) not in points]
        for n, w in points:
            ticks = max(3, 50_000 // n)
            r = measure("cost", engines=n, window=w, artifact=a.artifact, ticks=ticks)
            res.append(r)
            rows.append([n, w, r["readings"], r["process_us"], r["changelog_encode_us"],
                         r["changelog_row_bytes"]])
        doc["cost"] = res
        print("\nCost per reading, no Kafka (BatchProcessor.process, and encoding the "
              "changelog rows a commit writes, one per engine per poll of 5,000 readings)")
        print(table(["engines", "window", "readings", "process us", "changelog encode us",
                     "changelog row B"], rows), flush=True)


#: The `channels` scenario's runs: (label, artifact, scoring settings). The first is the
#: 1-channel baseline the others are compared with, in the same run.
CHANNEL_RUNS: tuple[tuple[str, Path, dict[str, Any]], ...] = (
    ("1 channel (default model, rms)", ROOT / "models" / "artifacts" / "default", {}),
    ("8 channels (ims1-8ch, rms)", ROOT / "models" / "artifacts" / "ims1-8ch", {}),
    ("8 channels (ims1-8ch, joint)", ROOT / "models" / "artifacts" / "ims1-8ch",
     {"channel_reduce": "joint"}),
)
#: Phases measured: every timed reading commissioning (the default 600 s at 1 reading/s:
#: a fleet starting), and the steady state after a commissioning of 30 readings that is not
#: timed (settings, untimed readings per engine).
CHANNEL_PHASES: tuple[tuple[str, dict[str, Any], int], ...] = (
    ("commissioning", {}, 0),
    ("steady", {"commission_s": 0.0, "commission_readings": 30}, 40),
)


def channel_cost(a: argparse.Namespace, doc: dict[str, Any]) -> None:
    """Cost per reading and memory per engine at 8 channels against 1 channel (issue 13's
    target: at most 2x), each measured in a fresh interpreter, window 256."""
    from bench.memory import measure

    rows, res = [], []
    for n in a.channels_engines:
        for phase, phase_settings, warm_ticks in CHANNEL_PHASES:
            base: float | None = None
            for label, artifact, scoring in CHANNEL_RUNS:
                settings = {**scoring, **phase_settings}
                ticks = max(3, 50_000 // n)
                c = measure("cost", engines=n, window=256, artifact=artifact, ticks=ticks,
                            scoring=settings, warm_ticks=warm_ticks)
                m = measure("rss", engines=n, window=256, artifact=artifact, scoring=settings)
                base = c["process_us"] if base is None else base
                ratio = round(c["process_us"] / base, 2)
                res.append({"label": label, "phase": phase, "engines": n, "scoring": settings,
                            "cost": c, "memory": m, "ratio_to_1_channel": ratio})
                rows.append([label, phase, n, c["process_us"], ratio,
                             c["changelog_row_bytes"], m["bytes_per_engine"]])
    doc["channels"] = res
    print("\nCost per reading and memory per engine, 8 channels against 1 (window 256; "
          "target: at most 2x the 1-channel cost)")
    print(table(["run", "phase", "engines", "process us", "x 1 channel", "changelog row B",
                 "RSS B/engine"], rows), flush=True)


def latency(a: argparse.Namespace, doc: dict[str, Any], bootstrap: str) -> None:
    from bench.latency import run_latency
    from service.config import KafkaSettings

    rows = []
    res = []
    default_ms = KafkaSettings.model_fields["commit_interval_ms"].default
    # One reading per engine per second, and the same rate from a tenth of the engines
    # (10 readings/s each: fewer changelog rows per commit); the top rate also with twice
    # the default commit interval, the knob that trades committed latency for throughput.
    top = max(a.latency_rates)
    cases: list[tuple[int, int, int | None]] = [
        (rate, engines, None) for rate in a.latency_rates
        for engines in sorted({rate, max(rate // 10, 1)}, reverse=True)
    ]
    cases += [(top, top, 2 * default_ms), (top, max(top // 10, 1), 2 * default_ms)]
    for rate, engines, commit_ms in cases:
        r = run_latency(bootstrap, a.artifact, rate, a.latency_seconds, engines, commit_ms)
        res.append(r)
        for path in ("kafka", "api", "committed"):
            q = r[path]
            rows.append([rate, r["engines"], commit_ms or default_ms, path, q.get("n", 0),
                         q.get("p50_ms"), q.get("p95_ms"), q.get("p99_ms"), q.get("max_ms")])
        print(f"latency at {rate}/s over {engines} engines, commit {commit_ms or default_ms} "
              "ms done", flush=True)
    doc["latency"] = res
    print("\nLatency, reading timestamp to visible (kafka: a plain consumer of the readings "
          "topic, the transport floor; api: the store the API reads; committed: "
          "read_committed consumer of the changelog = anomalies topic); target p99 <= 300 ms "
          "at 10k/s")
    print(table(["rate/s", "engines", "commit ms", "visible in", "n", "p50 ms", "p95 ms",
                 "p99 ms", "max ms"], rows), flush=True)


def coldstart(a: argparse.Namespace, doc: dict[str, Any], bootstrap: str,
              progress: bool) -> None:
    from bench.coldstart import run_coldstart

    res = [run_coldstart(bootstrap, a.artifact, progress=progress, fleet_view=fv)
           for fv in (True, False)]
    doc["coldstart"] = res
    print("\nCold start of `vibewatch serve` (process start to /readyz 200; target <= 3 s, "
          "<= 200 MB at 10k engines); default settings, then with api.fleet_view off")
    print(table(["fleet view", "ready s", "HTTP up s", "RSS ready MiB", "engines",
                 "RSS loaded MiB", "RSS settled MiB", "peak MiB"],
                [["on" if r["fleet_view"] else "off", r["ready_s"], r["http_up_s"],
                  r["rss_ready_mib"], r["engines"], r["rss_loaded_mib"], r["rss_settled_mib"],
                  r["hwm_mib"]]
                 for r in res]), flush=True)


def restarts(a: argparse.Namespace, doc: dict[str, Any]) -> None:
    """The restart, failover and broker-restart scenarios (bench/restart.py)."""
    from bench import restart

    wanted = set(a.scenarios)
    out: dict[str, Any] = doc.setdefault("restarts", {})
    with running_broker(a.bootstrap) as bootstrap:
        if "restart" in wanted:
            for engines in a.restart_engines:
                r = restart.restart(bootstrap, engines, a.restart_rate, a.traffic_s)
                out.setdefault("restart", []).append(r)
                for kind in ("graceful", "kill9"):
                    k = r[kind]
                    print(f"restart {engines:,} engines after {a.traffic_s:.0f} s at "
                          f"{a.restart_rate:,.0f}/s, {kind}: ready {k['to_ready_s']} s, "
                          f"processing {k['to_processing_s']} s, caught up "
                          f"{k['to_caught_up_s']} s; RSS running {k['rss_running_mib']} MiB, "
                          f"peak {k['rss_peak_mib']} ({k['rss_peak_ratio']}x), settled "
                          f"{k['rss_settled_mib']}", flush=True)
        if "failover" in wanted:
            r = restart.failover(bootstrap, min(a.restart_engines), a.restart_rate / 10)
            out["failover"] = r
            print(f"failover ({r['engines']:,} engines): the survivor owns every partition "
                  f"{r['to_owning_all_s']} s after the kill, caught up after "
                  f"{r['to_caught_up_s']} s", flush=True)
    if "broker-restart" in wanted:
        if a.bootstrap:
            print("broker-restart: skipped (needs a broker the benchmark starts itself)")
            return
        from bench.broker import owned_broker

        with owned_broker() as broker:
            r = restart.broker_restart(broker, min(a.restart_engines), a.restart_rate / 10)
            out["broker_restart"] = r
            print(f"broker restart ({r['engines']:,} engines): processing again "
                  f"{r['to_processing_s']} s after the broker is back, ready after "
                  f"{r['to_ready_s']} s", flush=True)
