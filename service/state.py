"""Per-engine state as a struct of arrays, one row per engine.

Memory contract: every engine ever seen by this instance keeps one row until its partition
is revoked (``drop``). Per engine that is ``window * (channels * 4 + 4)`` bytes of ring
window with its timestamps, ``model_state_size * 4`` bytes of recurrent state,
``score_state_size * 8`` bytes of scoring statistics and about 70 bytes of bookkeeping:
~2.7 KB for a 256-reading window, one channel and an LSTM(64) (the changelog record is the
same bytes). If the engine key space grows without bound, memory grows without bound.

Window timestamps are kept modulo 2**32 ms (``uint32``, half the bytes of ``int64``):
:meth:`EngineStore.history` rebuilds them from ``last_ts`` backwards, exactly as long as
consecutive readings of an engine are less than 2**32 ms (49.7 days) apart. Only the API's
window uses them; the model, the scoring and the gap check use ``last_ts`` (int64).

The store is written by the pipeline thread only; readers (the API) take :attr:`lock`.

Change journal: every row that gets a reading, is created or restored is noted once (a flag
per row and a list of the flagged rows, so the journal holds each row at most once: bounded
by the rows), and every engine that leaves is noted by id (bounded by ``capacity``; beyond
that the journal asks for a full resync instead). :meth:`take_changes` hands both over and
starts a new journal. The API's engine index (``service.api.engine_index``) reads it, so it
never scans the whole store under :attr:`lock`.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]

_NO_TS = np.iinfo(np.int64).min
#: Bytes of a model fingerprint in a record header (see ``service.classes``).
FINGERPRINT_BYTES = 8


class EngineStore:
    """Rows of per-engine state; grows by doubling."""

    def __init__(
        self, *, window: int, channels: int, model_state_size: int, score_state_size: int,
        class_name: str = "default", fingerprint: bytes = bytes(FINGERPRINT_BYTES),
        layout: bytes = bytes(FINGERPRINT_BYTES),
    ) -> None:
        #: The engine class whose engines this store holds and the fingerprints of the model
        #: that writes its rows and of its layout (all go into every changelog record's
        #: header; see ``service.classes``).
        self.class_name = class_name
        self.fingerprint = fingerprint
        self.layout = layout
        self.window = window
        self.channels = channels
        self.model_state_size = model_state_size
        self.score_state_size = score_state_size
        self.lock = threading.RLock()
        self.index: dict[str, int] = {}
        self.ids: list[str] = []
        self._free: list[int] = []
        self._journal: list[npt.NDArray[np.intp]] = []
        self._removed: list[str] = []
        #: Bumped by :meth:`clear` and when the removal journal overflows: every engine the
        #: journal's reader knew from this store must be looked up again.
        self.generation = 0
        self._alloc(0, 1024)

    # -- storage -------------------------------------------------------------------------
    def _alloc(self, old: int, cap: int) -> None:
        def grow(name: str, shape: tuple[int, ...], dtype: type, fill: float | int = 0) -> None:
            new: npt.NDArray[Any] = np.full((cap, *shape), fill, dtype=dtype)
            if old:
                new[:old] = getattr(self, name)[:old]
            setattr(self, name, new)

        grow("model_state", (self.model_state_size,), np.float32)
        grow("ring", (self.window, self.channels), np.float32)
        grow("ring_ts", (self.window,), np.uint32)  # ts mod 2**32, see the module doc
        grow("count", (), np.int64)
        grow("last_ts", (), np.int64, _NO_TS)
        grow("last_pred", (self.channels,), np.float64)
        grow("scored_pred", (self.channels,), np.float64, np.nan)
        grow("has_pred", (), np.bool_)
        grow("score_state", (self.score_state_size,), np.float64)
        grow("status_since", (), np.int64)
        grow("last_seen", (), np.int64)
        grow("partition", (), np.int32)
        grow("status", (), np.int8)
        grow("score", (), np.float64)
        grow("error", (), np.float64, np.nan)
        grow("threshold", (), np.float64, np.nan)
        grow("resets", (), np.int32)
        # Not part of the changelog row: which processing batch last changed the row (see
        # ``seq`` and ``committed_seq``).
        grow("changed_seq", (), np.int64)
        # Not part of the changelog row either: the row is in the change journal.
        grow("journaled", (), np.bool_)
        self.capacity = cap

    model_state: F32
    ring: F32
    ring_ts: U32
    count: I64
    last_ts: I64
    last_pred: F64
    scored_pred: F64
    has_pred: npt.NDArray[np.bool_]
    score_state: F64
    status_since: I64
    last_seen: I64
    partition: npt.NDArray[np.int32]
    status: npt.NDArray[np.int8]
    score: F64
    error: F64
    threshold: F64
    resets: npt.NDArray[np.int32]
    changed_seq: I64
    journaled: npt.NDArray[np.bool_]
    #: Number of the processing batch now being applied (the pipeline counts them); rows it
    #: changes get it in ``changed_seq``.
    seq: int = 0
    #: Highest batch number whose results are committed (exactly-once: in an acknowledged
    #: transaction). A row with ``changed_seq > committed_seq`` shows results not yet
    #: committed.
    committed_seq: int = 0

    def __len__(self) -> int:
        return len(self.index)

    def slots_for(
        self, engine_ids: Iterable[str], partitions: Iterable[int], init_score: F64
    ) -> tuple[npt.NDArray[np.intp], list[int]]:
        """Row numbers for ``engine_ids``, creating rows for new engines.

        ``init_score`` is the scorer's initial state row. Returns the rows and the positions
        (in ``engine_ids``) of engines that were new.
        """
        out: list[int] = []
        new: list[int] = []
        for i, (engine_id, part) in enumerate(zip(engine_ids, partitions, strict=True)):
            slot = self.index.get(engine_id)
            if slot is None:
                slot = self._new_slot(engine_id, init_score)
                self.partition[slot] = part
                new.append(i)
            out.append(slot)
        return np.asarray(out, dtype=np.intp), new

    def _new_slot(self, engine_id: str, init_score: F64) -> int:
        if self._free:
            slot = self._free.pop()
            self.ids[slot] = engine_id
        else:
            slot = len(self.ids)
            if slot >= self.capacity:
                # 1.25x rather than doubling: at 100k engines doubling left up to half the
                # rows allocated but unused.
                self._alloc(self.capacity, self.capacity + max(1024, self.capacity // 4))
            self.ids.append(engine_id)
        self.index[engine_id] = slot
        self._reset_row(slot, init_score)
        self.touch(np.array([slot], dtype=np.intp))
        return slot

    def _reset_row(self, slot: int, init_score: F64) -> None:
        self.model_state[slot] = 0.0
        self.ring[slot] = 0.0
        self.ring_ts[slot] = 0
        self.count[slot] = 0
        self.last_ts[slot] = _NO_TS
        self.last_pred[slot] = 0.0
        self.scored_pred[slot] = np.nan
        self.has_pred[slot] = False
        self.score_state[slot] = init_score
        self.status_since[slot] = 0
        self.last_seen[slot] = 0
        self.status[slot] = 0
        self.score[slot] = 0.0
        self.error[slot] = np.nan
        self.threshold[slot] = np.nan
        self.resets[slot] = 0
        self.changed_seq[slot] = 0

    def committed(self, slot: int) -> bool:
        """Whether the row's latest change is committed (see ``committed_seq``)."""
        return int(self.changed_seq[slot]) <= self.committed_seq

    # -- change journal ------------------------------------------------------------------
    def touch(self, slots: npt.NDArray[np.intp]) -> None:
        """Note ``slots`` as changed (lock held): O(len(slots)), each row journaled once.

        The store's own writes (readings, new rows, restores) call this; a caller that
        changes shown fields of rows otherwise (a model swap re-warming predictions) must.
        """
        new = slots[~self.journaled[slots]]
        if new.size:
            self.journaled[new] = True
            self._journal.append(new)

    def _note_removed(self, engine_ids: list[str]) -> None:
        """Note engines that left (lock held); past ``capacity`` ids, ask for a resync."""
        self._removed.extend(engine_ids)
        if len(self._removed) > self.capacity:
            self._removed.clear()
            self.generation += 1

    def take_changes(self) -> tuple[int, npt.NDArray[np.intp], list[str]]:
        """Hand over the journal and start a new one; call with :attr:`lock` held.

        Returns ``(generation, rows, removed)``: the rows changed or created since the last
        call (each once; read them now, under the same lock: a row is reused once its engine
        leaves) and the ids of engines that left. When ``generation`` differs from the
        previous call's, engines may also have left without being named (``clear``).
        O(changes), never O(engines).
        """
        rows = (np.concatenate(self._journal) if self._journal
                else np.empty(0, dtype=np.intp))
        self.journaled[rows] = False
        self._journal = []
        removed, self._removed = self._removed, []
        return self.generation, rows, removed

    def engines_of(self, partitions: set[int]) -> list[str]:
        """Ids of the tracked engines of ``partitions``."""
        with self.lock:
            return [e for e, s in self.index.items() if int(self.partition[s]) in partitions]

    def drop_partitions(self, partitions: set[int]) -> list[str]:
        """Forget every engine of ``partitions`` (after they were revoked); returns their ids."""
        with self.lock:
            gone = self.engines_of(partitions)
            for engine_id in gone:
                slot = self.index.pop(engine_id)
                self.ids[slot] = ""
                self._free.append(slot)
            self._note_removed(gone)
            return gone

    def forget(self, engine_id: str) -> None:
        """Drop one engine (a changelog tombstone or an unusable record)."""
        with self.lock:
            slot = self.index.pop(engine_id, None)
            if slot is not None:
                self.ids[slot] = ""
                self._free.append(slot)
                self._note_removed([engine_id])

    def active_slots(self) -> npt.NDArray[np.intp]:
        """Rows of every tracked engine."""
        with self.lock:
            return np.fromiter(self.index.values(), dtype=np.intp, count=len(self.index))

    def resize_model_state(self, size: int) -> None:
        """Give every row a zeroed recurrent state of ``size`` floats (a model swap)."""
        with self.lock:
            if size != self.model_state_size:
                self.model_state = np.zeros((self.capacity, size), dtype=np.float32)
                self.model_state_size = size

    def clear(self) -> None:
        """Forget every engine (the session ended; state comes back from the changelog)."""
        with self.lock:
            self.index.clear()
            self.ids.clear()
            self._free.clear()
            self._journal = []
            self._removed = []
            self.journaled[:] = False
            self.generation += 1

    # -- window --------------------------------------------------------------------------
    def push(self, slots: npt.NDArray[np.intp], values: F64, ts: I64) -> None:
        """Append one reading to each row's ring window and advance its counters."""
        pos = self.count[slots] % self.window
        self.ring[slots, pos] = values
        self.ring_ts[slots, pos] = ts.astype(np.uint32)  # modulo 2**32
        self.count[slots] += 1
        self.last_ts[slots] = ts
        self.touch(slots)

    def history(self, slot: int) -> tuple[I64, F32]:
        """The window of ``slot`` oldest first: (timestamps, values (n, channels)).

        The newest timestamp is ``last_ts``; each older one is its successor minus the
        stored difference modulo 2**32 ms (uint32 arithmetic wraps), so they are exact
        while consecutive readings are less than 49.7 days apart.
        """
        order = window_order(int(self.count[slot]), self.window)
        ts = window_timestamps(self.ring_ts[slot, order], int(self.last_ts[slot]))
        return ts, self.ring[slot, order].copy()

    # -- changelog records ----------------------------------------------------------------
    _ROW_FIELDS = (
        "model_state", "ring", "ring_ts", "count", "last_ts", "last_pred", "scored_pred",
        "has_pred", "score_state", "status_since", "last_seen", "partition", "status",
        "score", "error", "threshold", "resets",
    )

    def row_header(self) -> bytes:
        """The header every record of this store starts with: format, dimensions, the
        engine class and the fingerprint of the model that wrote it."""
        return _HEADER.pack(
            _MAGIC, self.window, self.channels, self.model_state_size, self.score_state_size,
            self.class_name.encode(), self.fingerprint, self.layout,
        )

    def set_model(self, fingerprint: bytes, layout: bytes, model_state_size: int) -> None:
        """A model swap: rows written from now on name ``fingerprint`` and ``layout``; every
        row gets a zeroed recurrent state when the size changes (the caller re-warms)."""
        self.resize_model_state(model_state_size)
        self.fingerprint = fingerprint
        self.layout = layout

    def row_size(self) -> int:
        """Bytes of one :meth:`encode_row` record with this store's dimensions."""
        return _HEADER.size + sum(int(getattr(self, f)[0].nbytes) for f in self._ROW_FIELDS)

    def encode_row(self, slot: int) -> bytes:
        """The full state of one row as bytes (a changelog value); restored bit for bit."""
        return self.encode_rows(np.array([slot], dtype=np.intp))[0]

    def encode_rows(self, slots: npt.NDArray[np.intp]) -> list[bytes]:
        """:meth:`encode_row` for many rows at once (one gather per field, not per row)."""
        n = len(slots)
        if not n:
            return []
        return [row.tobytes() for row in self.encode_table(slots)]

    def encode_table(self, slots: npt.NDArray[np.intp]) -> npt.NDArray[np.uint8]:
        """The records of ``slots`` as one ``(n, row_size)`` byte table (a checkpoint)."""
        n = len(slots)
        head = np.frombuffer(self.row_header(), dtype=np.uint8)
        parts = [np.broadcast_to(head, (n, head.size))]
        for f in self._ROW_FIELDS:
            rows = np.ascontiguousarray(getattr(self, f)[slots])
            parts.append(rows.view(np.uint8).reshape(n, -1))
        return np.concatenate(parts, axis=1)

    def decode_row(self, data: bytes) -> dict[str, npt.NDArray[Any]]:
        """The fields of an :meth:`encode_row` record, in this store's dtypes.

        Reads the current layout and the older ones in :data:`_LEGACY` (converted: a
        ``VWS1`` record's int64 window timestamps become ts mod 2**32; a field an older
        layout lacks is absent from the result). Raises ``ValueError`` for another format,
        other dimensions, or a truncated record.
        """
        magic = self._check_header(data)
        layout = _LEGACY.get(magic, _CURRENT)
        out: dict[str, npt.NDArray[Any]] = {}
        off = _LEGACY_HEADER.size if magic in _LEGACY else _HEADER.size
        for f in layout.fields:
            arr = getattr(self, f)
            dtype = layout.dtypes.get(f, arr.dtype)
            n = int(np.prod(arr.shape[1:], dtype=np.int64)) if arr.ndim > 1 else 1
            if off + n * dtype.itemsize > len(data):
                raise ValueError("state record is truncated")
            raw = np.frombuffer(data, dtype=dtype, count=n, offset=off)
            out[f] = raw.reshape(arr.shape[1:]).astype(arr.dtype)  # a copy
            off += n * dtype.itemsize
        if off != len(data):
            raise ValueError("state record has trailing bytes")
        return out

    def _check_header(self, data: bytes) -> bytes:
        """The record's format magic, once it is one this store reads with its dims (the
        class and model it names are :func:`row_identity`'s business)."""
        ident = row_identity(data)
        expected = (self.window, self.channels, self.model_state_size, self.score_state_size)
        if ident.dims != expected:
            raise ValueError(f"state record dims {list(ident.dims)} differ from "
                             f"{list(expected)}")
        return ident.magic

    def restore_row(self, engine_id: str, data: bytes, init_score: F64) -> None:
        """Overwrite (or create) ``engine_id``'s row from :meth:`encode_row` bytes.

        Raises ``ValueError`` when the record was written with other dimensions (another
        window length or model), so the caller can re-warm that engine instead.
        """
        fields = self.decode_row(data)
        with self.lock:
            slot = self.index.get(engine_id)
            if slot is None:
                slot = self._new_slot(engine_id, init_score)
            for f, value in fields.items():
                getattr(self, f)[slot] = value
            if "scored_pred" not in fields:  # an older format
                self.scored_pred[slot] = np.nan
            self.changed_seq[slot] = 0
            self.touch(np.array([slot], dtype=np.intp))

    def restore_table(
        self, engine_ids: list[str], table: npt.NDArray[np.uint8], init_score: F64
    ) -> None:
        """:meth:`restore_row` for many records of the current format at once: ``table`` is
        ``(n, row_size)`` (as :meth:`encode_table` makes, or records joined), one field
        copy per column instead of per row. ``engine_ids`` must be distinct. Raises
        ``ValueError`` unless every record has this store's header (check first, or use
        :meth:`restore_row` for the odd ones)."""
        n = len(engine_ids)
        if table.shape != (n, self.row_size()):
            raise ValueError(f"table {table.shape} is not {n} rows of {self.row_size()} bytes")
        head = np.frombuffer(self.row_header(), dtype=np.uint8)
        if n and not np.array_equal(table[:, : head.size], np.broadcast_to(head, (n, head.size))):
            raise ValueError("a record's format or dimensions differ from this store's")
        with self.lock:
            slots = np.empty(n, dtype=np.intp)
            for i, engine_id in enumerate(engine_ids):
                slot = self.index.get(engine_id)
                slots[i] = self._new_slot(engine_id, init_score) if slot is None else slot
            off = head.size
            for f in self._ROW_FIELDS:
                arr = getattr(self, f)
                width = arr[0].nbytes
                column = np.ascontiguousarray(table[:, off : off + width])
                arr[slots] = column.view(arr.dtype).reshape((n, *arr.shape[1:]))
                off += width
            self.changed_seq[slots] = 0
            self.touch(slots)


