"""Settings: one frozen object, nested by concern, built once at start-up and passed down.

Every setting can be given as an environment variable ``VIBEWATCH_<SECTION>__<NAME>`` (for
example ``VIBEWATCH_KAFKA__BOOTSTRAP_SERVERS``). Nothing here reads the environment at import
time: call :func:`load_settings`.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
from pathlib import Path
from typing import Any, Literal

import kafka.codec
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.errors import ConfigError

DEFAULT_ARTIFACT = Path(__file__).resolve().parent.parent / "models" / "artifacts" / "default"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSecuritySettings(_Section):
    """How every Kafka client of the service authenticates and encrypts (``kafka.security``).

    Applied to every consumer, producer and admin client by ``service.kafka.clients`` and
    checked at start-up by :func:`load_settings` (files readable and parseable, settings
    consistent with ``protocol``), so a mistake fails naming the setting before any client
    connects.
    """

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol of the brokers' listener."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (protocol SASL_SSL or SASL_PLAINTEXT)."
    )
    sasl_username: str | None = Field(None, min_length=1, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password.")
    ssl_cafile: Path | None = Field(
        None, description="PEM bundle of the CAs that sign the brokers' certificates "
        "(default: the system's trusted CAs).",
    )
    ssl_certfile: Path | None = Field(
        None, description="PEM client certificate (chain), for brokers that require "
        "TLS client authentication; may also hold the key.",
    )
    ssl_keyfile: Path | None = Field(None, description="PEM private key of ssl_certfile.")
    ssl_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted ssl_keyfile."
    )
    ssl_check_hostname: bool = Field(
        True, description="Check that the broker's certificate names the host connected to."
    )


class KafkaSettings(_Section):
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port list.")
    readings_topic: str = Field("vibewatch.readings", description="Topic the sensors publish to.")
    dead_letter_topic: str = Field("vibewatch.dead-letter", description="Where bad messages go.")
    anomalies_topic: str = Field("vibewatch.anomalies", description="Status changes.")
    changelog_topic: str = Field("vibewatch.state-changelog", description="Engine state.")
    control_topic: str = Field(
        "vibewatch.control", description="Model reloads for the whole group (compacted, one "
        "record per engine class; every instance reads all of it).",
    )
    group_id: str = Field("vibewatch", min_length=1, description="Consumer group of the service.")
    client_id: str = Field("vibewatch", min_length=1)
    poll_timeout_ms: int = Field(100, ge=1, le=10_000, description="Longest wait in one poll.")
    max_poll_records: int = Field(
        20_000, ge=1, le=1_000_000,
        description="Readings one batch takes from each partition (a backlog's batch size).",
    )
    commit_interval_ms: int = Field(
        100, ge=1, le=60_000,
        description="Commit interval (state, outputs, offsets) while the service keeps up.",
    )
    catch_up_commit_interval_ms: int = Field(
        500, ge=1, le=60_000,
        description="Commit interval while it works through a backlog (fewer state rows).",
    )
    session_timeout_ms: int = Field(10_000, ge=6_000, le=300_000)
    heartbeat_interval_ms: int = Field(3_000, ge=500, le=100_000)
    max_message_bytes: int = Field(1_048_576, ge=256, description="Size limit.")
    max_batch_readings: int = Field(10_000, ge=1, description="Readings per batch message.")
    auto_offset_reset: str = Field("earliest", pattern="^(earliest|latest)$")
    timeout_ms: int = Field(
        10_000, ge=100, le=300_000,
        description="Longest wait for a commit or broker check before the session restarts.",
    )
    compression: Literal["none", "gzip", "lz4", "zstd", "snappy"] = Field(
        "lz4", description="Compression of what the service produces."
    )
    exactly_once: bool = Field(True, description="Commit outputs and offsets in one transaction.")
    instance_id: str = Field(
        "",
        pattern=r"^[A-Za-z0-9._-]{0,100}$",
        description="Stable per instance; names the transactional id and the static group "
        "member. Default: <host name>-<api.port> (unique on a host, stable across restarts; "
        "a StatefulSet pod's host name is the pod name).",
    )
    readings_partitions: int = Field(6, ge=1, le=10_000, description="If the service creates it.")
    create_topics: bool = Field(True, description="Create missing topics at start-up.")
    max_fatal_restarts: int = Field(
        3, ge=0, le=100,
        description="Kafka sessions that may end in a fatal error (fenced, not authorised, "
        "misconfigured, unexpected) within 10 minutes; one more and the process exits 1 for "
        "its supervisor.",
    )
    replication_factor: int = Field(
        3, ge=1, le=32, description="Replicas of the topics the service creates (reduced, "
        "with a warning, to the number of brokers on a smaller cluster).",
    )
    min_insync_replicas: int = Field(
        2, ge=1, le=32, description="min.insync.replicas of the topics the service creates: "
        "replicas that must have a committed write (kept below replication_factor).",
    )
    security: KafkaSecuritySettings = KafkaSecuritySettings()


#: Engine class names: a metric label and a changelog row field (at most 32 bytes).
CLASS_NAME = r"^[a-z0-9][a-z0-9_.-]{0,31}$"


class ClassSettings(_Section):
    """One engine class beside the default one (``model.classes``; docs/model.md)."""

    name: str = Field(pattern=CLASS_NAME, description="Class name, as messages give it in "
                      "their optional \"class\" field.")
    artifact_dir: Path = Field(description="Model artifact directory of the class.")
    id_pattern: str | None = Field(
        None, description="Engines whose id matches this regular expression (whole id) "
        "belong to the class when their messages name no class.",
    )

    @field_validator("id_pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return pattern

    @field_validator("artifact_dir")
    @classmethod
    def _is_dir(cls, path: Path) -> Path:
        if not path.is_dir():
            raise ValueError(f"{path} is not a directory")
        return path


class ModelSettings(_Section):
    artifact_dir: Path = Field(DEFAULT_ARTIFACT, description="Model artifact directory of the "
                               "default class.")
    default_class: str = Field(
        "default", pattern=CLASS_NAME, description="Name of the class of model.artifact_dir: "
        "engines that name no class and match no class's id_pattern.",
    )
    classes: tuple[ClassSettings, ...] = Field(
        (), description="More engine classes, each with its own model: a list of {name, "
        "artifact_dir, id_pattern}; patterns are tried in order.",
    )

    @model_validator(mode="after")
    def _distinct_names(self) -> ModelSettings:
        seen = {self.default_class}
        for i, c in enumerate(self.classes):
            if c.name in seen:
                raise SettingError(f"classes.{i}.name",
                                   f"class {c.name!r} is defined twice (model.default_class "
                                   "names the default class)")
            seen.add(c.name)
        return self


class StateSettings(_Section):
    window: int = Field(256, ge=2, le=65_535, description="Readings kept per engine.")
    max_gap_ms: int = Field(
        86_400_000, ge=0, description="A longer silence restarts the engine's state (0: never)."
    )
    trim_interval_s: float = Field(
        10.0, ge=0, description="Seconds between returns of freed heap memory to the OS "
        "(glibc malloc_trim; 0: never).",
    )
    checkpoint_dir: Path | None = Field(
        Path("~/.local/state/vibewatch/checkpoints"),
        description="Directory of local checkpoints (store snapshot + changelog offsets), so "
        "a restart reads only the changelog's tail; unset (empty) to always restore from "
        "the changelog.",
    )
    checkpoint_interval_s: float = Field(
        60.0, gt=0, le=86_400,
        description="Longest time between checkpoints while engines change (one is also "
        "written once the changelog rows sent since the last reach the number of engines, "
        "at most every 5 s, and at shutdown).",
    )
    checkpoint_max_age_s: float = Field(
        43_200.0, gt=0,
        description="An older checkpoint is not used (keep it below the changelog's "
        "delete.retention.ms, one day by default).",
    )
    max_engines: int = Field(
        200_000, ge=1,
        description="Engines one instance tracks at most; readings of new engines beyond it "
        "go to the dead-letter topic (reason engine_limit).",
    )
    idle_evict_s: float = Field(
        604_800.0, ge=0,
        description="An engine with no reading for this long (event time, against the newest "
        "reading of the instance) is evicted: its state is tombstoned in the changelog "
        "(0: never).",
    )

    @field_validator("checkpoint_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if v == "" else v


class SettingError(ValueError):
    """A value that breaks a rule between settings; ``setting`` names the one to change."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


