"""Command line of a peer process (``python -m bench.peers.<peer>_app --help``).

The scenario starts every peer with these options; a peer can also be run by hand against a
broker, for example ``.venv-peers/quix/bin/python -m bench.peers.quix_app --bootstrap
127.0.0.1:9092 --topic readings --out-topic anomalies --group g --state-dir /tmp/q``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_ARTIFACT = ROOT / "models" / "artifacts" / "default"


@dataclass(frozen=True)
class PeerOptions:
    bootstrap: str
    topic: str
    out_topic: str
    group: str
    state_dir: Path
    artifact: Path
    expect: int
    commit_interval_s: float | None  # None: the framework's default
    probe_topic: str | None
    tail: bool


def parse(argv: list[str] | None, prog: str) -> PeerOptions:
    p = argparse.ArgumentParser(
        prog=prog, description="One peer of the `peers` benchmark (see bench/peers/).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap address")
    p.add_argument("--topic", required=True, help="readings topic (6 partitions)")
    p.add_argument("--out-topic", required=True, help="topic the status changes go to")
    p.add_argument("--group", required=True, help="consumer group / application id")
    p.add_argument("--state-dir", type=Path, required=True, help="local state directory")
    p.add_argument("--artifact", type=Path, default=DEFAULT_ARTIFACT, help="model artifact")
    p.add_argument("--expect", type=int, default=0,
                   help="print DONE after this many readings (0: never)")
    p.add_argument("--commit-interval", type=float, default=None,
                   help="seconds between commits/checkpoints (default: the framework's)")
    p.add_argument("--probe-topic", default=None,
                   help="also publish (engine, last ts) per message here (latency runs of "
                   "peers without a changelog)")
    p.add_argument("--tail", action="store_true",
                   help="keep reading at the end of the topic (Bytewax; the others always do)")
    a = p.parse_args(argv)
    if a.commit_interval is not None and a.commit_interval <= 0:
        p.error("--commit-interval must be > 0")
    return PeerOptions(a.bootstrap, a.topic, a.out_topic, a.group, a.state_dir, a.artifact,
                       a.expect, a.commit_interval, a.probe_topic, a.tail)
