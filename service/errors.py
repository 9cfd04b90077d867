"""One root exception and small typed subclasses that carry their data."""

from __future__ import annotations


class VibewatchError(Exception):
    """Root of every error vibewatch raises on purpose."""


class ConfigError(VibewatchError):
    """A setting is invalid; ``setting`` names it (for example ``kafka.commit_interval_ms``)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"invalid setting {setting}: {message}")
        self.setting = setting


class InvalidMessageError(VibewatchError):
    """A readings-topic message that cannot be processed.

    ``reason`` is a short machine-readable code (it becomes a dead-letter header and a metric
    label, so the set of reasons is fixed: see ``service.ingest.REASONS``); ``detail`` is for
    people.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ArtifactError(VibewatchError):
    """A model artifact that cannot be used; ``path`` names the offending file."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class BrokerUnavailableError(VibewatchError):
    """Kafka did not answer within ``kafka.timeout_ms``; the pipeline restarts its session."""


class UsageError(VibewatchError):
    """A command was given something it cannot use (a missing file, an unknown engine, a
    malformed option); the message names it. The command line prints it and exits 2."""
