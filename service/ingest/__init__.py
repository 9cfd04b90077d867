"""Ingest: turn readings-topic message bytes into validated :class:`~service.domain.Reading`s."""

from service.ingest.decode import REASONS, MessageDecoder

__all__ = ["REASONS", "MessageDecoder"]
