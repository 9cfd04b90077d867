"""docker-compose.yml, the Dockerfile and .dockerignore, checked without a Docker engine.

``docker-compose config -q`` (Debian's ``docker-compose`` package, installed by ``make test``)
validates the file against the Compose schema; the rest reads the YAML and checks what the
schema cannot: the services, topics, healthchecks and mounts the stack relies on.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.tools import require

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

SERVICES = {"kafka", "kafka-setup", "vibewatch", "simulator", "prometheus", "alertmanager",
            "alert-log", "grafana"}
POM = ROOT / "deploy" / "kafka" / "pom.xml"
#: Runs once and exits; every other service runs for good and needs a healthcheck.
ONE_SHOT = {"kafka-setup"}


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def _services() -> dict[str, Any]:
    services: dict[str, Any] = _compose()["services"]
    return services


def _command_text(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def test_docker_compose_config_is_valid() -> None:
    binary = require("docker-compose", "docker-compose")  # config -q needs no engine
    proc = subprocess.run(
        [binary, "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"docker-compose config -q failed:\n{proc.stdout}\n{proc.stderr}"


def test_services_are_all_there() -> None:
    assert set(_services()) == SERVICES


def test_long_running_services_have_healthchecks() -> None:
    for name, service in _services().items():
        check = service.get("healthcheck", {})
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
            continue
        assert check.get("test") and not check.get("disable"), f"{name}: no healthcheck"


def test_kafka_is_single_node_kraft() -> None:
    kafka = _services()["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    # kafka-storage format needs a base64 UUID: 16 bytes, 22 characters without padding.
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])


def test_the_compose_broker_is_the_local_brokers_kafka_version() -> None:
    pinned = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    assert pinned is not None
    assert _services()["kafka"]["image"] == f"apache/kafka:{pinned.group(1)}"


def test_prometheus_alerts_go_to_the_alertmanager_of_the_stack() -> None:
    services = _services()
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]
    alertmanager = services["alertmanager"]
    mounts = _bind_mounts(alertmanager)
    flag = next(a for a in alertmanager["command"] if a.startswith("--config.file="))
    path = Path(flag.split("=", 1)[1])
    assert (mounts[str(path.parent)] / path.name).is_file()
    # The default receivers post to alert-log, on the port it listens on.
    am = yaml.safe_load((mounts[str(path.parent)] / path.name).read_text())
    urls = {h["url"] for r in am["receivers"] for h in r.get("webhook_configs", [])}
    port = services["alert-log"]["command"][-1]
    assert urls and all(u.startswith(f"http://alert-log:{port}/") for u in urls)


def test_topic_setup_creates_the_topics() -> None:
    setup = _services()["kafka-setup"]
    assert setup["depends_on"]["kafka"]["condition"] == "service_healthy"
    script = _command_text(setup)
    creates = dict(re.findall(r"^create (\S+) (.*)$", script, flags=re.M))
    assert set(creates) == {
        "vibewatch.readings",
        "vibewatch.dead-letter",
        "vibewatch.anomalies",
        "vibewatch.state-changelog",
    }
    assert "--partitions 6" in creates["vibewatch.readings"]
    assert "cleanup.policy=compact" in creates["vibewatch.state-changelog"]
    # State is restored per readings partition, so the changelog is partitioned the same way.
    assert "--partitions 6" in creates["vibewatch.state-changelog"]


def test_service_and_simulator() -> None:
    services = _services()
    app = services["vibewatch"]
    assert app["build"]["dockerfile"] == "Dockerfile"
    assert _command_text(app) == "vibewatch serve"
    assert app["environment"]["VIBEWATCH_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert app["environment"]["VIBEWATCH_API__HOST"] == "0.0.0.0"
    assert "/healthz" in " ".join(app["healthcheck"]["test"])
    simulator = services["simulator"]
    assert _command_text(simulator) == "vibewatch simulate --engines 50 --rate 100"
    assert simulator["environment"]["VIBEWATCH_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
    for name in ("vibewatch", "simulator"):
        condition = services[name]["depends_on"]["kafka-setup"]["condition"]
        assert condition == "service_completed_successfully", name


def _bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of the service's bind mounts."""
    mounts: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = ROOT / source
    return mounts


def test_prometheus_mounts_config_and_rules() -> None:
    prometheus = _services()["prometheus"]
    mounts = _bind_mounts(prometheus)
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = config_flag.split("=", 1)[1]
    mounted = next(
        (host / Path(config_path).relative_to(target))
        for target, host in mounts.items()
        if config_path.startswith(target + "/")
    )
    assert mounted.is_file(), f"{config_path} is not in a mounted directory"
    config = yaml.safe_load(mounted.read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "vibewatch")
    assert job["dns_sd_configs"][0]["names"] == ["vibewatch"]
    assert job["dns_sd_configs"][0]["port"] == 8000


def test_grafana_mounts_provisioning_and_dashboards() -> None:
    grafana = _services()["grafana"]
    mounts = _bind_mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    assert (provisioning / "datasources").is_dir()
    assert (provisioning / "alerting").is_dir()
    provider = yaml.safe_load((provisioning / "dashboards" / "vibewatch.yml").read_text())
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert (mounts[dashboards_path] / "fleet.json").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_path}/fleet.json"


def _stages() -> dict[str, str]:
    """Stage name -> its instructions (the text up to the next FROM)."""
    parts = re.split(r"^FROM ", DOCKERFILE.read_text(), flags=re.M)[1:]
    return {re.search(r"\bAS (\S+)", p.splitlines()[0]).group(1): p  # type: ignore[union-attr]
            for p in parts}


def test_dockerfile_builds_a_lean_serving_image_and_a_training_image() -> None:
    stages = _stages()
    assert list(stages)[-1] == "serve", "the default (last) target must be the serving image"
    bases = {p.split()[0] for p in stages.values()} - set(stages)
    assert bases == {"python:3.11-slim"}
    serve, train = stages["serve"], stages["train"]
    assert re.search(r"^RUN pip install /wheels/vibewatch-\*\.whl ", serve, flags=re.M)
    assert "[train]" not in serve and "[train]" in train
    for stage in (serve, train):
        user = re.findall(r"^USER (\S+)", stage, flags=re.M)
        assert user and user[-1] not in {"root", "0"}, "images must run as a non-root user"
    assert re.search(r"^EXPOSE 8000\b", serve, flags=re.M)
    assert re.search(r'^CMD \["vibewatch", "serve"\]', serve, flags=re.M)


def test_dockerignore_keeps_local_state_out() -> None:
    entries = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".git", ".venv", "deploy/kafka/lib"} <= entries
