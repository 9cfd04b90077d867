"""The `peers` scenario: vibewatch and the same job on Quix Streams, Faust and Bytewax.

Same readings topics, model artifact and scoring for all; one run, in this order:
1. sustained throughput at each fleet size, single-reading and 50-reading messages
   (vibewatch: ``bench.service_run.run_service``, exactly-once, the whole topic; peers:
   until the topic's end or ``--peer-budget`` seconds, each framework's default commit
   interval and its strongest guarantee);
2. RSS per engine (vibewatch: ``bench.memory``; peers: their process's RSS growth from the
   first message to the end of the single-reading run, every engine then holding state);
3. restart with the state of the largest fleet (vibewatch: ``run_service`` again on the same
   group, with its local checkpoint and then without, restoring from the changelog; peers:
   the same process again, local state kept, then wiped for the peers whose state is also
   in a changelog);
4. latency at ``--peer-latency-rates`` (vibewatch: ``bench.latency.run_latency``; peers:
   :func:`bench.peers.measure.latency`), commit interval 100 ms for all that have one.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench.data import Dataset, fill
from bench.peers import measure
from bench.peers.venv import PEERS, python, requirements
from bench.report import table

FRAMEWORK = {"quix": "quixstreams", "faust": "faust-streaming", "bytewax": "bytewax"}


def versions() -> dict[str, dict[str, str]]:
    """Each peer's framework and Kafka client versions, from its pinned requirements."""
    out: dict[str, dict[str, str]] = {}
    for peer in PEERS:
        pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", requirements(peer).read_text(),
                               re.M))
        out[peer] = {k: pins[k] for k in (FRAMEWORK[peer], "confluent-kafka", "aiokafka",
                                          "rocksdict", "numpy") if k in pins}
    return out


