"""Local checkpoints: a snapshot of the store and the changelog offsets it covers.

As Kafka Streams keeps a checkpoint file beside each state store, an instance writes the
committed rows of the engines it owns to a local file together with, per changelog
partition, the offset up to which those rows reflect the changelog. A restart then loads
the file and reads only the changelog's tail from those offsets (see
:mod:`service.kafka.restore`) instead of the whole compacted changelog.

When it is written: only right after a commit was acknowledged with nothing pending, so the
rows are exactly the committed state (:meth:`Pipeline._checkpoint`), and then atomically
(a temporary file, fsync, rename): a crash leaves the previous checkpoint or the new one,
never a torn file. It is trusted for a partition only when its offset lies within the
changelog partition's current range and it is younger than ``state.checkpoint_max_age_s``
(compaction removes tombstones after the changelog's ``delete.retention.ms``, one day by
default; an older checkpoint could bring back engines that were evicted since). Anything
else about it being wrong (another format, other dimensions, another topic) makes the
restore start from the beginning of the changelog. Memory: reading and writing go a block of
rows at a time, never the whole file at once.

File layout: ``VWCK``, a uint32 length, that many bytes of JSON (:class:`Meta`), then per
partition in the order of ``Meta.partitions``: ``count`` engine ids as 64-byte NUL-padded
ASCII, then ``count`` rows of ``row_size`` bytes (``EngineStore.encode_table``).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from service.state import EngineStore

log = logging.getLogger(__name__)

_MAGIC = b"VWCK"
_LEN = struct.Struct("<I")
ID_BYTES = 64  #: engine ids are at most 64 ASCII characters (the message contract)
BLOCK = 4096  #: rows read or written at a time


@dataclass(frozen=True)
class PartitionEntry:
    partition: int
    offset: int  #: first changelog offset *not* reflected in the rows
    count: int  #: engines


@dataclass(frozen=True)
class Meta:
    changelog_topic: str
    row_header: str  #: hex of the rows' record header (format and dimensions)
    row_size: int
    written_at: float  #: epoch seconds
    partitions: tuple[PartitionEntry, ...]

    def entry(self, partition: int) -> PartitionEntry | None:
        return next((e for e in self.partitions if e.partition == partition), None)


class Checkpoint:
    """A checkpoint file that was read and found usable for a store (see :func:`load`)."""

    def __init__(self, path: Path, meta: Meta, data_start: int) -> None:
        self.path = path
        self.meta = meta
        self._data_start = data_start

    def offset(self, partition: int) -> int | None:
        """The changelog offset the rows of ``partition`` cover, or None if not in here."""
        e = self.meta.entry(partition)
        return None if e is None else e.offset

    def blocks(self, partition: int) -> Iterator[tuple[list[str], npt.NDArray[np.uint8]]]:
        """The engine ids and row table of ``partition``, :data:`BLOCK` rows at a time."""
        pos = self._data_start
        for e in self.meta.partitions:
            if e.partition == partition:
                break
            pos += e.count * (ID_BYTES + self.meta.row_size)
        else:
            return
        with self.path.open("rb") as f:
            f.seek(pos)
            ids = np.frombuffer(_read(f, e.count * ID_BYTES), dtype=f"S{ID_BYTES}")
            size = self.meta.row_size
            for start in range(0, e.count, BLOCK):
                n = min(BLOCK, e.count - start)
                table = np.frombuffer(_read(f, n * size), dtype=np.uint8).reshape(n, size)
                yield [i.decode("ascii") for i in ids[start : start + n]], table


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError("checkpoint file is truncated")
    return data


def load(
    path: Path, store: EngineStore, changelog_topic: str, max_age_s: float
) -> Checkpoint | None:
    """The checkpoint at ``path`` if it exists and fits ``store`` and ``changelog_topic``
    and is younger than ``max_age_s``; None otherwise (the reason is logged)."""
    if not path.is_file():
        return None
    try:
        with path.open("rb") as f:
            if f.read(4) != _MAGIC:
                raise ValueError("not a checkpoint file")
            (n,) = _LEN.unpack(_read(f, _LEN.size))
            raw = json.loads(_read(f, n))
            meta = Meta(**{**raw, "partitions": tuple(PartitionEntry(**e)
                                                       for e in raw["partitions"])})
            start = f.tell()
        size = start + sum(e.count * (ID_BYTES + meta.row_size) for e in meta.partitions)
        if path.stat().st_size != size:
            raise ValueError(f"{path.stat().st_size} bytes, expected {size}")
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("checkpoint %s is unusable (%s); restoring from the changelog", path, exc)
        return None
    age = time.time() - meta.written_at
    why = (
        "written for another changelog topic" if meta.changelog_topic != changelog_topic
        else "rows of another format or dimensions"
        if meta.row_header != store.row_header().hex()
        else f"{age:.0f} s old, older than state.checkpoint_max_age_s" if age > max_age_s
        else None
    )
    if why is not None:
        log.info("checkpoint %s not used: %s", path, why)
        return None
    return Checkpoint(path, meta, start)


class CheckpointWriter:
    """Writes checkpoints of one store to ``path``; the slow part (fsync, rename) runs on a
    background thread so the pipeline is held only while the rows are copied out."""

    def __init__(self, path: Path, store: EngineStore, changelog_topic: str) -> None:
        self.path = path
        self.store = store
        self.changelog_topic = changelog_topic
        self._thread: threading.Thread | None = None
        self.written = 0  #: checkpoints completed

    def write(self, offsets: dict[int, int]) -> None:
        """Snapshot the engines of the partitions in ``offsets`` (partition -> first
        changelog offset not reflected in the rows). Call with the store equal to the
        committed state; the store is read under its lock while the rows go to a temporary
        file, then the file is made durable and renamed in the background. Raises OSError
        when the file cannot be written (the caller logs it; checkpoints are an
        optimisation)."""
        self.wait()
        store = self.store
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = tmp.open("wb")
        try:
            with store.lock:
                active = store.active_slots()
                parts = store.partition[active]
                by_part = {p: active[parts == p] for p in sorted(offsets)}
                meta = Meta(
                    self.changelog_topic, store.row_header().hex(), store.row_size(), time.time(),
                    tuple(PartitionEntry(p, offsets[p], len(s)) for p, s in by_part.items()),
                )
                head = json.dumps(asdict(meta)).encode()
                f.write(_MAGIC + _LEN.pack(len(head)) + head)
                for slots in by_part.values():
                    ids = np.array([store.ids[s] for s in slots.tolist()], dtype=f"S{ID_BYTES}")
                    f.write(ids.tobytes())
                    for start in range(0, len(slots), BLOCK):
                        f.write(store.encode_table(slots[start : start + BLOCK]).tobytes())
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
        self._thread = threading.Thread(
            target=self._finish, args=(f, tmp, meta), name="checkpoint", daemon=True
        )
        self._thread.start()

    def _finish(self, f: BinaryIO, tmp: Path, meta: Meta) -> None:
        try:
            f.flush()
            os.fsync(f.fileno())
            f.close()
            tmp.replace(self.path)
            self.written += 1
            log.debug("checkpoint of %d engines written to %s",
                      sum(e.count for e in meta.partitions), self.path)
        except OSError:
            log.exception("writing checkpoint %s failed", self.path)
            f.close()
            tmp.unlink(missing_ok=True)

    def wait(self) -> None:
        """Block until the checkpoint being written (if any) is durable."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class CheckpointSet:
    """The checkpoints of every engine class (a file per class, written together): usable
    for a partition only when every class's file is and they cover the same changelog
    offset, so a class added since, or one file lost, means a restore from the beginning."""

    def __init__(self, files: dict[str, Checkpoint | None]) -> None:
        self.files = files

    def offset(self, partition: int) -> int | None:
        """The changelog offset every class's rows of ``partition`` cover, or None."""
        offsets = {None if c is None else c.offset(partition) for c in self.files.values()}
        if len(offsets) != 1:
            return None
        return offsets.pop()

    def blocks(
        self, partition: int
    ) -> Iterator[tuple[str, list[str], npt.NDArray[np.uint8]]]:
        """Each class's blocks of ``partition``: (class, engine ids, row table)."""
        for name, c in self.files.items():
            if c is not None:
                for ids, table in c.blocks(partition):
                    yield name, ids, table
