"""One virtualenv per peer (``.venv-peers/<peer>``, git-ignored), made on first use.

The project's own virtualenv does not grow: each peer's pinned closure is in
``bench/peers/requirements-<peer>.txt`` and is installed with pip into its own virtualenv,
again whenever that file changes. The project is not installed there: a peer process runs
with the repository on ``PYTHONPATH`` (the kernel and the scoring are imported from it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
VENVS = ROOT / ".venv-peers"
PEERS = ("quix", "faust", "bytewax")


def requirements(peer: str) -> Path:
    return Path(__file__).resolve().parent / f"requirements-{peer}.txt"


def python(peer: str) -> Path:
    """The interpreter of ``peer``'s virtualenv (made or updated first if needed).

    Raises RuntimeError naming the peer and pip's last output when the install fails.
    """
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}; known: {', '.join(PEERS)}")
    env = VENVS / peer
    exe = env / "bin" / "python"
    req = requirements(peer)
    stamp = env / ".requirements.txt"
    wanted = req.read_text()
    if exe.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        return exe
    print(f"installing the {peer} peer into {env.relative_to(ROOT)} from "
          f"{req.relative_to(ROOT)} (first use; a minute or two)", flush=True)
    if not exe.is_file():
        _run([sys.executable, "-m", "venv", str(env)], peer)
    _run([str(exe), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
          str(req)], peer)
    stamp.write_text(wanted)
    return exe


def environment() -> dict[str, str]:
    """The environment a peer process runs in: the repository importable, quiet logs."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONWARNINGS": "ignore"}


def _run(cmd: list[str], peer: str) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"installing the {peer} peer failed ({' '.join(cmd[:4])} ...):\n"
                           f"{(out.stdout + out.stderr)[-3000:]}")