class ScoringSettings(_Section):
    """How prediction errors become scores and statuses (docs/scoring.md).

    Scores are tenths of decades of improbability of an engine's smoothed error under its own
    long-run error distribution: 0.25 is a 1-in-316 event, 0.3 1-in-1,000, 1.0 1-in-10^10,
    and more is worse without limit. Durations are time spans in seconds, turned into
    readings with each engine's own sampling interval (learned from its timestamps), so one
    configuration means the same on 1-second and on hourly data. Counts in readings are
    amounts of evidence, not durations. The defaults are the choice of the committed
    selection procedure (``vibewatch evaluate select``; ``service/evaluation/selection.json``).
    """

    scorer: str = Field(
        "likelihood-spikes",
        description="Error-to-score method, one of the registry's (service.scoring.registry): "
        "likelihood, likelihood-spikes, gaussian, telemanom.",
    )
    commission_s: float = Field(
        600.0, ge=0, description="Commissioning: an engine's first seconds of readings (status "
        "warmup) fit its error baseline; no alarm before it ends.",
    )
    commission_readings: int = Field(
        30, ge=2, description="Commissioning also needs at least this many readings "
        "(statistics need samples, whatever the time span).",
    )
    baseline_s: float = Field(
        7 * 86_400.0, gt=0, description="Memory of the long-run error baseline, in seconds (the "
        "weight of a learned reading decays by e per span). Only readings judged normal are "
        "learned, each moving the baseline by at most 1 - exp(-interval/baseline_s).",
    )
    smoothing: float = Field(
        0.2, gt=0, le=1, description="EWMA rate per reading of the short-term error average "
        "(evidence pooled over about 1/rate readings; 1.0 = none).",
    )
    warning_score: float = Field(0.3, gt=0, description="Score that, held, raises a warning; "
                                 "readings scoring at or above it are not learned.")
    alarm_score: float = Field(0.5, gt=0, description="Score that, held, raises an alarm.")
    clear_score: float = Field(
        0.1, gt=0, description="Score the last hold_readings readings must stay below for a "
        "status to clear."
    )
    hold_readings: int = Field(
        3, ge=1, description="Consecutive readings at or above a level before it is raised "
        "(and at least this many below clear_score before a status clears).",
    )
    episode_readings: float = Field(
        100.0, ge=0, description="Readings judged anomalous are held back from the baseline "
        "while their episode lasts; once it is over, at most this many of them (a blip) are "
        "learned as normal variability, more (a fault) are dropped.",
    )
    clear_s: float = Field(
        3600.0, ge=0, description="Seconds without a reading at warning level or above (the "
        "last hold_readings of them below clear_score) before a warning or alarm clears: one "
        "alarm per disturbance, held while it lasts.",
    )
    channel_reduce: Literal["rms", "max", "joint"] = Field(
        "rms", description="Several channels: score their RMS residual (rms), each channel "
        "apart taking the worst (max), or the residual vector against the engine's own "
        "residual mean and covariance, learned while commissioning (joint: Mahalanobis "
        "distance; correlated channels count once).",
    )
    joint_shrinkage: float = Field(
        0.1, ge=0, le=1, description="joint: shrinkage of the residual covariance towards its "
        "diagonal (at least channels / (readings learned + 1)).",
    )
    spike_floor: float = Field(
        60.0, gt=0, description="likelihood-spikes: decades of tail probability of one raw "
        "error that score 1.0.",
    )
    spike_s: float = Field(
        86_400.0, gt=0, description="likelihood-spikes: memory of the raw-error baseline, in "
        "seconds.",
    )
    telemanom_window: int = Field(100, ge=2, description="Ring length of the telemanom scorer.")

    @field_validator("scorer")
    @classmethod
    def _known_scorer(cls, name: str) -> str:
        # Imported here: the registry's module imports this one for type hints only, and
        # validation runs long after both are loaded.
        from service.scoring.registry import SCORERS

        if name not in SCORERS:
            raise ValueError(f"unknown scorer {name!r}; choose from {sorted(SCORERS)}")
        return name

    @model_validator(mode="after")
    def _levels_in_order(self) -> ScoringSettings:
        if not self.clear_score < self.warning_score <= self.alarm_score:
            raise SettingError(
                "clear_score", "must satisfy clear_score < warning_score <= alarm_score"
            )
        return self


