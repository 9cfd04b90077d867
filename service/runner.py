"""``vibewatch serve``: the streaming service with its REST API and /metrics."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
from typing import Any

from service.config import Settings, load_settings
from service.errors import ConfigError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Consume readings from Kafka, advance each engine's LSTM state, score anomalies, and "
        "serve the REST API (OpenAPI at /docs) and Prometheus metrics (/metrics) on one port. "
        "Every setting is also read from VIBEWATCH_* environment variables; flags win."
    )
    for flag, setting, kind in (
        ("--bootstrap", "kafka.bootstrap_servers", str),
        ("--artifact", "model.artifact_dir", str),
        ("--host", "api.host", str),
        ("--port", "api.port", int),
        ("--group", "kafka.group_id", str),
        ("--instance-id", "kafka.instance_id", str),
        ("--topic", "kafka.readings_topic", str),
    ):
        section, name = setting.split(".")
        env = f"VIBEWATCH_{section.upper()}__{name.upper()}"
        parser.add_argument(flag, type=kind, help=f"{setting} (default: {env}, else "
                            f"{_default(section, name)})")


def _default(section: str, name: str) -> object:
    """The built-in default of a setting, for the help."""
    model = Settings.model_fields[section].annotation
    assert model is not None
    field = model.model_fields[name]
    if name == "instance_id":
        return "<host name>-<api port>"
    if field.default_factory is not None:
        return "computed"
    return field.default


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    kafka = {k: v for k, v in {
        "bootstrap_servers": args.bootstrap, "group_id": args.group,
        "instance_id": args.instance_id, "readings_topic": args.topic,
    }.items() if v is not None}
    api = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    out: dict[str, Any] = {}
    if kafka:
        out["kafka"] = kafka
    if api:
        out["api"] = api
    if args.artifact:
        out["model"] = {"artifact_dir": args.artifact}
    return out


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from service.api import create_app
    from service.kafka.security import check_connection
    from service.runtime import Runtime

    overrides = _overrides(args)
    settings: Settings = args._settings
    if overrides:
        merged = settings.model_dump()
        for section, values in overrides.items():
            merged[section].update(values)
        settings = load_settings(**merged)
    if not log.isEnabledFor(logging.DEBUG):
        # kafka-python logs every failed connection attempt and slow I/O task (about six
        # lines a second while a broker is away); the pipeline logs one line per session
        # failure with what it does next, and readiness says the rest.
        logging.getLogger("kafka.net").setLevel(logging.CRITICAL)
    # The port first: the instance id defaults to <host>-<port>, so a second instance on
    # this host with the same port must stop here, before it fences the first one's
    # transactional id. Then the brokers: credentials or certificates they refuse are
    # named now rather than retried forever. Then the artifact.
    sock = _bind(settings.api.host, settings.api.port)
    check_connection(settings.kafka)
    runtime = Runtime(settings)
    log.info(
        "instance %s; model %s (%s); Kafka %s (%s) topic %s; API on http://%s:%d (docs at "
        "/docs, metrics at /metrics)", settings.kafka.instance_id,
        ", ".join(f"{c.name}: {c.model.version}" for c in runtime.classes),
        ", ".join(str(c.artifact_dir) for c in runtime.classes), settings.kafka.bootstrap_servers,
        settings.kafka.security.protocol, settings.kafka.readings_topic,
        settings.api.host, settings.api.port,
    )
    server: uvicorn.Server | None = None

    def give_up() -> None:  # the pipeline stopped after repeated fatal failures
        if server is not None:
            server.should_exit = True

    app = create_app(lambda: runtime, on_failure=give_up)
    # uvicorn handles SIGTERM/SIGINT (graceful shutdown: the lifespan commits and leaves the
    # group), then re-raises the signal to the previous handler; a Python handler here makes
    # that a clean exit with status 0 instead of death by signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    # log_config=None: uvicorn's records go through the handlers service.logs set up (text or
    # JSON, log.format) rather than its own.
    server = uvicorn.Server(uvicorn.Config(
        app, host=settings.api.host, port=settings.api.port, log_level="warning",
        log_config=None,
    ))
    server.run(sockets=[sock])
    if runtime.failure is not None:
        log.critical("stopped: %s", runtime.failure)
        return 1
    log.info("stopped")
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """The API's listening socket; ConfigError naming api.port when it is taken."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            "api.port", f"cannot listen on {host}:{port} ({exc.strerror}): another instance "
            "on this host? Each needs its own api.port (and so its own default instance id)",
        ) from exc
    sock.set_inheritable(True)
    return sock
