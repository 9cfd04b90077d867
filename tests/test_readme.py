"""Every command in the README works as written, from a fresh clone.

The commands are read from the README itself (fenced ``sh`` blocks, and inline code that
starts like a command: ``make``, ``.venv/bin/``, ``curl``), so a command added later is
tested too: each must match exactly one rule below, which says how it is run:

- ``run``: as written;
- ``quick``: a quick form of a long command (the rule says what changes: fewer epochs, a
  subset of the NAB files, one dataset, ``--quick`` sizes);
- ``stack``: against the stack of ``make run`` (which is itself run as written), with the
  broker ``make run`` printed in ``VIBEWATCH_KAFKA__BOOTSTRAP_SERVERS``, as the README says;
- ``dry``: ``make -n TARGET`` only, for targets that cannot run inside ``make test``
  (``make test`` itself, the soak tests, the full benchmarks, the set-up targets), with the
  reason;
- ``shared``: a command whose data is not shipped (SKAB is GPL-3.0): its quick form, given
  the data's path in ``../shared/data`` beside this checkout, and skipped with that reason
  when it is not there.

"A fresh clone": the tracked (and new, not ignored) files copied to a temporary directory
with nothing beside it (no ``../shared``), with this checkout's virtualenv and Kafka jars
linked in (building them again would take minutes and is what ``make test`` did already).
The API port of ``make run`` and of ``serve`` comes from ``VIBEWATCH_API__PORT`` (the
service's setting), so the test does not collide with a stack already running on 8000;
``localhost:8000`` in a README command means that port.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
COMMAND_START = ("make ", ".venv/bin/", "curl ", "vibewatch ", "bench/", "python")
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()
NAB_QUICK_FILES = ("realKnownCause/nyc_taxi.csv", "artificialWithAnomaly/art_daily_jumpsup.csv")

pytestmark = pytest.mark.integration


def readme_commands(text: str) -> list[str]:
    """Commands of the README, in order, each once."""
    found: list[str] = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                found.append(line)
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    for span in re.findall(r"`([^`\n]+)`", prose):
        # "`vibewatch serve` to ready" names a process; a command has options or a path
        named = re.fullmatch(r"vibewatch [a-z-]+", span)
        if span.startswith(COMMAND_START) and " " in span and not named:
            found.append(span.strip())
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class Rule:
    pattern: str  #: regular expression the whole command matches
    how: str  #: run, quick, stack or dry
    why: str = ""
    quick: Callable[[str], str] | None = None
    timeout_s: float = 300.0


def _nab_quick(cmd: str) -> str:
    return cmd.replace("--data models/data/nab-dev", "--data nab-quick")


RULES = (
    Rule(r"make run", "stack", "started first, then the commands that need it"),
    Rule(r"curl .*localhost:8000/.*", "stack"),
    Rule(r"\.venv/bin/vibewatch (serve|simulate|replay) .*|\.venv/bin/vibewatch serve", "stack"),
    Rule(r"make reset-local", "stack", "after make run stopped: .run goes, nothing else"),
    Rule(r"make help", "run"),
    Rule(r"make (test|test-slow)", "dry", "make test cannot run inside make test; the slow "
         "tests take an hour"),
    Rule(r"make bench(-peers)?", "dry", "hours of benchmarks (and three stream processors to "
         "install); the quick bench commands below run"),
    Rule(r"make (lint|venv|serve-venv|kafka-jars|system-deps|clean)", "dry",
         "make test ran lint, venv, serve-venv, kafka-jars and system-deps already; clean "
         "would delete the virtualenv the other commands use"),
    Rule(r"\.venv/bin/vibewatch --version", "run"),
    Rule(r"\.venv/bin/vibewatch train .*", "quick", "one epoch",
         lambda c: f"{c} --epochs 1", 600),
    Rule(r"\.venv/bin/vibewatch tune .*", "quick", "one trial of one epoch",
         lambda c: c.replace("--trials 12", "--trials 1") + " --epochs 1", 600),
    Rule(r"\.venv/bin/vibewatch evaluate forecast .*", "run"),
    Rule(r"\.venv/bin/vibewatch evaluate nab .*", "quick", "two of the 35 NAB files",
         _nab_quick),
    Rule(r"\.venv/bin/vibewatch evaluate lead-time( .*)?", "run"),
    Rule(r"\.venv/bin/vibewatch evaluate live( .*)?", "quick", "five engines, 13 simulated "
         "minutes at 60x with the three faults, a re-baseline and a restart (the full "
         "scenario takes about 7 minutes)",
         lambda c: c + " --engines 5 --span 13m --speed 60 --fault engine-0001:wear@11m "
         "--fault engine-0002:step@11m+1m --fault engine-0003:intermittent@11m "
         "--rebaseline engine-0002@12m20s --restart term@12m", 600),
    Rule(r"\.venv/bin/vibewatch evaluate select .*", "quick", "two candidates (the full "
         "grid takes half an hour)",
         lambda c: c if "--grid quick" in c else f"{c} --grid quick", 900),
    Rule(r"\.venv/bin/vibewatch evaluate select-skab( .*)?", "shared", "two candidates on "
         "../shared/data/skab-dev (the full grid takes about 4 minutes)",
         lambda c: f"{c} --grid quick --data {SHARED_DATA / 'skab-dev'}", 300),
    Rule(r"\.venv/bin/python bench/run\.py.*", "quick", "--quick sizes on the test broker",
         None, 600),
)


def _matches(cmd: str) -> list[Rule]:
    return [r for r in RULES if re.fullmatch(r.pattern, cmd)]


def rule_for(cmd: str) -> Rule:
    matches = _matches(cmd)
    assert len(matches) == 1, (
        f"README command {cmd!r} matches {len(matches)} rules of tests/test_readme.py: "
        "add exactly one that says how to test it")
    return matches[0]


COMMANDS = readme_commands(README.read_text())


def test_the_readme_has_the_commands_we_expect() -> None:
    assert "make run" in COMMANDS and "make test" in COMMANDS
    bare = [c for c in COMMANDS if c.startswith("vibewatch ")]
    assert not bare, f"vibewatch is not on PATH after make: write .venv/bin/vibewatch {bare}"
    shared = [c for c in COMMANDS if "../shared" in c]
    assert not shared, f"a fresh clone has no ../shared: {shared}"


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_one_rule(cmd: str) -> None:
    rule_for(cmd)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's files in a directory of their own (see the module doc)."""
    dest = tmp_path_factory.mktemp("fresh") / "vibewatch"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)  # mtimes kept: make sees the venv up to date
    (dest / ".venv").symlink_to(ROOT / ".venv")
    (dest / "deploy/kafka/lib").symlink_to(ROOT / "deploy/kafka/lib")
    up_to_date = subprocess.run(["make", "-q", "venv"], cwd=dest)
    assert up_to_date.returncode == 0, "the virtualenv is older than pyproject.toml: make venv"
    nab = dest / "nab-quick"
    for name in NAB_QUICK_FILES:
        (nab / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(dest / "models/data/nab-dev/data" / name, nab / "data" / name)
    shutil.copytree(dest / "models/data/nab-dev/labels", nab / "labels")
    shutil.copytree(dest / "models/data/nab-dev/config", nab / "config")
    return dest


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIBEWATCH_")}
    return {**env, **extra}


def _run(cmd: str, cwd: Path, env: dict[str, str], timeout_s: float) -> str:
    out = subprocess.run(cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout_s)
    assert out.returncode == 0, f"{cmd}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


#: the commands that need no stack (a command without a rule fails the test above instead)
OFFLINE = [c for c in COMMANDS if len(_matches(c)) == 1
           and _matches(c)[0].how in ("run", "quick", "dry", "shared")
           and not c.startswith(".venv/bin/python bench/")]


@pytest.mark.parametrize("cmd", OFFLINE)
def test_command_works_from_a_fresh_clone(cmd: str, clone: Path) -> None:
    rule = rule_for(cmd)
    if rule.how == "dry":
        target = cmd.split()[1]
        _run(f"make -n {target}", clone, _env(), 60)
        return
    if rule.how == "shared" and not (SHARED_DATA / "skab-dev").is_dir():
        pytest.skip(f"{cmd}: its data is not shipped and {SHARED_DATA} is not beside this "
                    "checkout")
    run = rule.quick(cmd) if rule.quick else cmd
    out = _run(run, clone, _env(), rule.timeout_s)
    if cmd == "make help":
        targets = re.findall(r"^([a-z][a-z-]*):", (clone / "Makefile").read_text(), re.M)
        listed = re.findall(r"^make (\S+)", out, re.M)
        assert sorted(set(targets) - {"help"}) == sorted(listed)
        readme = README.read_text()
        assert all(f"`make {t}`" in readme for t in listed), "every target in the README"


BENCH = [c for c in COMMANDS if c.startswith(".venv/bin/python bench/")]


@pytest.mark.parametrize("cmd", BENCH)
def test_bench_command_quick_form(cmd: str, clone: Path, kafka_bootstrap: str,
                                  tmp_path: Path) -> None:
    quick = f"{cmd} --quick --bootstrap {kafka_bootstrap} --out {tmp_path / 'bench.json'}"
    # smaller still than --quick: one case of each scenario named (the bench's own smoke
    # tests run the others); every scenario: the memory one
    quick += {"throughput,baselines": " --modes eos --forms single --naive-sample 3 "
              "--rewindow-budget 1", "latency": " --latency-seconds 1"}.get(
        cmd.rsplit(" ", 1)[-1], "" if "--scenarios" in cmd else " --scenarios memory")
    _run(quick, clone, _env(), 600)
    assert (tmp_path / "bench.json").is_file()


class Stack:
    """``make run`` in the clone, until :meth:`stop`."""

    def __init__(self, clone: Path, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.clone = clone
        self.proc = subprocess.Popen(
            ["make", "run"], cwd=clone, env=_env(VIBEWATCH_API__PORT=str(self.port)),
            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def banner(self) -> str:
        def ready() -> str | None:
            assert self.proc.poll() is None, f"make run exited:\n{self.text()[-3000:]}"
            text = self.text()
            return text if "Ctrl-C stops everything" in text else None
        return wait_for(ready, 240, "make run's banner", interval_s=1.0)

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # Ctrl-C, as a person would
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def stack(clone: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(clone, tmp_path_factory.mktemp("stack") / "make-run.log")
    try:
        yield s
    finally:
        s.stop()


def test_make_run_and_the_commands_that_use_it(stack: Stack, clone: Path) -> None:
    banner = stack.banner()
    assert f"API docs   http://127.0.0.1:{stack.port}/docs" in banner
    assert "new broker data in .run/kafka" in banner  # a fresh clone has no old state
    broker = re.search(r"Kafka      (\S+)", banner)
    printed = re.search(r"^  (\.venv/bin/vibewatch replay .*)$", banner, re.M)
    assert broker and printed, banner
    env = _env(VIBEWATCH_KAFKA__BOOTSTRAP_SERVERS=broker.group(1))
    # the replay command of the banner, as printed (paced: a short while of it)
    replay = subprocess.Popen(f"exec {printed.group(1)}", shell=True, cwd=clone, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for cmd in [c for c in COMMANDS if len(_matches(c)) == 1 and rule_for(c).how == "stack"
                and c not in ("make run", "make reset-local")]:
        if cmd.startswith("curl"):
            url = cmd.replace("localhost:8000", f"localhost:{stack.port}")
            body = wait_for(functools.partial(_curl, url, clone), 60, f"{url} to list engines")
            assert '"engine_id"' in body, body[:500]
        elif " serve" in cmd:
            _serve_briefly(cmd, clone, env)
        elif " simulate" in cmd:  # a few ticks instead of until Ctrl-C
            _run(f"{cmd} --ticks 5", clone, env, 300)
        else:  # replay without pacing
            _run(cmd.replace("--speed 3600", "--speed 0"), clone, env, 300)
    time.sleep(3)  # the printed replay command runs for a few seconds before Ctrl-C
    replay.send_signal(signal.SIGINT)
    _, err = replay.communicate(timeout=60)
    assert replay.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    # Ctrl-C stops everything; then make reset-local deletes only .run
    stack.stop()
    assert stack.text().rstrip().endswith("stopped"), stack.text()[-3000:]
    assert (clone / ".run/kafka").is_dir()
    if "make reset-local" in COMMANDS:
        _run("make reset-local", clone, _env(), 120)
        assert not (clone / ".run").exists() and (clone / "models/data/ims").is_dir()


def _curl(url: str, cwd: Path) -> str | None:
    out = subprocess.run(url, shell=True, cwd=cwd, capture_output=True, text=True, timeout=30)
    return out.stdout if out.returncode == 0 and '"engine_id"' in out.stdout else None


def _serve_briefly(cmd: str, cwd: Path, env: dict[str, str]) -> None:
    """A second instance, as written: it joins the group, answers, and stops on SIGTERM."""
    port = free_port()
    proc = subprocess.Popen(f"exec {cmd}", shell=True, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            env={**env, "VIBEWATCH_API__PORT": str(port),
                                 "VIBEWATCH_KAFKA__INSTANCE_ID": "readme-serve"},
                            start_new_session=True)
    try:
        wait_for(lambda: _curl(f"curl -s localhost:{port}/engines", cwd) is not None, 120,
                 "the second instance to answer")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