class ApiSettings(_Section):
    host: str = Field("127.0.0.1", description="Interface the REST API binds to.")
    port: int = Field(8000, ge=0, le=65535, description="REST API and /metrics port.")
    token: SecretStr | None = Field(None, description="Bearer token for mutating endpoints.")
    max_engine_series: int = Field(
        1000, ge=0, description="Cap on per-engine anomaly-score metric series."
    )
    fleet_view: bool = Field(
        True, description="Answer for engines of other instances (tails the changelog)."
    )
    stale_after_s: float = Field(
        600.0, gt=0, description="An engine with no reading processed for this long is shown "
        "as stale (GET /engines ?stale=, vibewatch_engines_stale).",
    )
    index_interval_ms: int = Field(
        500, ge=10, le=60_000, description="How often the engine list (GET /engines) takes in "
        "the engines changed since; the list is that much behind the store at most.",
    )
    max_events: int = Field(
        10_000, ge=1, le=10_000_000, description="Anomaly events GET /anomalies holds (the "
        "newest, read from the committed anomalies topic).",
    )


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Log level (the command line's --log-level wins)."
    )
    format: Literal["text", "json"] = Field(
        "text", description="text: one readable line per record; json: one JSON object per "
        "line, for log shippers."
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class Settings(BaseSettings):
    """All settings of one service instance."""

    model_config = SettingsConfigDict(
        env_prefix="VIBEWATCH_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    kafka: KafkaSettings = KafkaSettings()
    model: ModelSettings = ModelSettings()
    state: StateSettings = StateSettings()
    scoring: ScoringSettings = ScoringSettings()
    api: ApiSettings = ApiSettings()
    log: LogSettings = LogSettings()


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment plus ``overrides``; fail naming the setting."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"])
        rule = first.get("ctx", {}).get("error")
        if isinstance(rule, SettingError):  # a rule between settings names its setting
            raise ConfigError(f"{name}.{rule.setting}", rule.message) from exc
        raise ConfigError(name, first["msg"]) from exc
    codec = settings.kafka.compression
    if codec != "none" and not getattr(kafka.codec, f"has_{codec}")():
        raise ConfigError(
            "kafka.compression", f"the {codec} library is not installed (pip install {codec})"
        )
    if settings.kafka.catch_up_commit_interval_ms < settings.kafka.commit_interval_ms:
        raise ConfigError(
            "kafka.catch_up_commit_interval_ms", "must be at least commit_interval_ms"
        )
    if settings.kafka.heartbeat_interval_ms * 3 > settings.kafka.session_timeout_ms:
        raise ConfigError(
            "kafka.heartbeat_interval_ms", "must be at most a third of session_timeout_ms"
        )
    if settings.kafka.min_insync_replicas > settings.kafka.replication_factor:
        raise ConfigError(
            "kafka.min_insync_replicas", "must be at most kafka.replication_factor"
        )
    check_security(settings.kafka.security)
    if not settings.kafka.instance_id:
        identified = settings.kafka.model_copy(
            update={"instance_id": default_instance_id(settings.api.port)}
        )
        settings = settings.model_copy(update={"kafka": identified})
    return settings