@dataclass(frozen=True)
class _Layout:
    """The fields of one record format, in order, and the dtypes that differ from the
    store's."""

    fields: tuple[str, ...]
    dtypes: dict[str, np.dtype[Any]]


#: Header of the current format: magic, window, channels, model state size, score state
#: size, engine class (NUL-padded ASCII), model fingerprint, layout fingerprint.
_HEADER = struct.Struct(f"<4sHHHH32s{FINGERPRINT_BYTES}s{FINGERPRINT_BYTES}s")
#: Header of the formats before VWS4 (no class, no model).
_LEGACY_HEADER = struct.Struct("<4sHHHH")


@dataclass(frozen=True)
class RowIdentity:
    """What a changelog record's header says about it.

    ``class_name``, ``fingerprint`` and ``layout`` are None for a record of a format older
    than VWS4 (it was written by the only model there was: the default class's).
    """

    magic: bytes
    dims: tuple[int, int, int, int]  #: window, channels, model state size, score state size
    class_name: str | None
    fingerprint: bytes | None
    layout: bytes | None


def row_identity(data: bytes) -> RowIdentity:
    """Read a changelog record's header. Raises ``ValueError`` when it is too short or of a
    format this version does not read."""
    if len(data) < _LEGACY_HEADER.size:
        raise ValueError("state record too short")
    magic = bytes(data[:4])
    if magic in _LEGACY:
        _, *dims = _LEGACY_HEADER.unpack_from(data)
        return RowIdentity(magic, (dims[0], dims[1], dims[2], dims[3]), None, None, None)
    if magic != _MAGIC:
        known = ", ".join(m.decode() for m in (_MAGIC, *_LEGACY))
        raise ValueError(f"state record format {magic!r} is not one this version reads "
                         f"({known})")
    if len(data) < _HEADER.size:
        raise ValueError("state record too short")
    _, w, c, m, k, name, fingerprint, layout = _HEADER.unpack_from(data)
    return RowIdentity(magic, (w, c, m, k), name.rstrip(b"\0").decode("ascii", "replace"),
                       bytes(fingerprint), bytes(layout))


