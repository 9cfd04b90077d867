"""Ingest: turn readings-topic message bytes into validated :class:`~service.domain.Reading`s."""

from service.ingest.decode import DECODER_REASONS, PIPELINE_REASONS, REASONS, MessageDecoder

__all__ = ["DECODER_REASONS", "PIPELINE_REASONS", "REASONS", "MessageDecoder"]
