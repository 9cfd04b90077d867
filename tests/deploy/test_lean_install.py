"""The serving install (``pip install vibewatch``, no ``train`` extra) serves, simulates,
replays and evaluates; training says in one line which extra it needs.

Runs the commands of the serving-only virtualenv that ``make test`` builds (``make
serve-venv``: ``.venv-serve``, the project installed without extras). Without it these tests
fail, naming the make target, rather than skip.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.service.test_end_to_end import check_end_to_end

ROOT = Path(__file__).resolve().parents[2]
SERVE_VENV = ROOT / ".venv-serve"
TRAINING = ("tensorflow", "keras", "matplotlib")


def _bin(name: str) -> str:
    path = SERVE_VENV / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} missing: build the serving-only install with `make serve-venv`")
    return str(path)


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_bin("vibewatch"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_the_serving_install_has_no_training_libraries() -> None:
    code = f"import importlib.util as u; print([m for m in {TRAINING!r} if u.find_spec(m)])"
    proc = subprocess.run([_bin("python"), "-c", code], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("command", [
    ["serve"], ["simulate"], ["replay"],
    ["evaluate", "forecast"], ["evaluate", "nab"], ["evaluate", "labeled"],
    ["evaluate", "lead-time"],
])
def test_every_serving_command_starts(command: list[str]) -> None:
    proc = _run(*command, "--help")
    assert proc.returncode == 0, proc.stderr


def test_evaluate_forecast_runs_on_the_numpy_kernel() -> None:
    proc = _run("evaluate", "forecast", "--model", "models/artifacts/default",
                "--data", "ims:models/data/ims", "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"method": "model"' in proc.stdout


@pytest.mark.parametrize("command", ["train", "tune"])
def test_training_and_tuning_name_the_extra_they_need(command: str, tmp_path: Path) -> None:
    proc = _run(command, "--data", "ims:models/data/ims", "--out", str(tmp_path / "a"))
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "pip install 'vibewatch[train]'" in last and f"vibewatch {command}" in last, last


@pytest.mark.integration
def test_serve_and_simulate_from_the_serving_install_end_to_end(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    check_end_to_end(kafka_bootstrap, tmp_path, _bin("vibewatch"))