def window_order(count: int, window: int) -> npt.NDArray[np.intp]:
    """Ring positions of a window holding ``count`` readings so far, oldest first."""
    n = min(count, window)
    end = count % window
    return (np.arange(end - n, end) % window).astype(np.intp)


def window_timestamps(stored: npt.NDArray[np.uint32], last_ts: int) -> I64:
    """Full timestamps of a window's stored ``ring_ts`` values (oldest first) ending at
    ``last_ts``: each older one is its successor minus the difference modulo 2**32 ms."""
    ts = np.empty(len(stored), dtype=np.int64)
    if len(stored):
        steps = (stored[1:] - stored[:-1]).astype(np.int64)  # uint32: mod 2**32
        ts[-1] = last_ts
        ts[:-1] = last_ts - np.cumsum(steps[::-1])[::-1]
    return ts
#: Record format: VWS4 adds to the header the engine class and the fingerprint of the
#: model that wrote the row (the fields are VWS3's); VWS3 adds the prediction the latest
#: reading was scored against (``scored_pred``); VWS2 keeps window timestamps as uint32
#: (ts mod 2**32).
_MAGIC = b"VWS4"
_CURRENT = _Layout(EngineStore._ROW_FIELDS, {})
_V2_FIELDS = tuple(f for f in EngineStore._ROW_FIELDS if f != "scored_pred")
#: Older formats still read (their header is :data:`_LEGACY_HEADER`): magic -> layout.
_LEGACY: dict[bytes, _Layout] = {
    b"VWS1": _Layout(_V2_FIELDS, {"ring_ts": np.dtype(np.int64)}),
    b"VWS2": _Layout(_V2_FIELDS, {}),
    b"VWS3": _Layout(EngineStore._ROW_FIELDS, {}),
}