def datasets(a: argparse.Namespace) -> list[Dataset]:
    run = uuid.uuid4().hex[:6]
    out = []
    for engines in a.peer_engines:
        for form, batch, total in (("single", 1, a.peer_single_readings),
                                   ("batch", a.batch, a.peer_batch_readings)):
            ticks = max(1, total // engines)
            out.append(Dataset(f"bench-peers-{run}-{engines}-{form}", engines, ticks, batch))
    return out


def run_peers(a: argparse.Namespace, doc: dict[str, Any], bootstrap: str,
              progress: bool) -> None:
    """Install the peers (first use), fill the topics, measure everything, print the tables;
    the results go to ``doc["peers"]``. A peer that cannot be installed is reported in
    ``doc["peers"]["errors"]`` and left out; any other failure ends the run."""
    peers = [p for p in a.peers if p in PEERS]
    res: dict[str, Any] = {"versions": versions(), "guarantees": measure.GUARANTEES,
                           "peers": peers, "errors": {}}
    doc["peers"] = res
    for peer in list(peers):
        try:
            python(peer)
        except RuntimeError as exc:  # say so in the results, measure the others
            res["errors"][peer] = str(exc)
            peers.remove(peer)
            print(f"peer {peer} not measured: {exc}", flush=True)
    sets = datasets(a)
    for ds in sets:
        took = fill(bootstrap, ds, progress=progress)
        print(f"filled {ds.topic}: {ds.readings:,} readings in {took:.1f} s", flush=True)
    work = Path(tempfile.mkdtemp(prefix="vibewatch-bench-peers-"))  # the peers' local state
    try:
        _measure(a, res, bootstrap, peers, sets, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_tables(res)


def _measure(a: argparse.Namespace, res: dict[str, Any], bootstrap: str, peers: list[str],
             sets: list[Dataset], work: Path) -> None:
    from bench.latency import run_latency
    from bench.memory import measure as memory
    from bench.service_run import run_service
    from service.config import KafkaSettings

    prefixes: dict[str, str] = {}
    checkpoint_dir = Path(tempfile.mkdtemp(prefix="vibewatch-peers-checkpoints-"))
    runs: list[dict[str, Any]] = []
    for ds in sets:
        prefix = prefixes[ds.topic] = f"bench-{uuid.uuid4().hex[:8]}"
        r = run_service(bootstrap, ds, a.artifact, exactly_once=True, prefix=prefix,
                        checkpoint_dir=checkpoint_dir)
        runs.append({"peer": "vibewatch", "engines": ds.engines, "form": ds.form,
                     "readings": r.readings, "of_readings": ds.readings, "seconds": r.seconds,
                     "readings_per_s": r.readings_per_s, "finished": True,
                     "startup_s": r.startup_s})
        _said(runs[-1])
        for peer in peers:
            runs.append(measure.throughput(peer, bootstrap, ds, a.artifact, work,
                                           a.peer_budget))
            _said(runs[-1])
    res["throughput"] = runs

    memory_rows = []
    for n in a.peer_engines:
        m: dict[str, Any] = memory("rss", engines=n, window=256, artifact=a.artifact)
        memory_rows.append({"peer": "vibewatch", "engines": n,
                            "bytes_per_engine": m["bytes_per_engine"],
                            "method": "bench.memory: VmRSS growth / engines after malloc_trim"})
    for row in runs:
        if row["peer"] != "vibewatch" and row["form"] == "single":
            memory_rows.append({
                "peer": row["peer"], "engines": row["engines"],
                "bytes_per_engine": round((row["rss_end_kib"] - row["rss_first_kib"]) * 1024
                                          / row["engines"], 1),
                "state_on_disk_mib": row["state_on_disk_mib"],
                "method": "peer VmRSS growth, first message to end of run / engines"})
    res["memory"] = memory_rows

    big = next(ds for ds in sets if ds.engines == max(a.peer_engines) and ds.batch == 1)
    tick = big.ticks  # one new reading per engine per restart, after the topic's last
    restarts = []
    prefix = prefixes[big.topic]
    for wipe in (False, True):  # the local checkpoint (written at shutdown), then none
        checkpoints = _checkpoints(checkpoint_dir, prefix)
        if wipe:
            for path in checkpoints:
                path.unlink()
        measure.append_tick(bootstrap, big, tick)
        tick += 1
        again = run_service(bootstrap, Dataset(big.topic, big.engines, 1), a.artifact,
                            exactly_once=True, prefix=prefix, checkpoint_dir=checkpoint_dir)
        restarts.append({"peer": "vibewatch", "engines": big.engines,
                         "local_state": bool(checkpoints) and not wipe,
                         "restart_s": again.startup_s, "process_start_to_first_s": None})
    shutil.rmtree(checkpoint_dir, ignore_errors=True)  # those instances are gone for good
    for peer in peers:
        run = next(x for x in runs if x["peer"] == peer and x["topic"] == big.topic)
        for wipe in (False, True) if peer in measure.CHANGELOG else (False,):
            restarts.append(measure.restart(peer, bootstrap, big, a.artifact, run, tick, wipe))
            tick += 1
            print(f"restart {restarts[-1]}", flush=True)
    res["restart"] = restarts

    lat = []
    commit_s = KafkaSettings.model_fields["commit_interval_ms"].default / 1000
    dims = _dims(a.artifact)
    for rate in a.peer_latency_rates:
        v = run_latency(bootstrap, a.artifact, rate, a.latency_seconds, rate)
        seen, sent = v["committed"].get("n", 0), v["kafka"].get("n", 0)
        visible = round(min(seen / sent, 1.0), 3) if sent else 0.0
        committed = {**v["committed"]}
        if visible < 0.99:  # as for the peers: a p99 of the readings it got to is no p99
            committed.update(p99_ms=None, max_ms=None)
        lat.append({"peer": "vibewatch", "rate": rate, "engines": rate,
                    "commit_interval_s": commit_s, "visible": visible,
                    "committed": committed, "kafka": v["kafka"], "processed_per_s": None})
        for peer in peers:
            lat.append(measure.latency(peer, bootstrap, a.artifact, dims, work, rate,
                                       a.latency_seconds, rate, commit_s))
            print(f"latency {peer} at {rate}/s: {lat[-1]['committed']} "
                  f"(visible {lat[-1]['visible']})", flush=True)
    res["latency"] = lat


def _checkpoints(where: Path, prefix: str) -> list[Path]:
    """The local checkpoint files of the service instance of ``prefix`` in ``where``."""
    return sorted(where.glob(f"{prefix}.group.*.ckpt"))


def _dims(artifact: Path) -> Any:
    from bench.peers.job import PeerJob

    return PeerJob(artifact).dims


def _said(r: dict[str, Any]) -> None:
    print(f"{r['peer']} {r['engines']} engines {r['form']}: {r['readings_per_s']:,.0f} "
          f"readings/s ({r['readings']:,} readings in {r['seconds']:.1f} s"
          f"{'' if r['finished'] else ', stopped at the budget'})", flush=True)


def print_tables(res: dict[str, Any]) -> None:
    """The side-by-side tables of one peers run (also used to print a stored result)."""
    names = ["vibewatch", *res["peers"]]
    rows = []
    cases = sorted({(r["engines"], r["form"]) for r in res["throughput"]})
    for engines, form in cases:
        rate = {r["peer"]: r["readings_per_s"] for r in res["throughput"]
                if (r["engines"], r["form"]) == (engines, form)}
        best = max((v for k, v in rate.items() if k != "vibewatch" and v), default=0.0)
        rows.append([engines, form, *(rate.get(n) for n in names),
                     f"{rate['vibewatch'] / best:,.0f}x" if best else ""])
    print("\nPeers: sustained readings/s (vibewatch exactly-once; peers at their strongest "
          "guarantee, default commit interval)")
    print(table(["engines", "form", *names, "vibewatch / best peer"], rows))
    mem = {(m["peer"], m["engines"]): m["bytes_per_engine"] for m in res["memory"]}
    sizes = sorted({m["engines"] for m in res["memory"]})
    print("\nPeers: RSS bytes per engine (window 256, LSTM(64))")
    print(table(["engines", *names], [[n, *(mem.get((p, n)) for p in names)] for n in sizes]))
    print("\nPeers: restart with the state of the largest fleet (framework start to first "
          "reading processed)")
    print(table(["system", "engines", "local state", "restart s", "process start s"],
                [[r["peer"], r["engines"], "kept" if r["local_state"] else "none",
                  r["restart_s"], r["process_start_to_first_s"]] for r in res["restart"]]))
    print("\nPeers: latency, reading timestamp to result visible (read_committed); p99 is "
          "empty where the system fell behind")
    print(table(["system", "rate/s", "engines", "commit s", "visible", "p50 ms", "p99 ms",
                 "processed/s"],
                [[r["peer"], r["rate"], r["engines"], r["commit_interval_s"], r["visible"],
                  r["committed"].get("p50_ms"), r["committed"].get("p99_ms"),
                  r.get("processed_per_s")] for r in res["latency"]]), flush=True)