def default_instance_id(api_port: int) -> str:
    """``<host name>-<api port>``: what ``kafka.instance_id`` is when not set.

    Two instances on one host cannot serve the same port (``vibewatch serve`` binds it
    before it talks to Kafka), so the id is unique on the host; it is the same after a
    restart, so the restarted instance takes over its transactional id (aborting what its
    predecessor left open) and its static group membership. With ``api.port`` 0 (a port
    chosen by the system) the process id stands in for the port: unique, not stable.
    """
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:80] or "host"
    return f"{host}-{api_port}" if api_port else f"{host}-pid{os.getpid()}"


def check_security(sec: KafkaSecuritySettings) -> None:
    """Raise ConfigError naming the first ``kafka.security`` setting that cannot work.

    Checks that the settings fit ``protocol`` (credentials only with SASL, files only with
    TLS, a key only with a certificate) and that every file exists and parses as what it
    is meant to be, by loading it into a TLS context as the clients will.
    """
    name = "kafka.security."
    sasl = sec.protocol.startswith("SASL_")
    tls = sec.protocol.endswith("SSL")
    if sasl:
        for field in ("sasl_mechanism", "sasl_username", "sasl_password"):
            if getattr(sec, field) is None:
                raise ConfigError(name + field, f"is required with protocol {sec.protocol}")
    else:
        for field in ("sasl_mechanism", "sasl_username", "sasl_password"):
            if getattr(sec, field) is not None:
                raise ConfigError(
                    name + "protocol", f"is {sec.protocol} but {field} is set: SASL needs "
                    "SASL_SSL (or SASL_PLAINTEXT)",
                )
    files = ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password")
    if not tls:
        for field in files:
            if getattr(sec, field) is not None:
                raise ConfigError(
                    name + "protocol", f"is {sec.protocol} but {field} is set: TLS needs "
                    "SSL or SASL_SSL",
                )
        return
    if sec.ssl_certfile is None:
        for field in ("ssl_keyfile", "ssl_key_password"):
            if getattr(sec, field) is not None:
                raise ConfigError(name + "ssl_certfile", f"is required when {field} is set")
    for field in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        path = getattr(sec, field)
        if path is not None and not os.access(path, os.R_OK):
            why = "does not exist" if not path.exists() else "is not readable"
            raise ConfigError(name + field, f"{path} {why}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if sec.ssl_cafile is not None:
        try:
            context.load_verify_locations(cafile=str(sec.ssl_cafile))
        except ssl.SSLError as exc:
            raise ConfigError(
                name + "ssl_cafile", f"{sec.ssl_cafile} is not a PEM CA bundle ({exc})"
            ) from exc
    if sec.ssl_certfile is not None:
        password = sec.ssl_key_password.get_secret_value() if sec.ssl_key_password else None
        try:
            context.load_cert_chain(
                str(sec.ssl_certfile),
                str(sec.ssl_keyfile) if sec.ssl_keyfile else None,
                password=password or "",  # "" fails fast on an encrypted key
            )
        except ssl.SSLError as exc:
            culprit = "ssl_key_password" if "password" in str(exc).lower() or (
                "bad decrypt" in str(exc).lower()
            ) else ("ssl_keyfile" if sec.ssl_keyfile else "ssl_certfile")
            raise ConfigError(
                name + culprit, f"the certificate and key do not load together ({exc})"
            ) from exc
