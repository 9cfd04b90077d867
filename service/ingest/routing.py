"""Decoding with the decoder of the engine's class (see :mod:`service.classes`)."""

from __future__ import annotations

from collections.abc import Mapping

from service.classes import ClassResolver, ClassStores
from service.ingest.columns import ReadingColumns
from service.ingest.decode import MessageDecoder


class ClassRouter:
    """Parses a message once, decides its engine's class and checks its readings against
    that class's channels. One per pipeline; :meth:`begin_batch` at every batch."""

    def __init__(
        self, decoders: Mapping[str, MessageDecoder], resolver: ClassResolver,
        stores: ClassStores,
    ) -> None:
        self.decoders = dict(decoders)
        self.resolver = resolver
        self.stores = stores
        self._any = self.decoders[resolver.default]
        #: engines first seen in this batch (not in a store yet) -> the class they got
        self._new: dict[str, str] = {}

    def begin_batch(self) -> None:
        """A new batch: the engines of the previous one are in the stores now."""
        self._new.clear()

    def columns(self) -> dict[str, ReadingColumns]:
        """Empty columns for every class."""
        return {name: ReadingColumns(d.channels) for name, d in self.decoders.items()}

    def decode_into(
        self, outs: Mapping[str, ReadingColumns], value: bytes | None, key: bytes | None,
        partition: int,
    ) -> str:
        """Decode a message into its class's columns in ``outs``; returns the class. Raises
        InvalidMessageError (the decoder's reasons, ``bad_class``, ``unknown_class``,
        ``class_mismatch``); nothing is appended then."""
        doc, engine_id = self._any.parse(value, key)
        declared = self.resolver.declared(doc.get("class"))
        current = self._new.get(engine_id) or self.stores.class_of(engine_id)
        name = self.resolver.resolve(engine_id, declared, current)
        self.decoders[name].decode_doc_into(outs[name], doc, engine_id, partition)
        if current is None:
            self._new[engine_id] = name
        return name
