"""Engine classes: which model an engine runs under, and the stores of all classes.

A fleet mixes kinds of machines (pumps with eight sensors beside bearings with one), each
kind with its own model. Every engine belongs to exactly one class; the class has its own
model, scoring and store (row sizes follow the class's channels and recurrent state). An
engine's class is, in this order (:class:`ClassResolver`):

1. the class it already has here (a class never changes silently: a message that names
   another class is a dead letter, reason ``class_mismatch``);
2. the message's optional ``"class"`` field (a class with no model here: ``unknown_class``);
3. the first ``model.classes`` entry whose ``id_pattern`` matches the whole engine id;
4. the default class (``model.default_class``, the model of ``model.artifact_dir``).

Each changelog row names its class and the fingerprints of the model that wrote it
(:func:`model_fingerprint`, :func:`layout_fingerprint`); :func:`place_record` decides what a
restore does with a row written by another model.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from service.errors import InvalidMessageError
from service.processor import StepModel
from service.state import F64, FINGERPRINT_BYTES, EngineStore, row_identity

#: What a message's "class" field may hold (as ``service.config.CLASS_NAME``).
CLASS_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
#: Engine ids whose pattern match is remembered (the resolver's cache is cleared beyond).
_CACHE_LIMIT = 1_000_000


def layout_fingerprint(model: StepModel) -> bytes:
    """What a row's window and recurrent state mean: the channel names (in order) and the
    state size. Rows of two models with the same layout can be re-warmed from one to the
    other; rows of another layout cannot."""
    text = "\x1f".join((*model.channels, str(model.state_size)))
    return hashlib.sha256(b"layout\x1e" + text.encode()).digest()[:FINGERPRINT_BYTES]


def model_fingerprint(model: StepModel) -> bytes:
    """The model itself: its version (unique per training run) and its layout."""
    text = f"{model.version}\x1e".encode() + layout_fingerprint(model)
    return hashlib.sha256(text).digest()[:FINGERPRINT_BYTES]


class ClassResolver:
    """Decides the class of an engine from its message (see the module doc)."""

    def __init__(
        self, default: str, names: Sequence[str], patterns: Sequence[tuple[str, str]]
    ) -> None:
        self.default = default
        self.names = frozenset(names) | {default}
        self.patterns = [(name, re.compile(p)) for name, p in patterns]
        self._matched: dict[str, str] = {}

    def declared(self, raw: object) -> str | None:
        """A message's ``class`` field, checked (None when absent); raises ``bad_class``."""
        if raw is None:
            return None
        if not isinstance(raw, str) or not CLASS_NAME.fullmatch(raw):
            raise InvalidMessageError(
                "bad_class", "class must be 1-32 characters of [a-z0-9_.-], starting with a "
                "letter or digit"
            )
        return raw

    def resolve(self, engine_id: str, declared: str | None, current: str | None) -> str:
        """The class of ``engine_id``: ``current`` when it has one here, else ``declared``
        (the message's, checked), else by id pattern, else the default. Raises
        InvalidMessageError (``class_mismatch``, ``unknown_class``)."""
        if current is not None:
            if declared is not None and declared != current:
                raise InvalidMessageError(
                    "class_mismatch", f"engine {engine_id!r} is of class {current!r}, the "
                    f"message says {declared!r} (an engine does not change class)"
                )
            return current
        if declared is not None:
            if declared not in self.names:
                raise InvalidMessageError(
                    "unknown_class", f"no model for class {declared!r} (classes: "
                    f"{', '.join(sorted(self.names))}; see model.classes)"
                )
            return declared
        if not self.patterns:
            return self.default
        found = self._matched.get(engine_id)
        if found is None:
            found = next((n for n, p in self.patterns if p.fullmatch(engine_id)), self.default)
            if len(self._matched) >= _CACHE_LIMIT:
                self._matched.clear()
            self._matched[engine_id] = found
        return found


class ClassStores:
    """The stores of an instance's engine classes (its own engines, or the fleet view's):
    one per class, the default class first. An engine is in at most one of them."""

    def __init__(self, stores: Sequence[EngineStore], init_scores: Sequence[F64]) -> None:
        if not stores:
            raise ValueError("at least one class store is needed")
        self.stores = list(stores)
        self.by_name = {s.class_name: s for s in self.stores}
        self.init_scores = {s.class_name: v for s, v in zip(stores, init_scores, strict=True)}
        self.default = self.stores[0]

    @classmethod
    def of(cls, store: EngineStore | ClassStores, init_score: F64 | None = None) -> ClassStores:
        """``store`` itself, or a set of one store (tools and tests of one class)."""
        if isinstance(store, ClassStores):
            return store
        if init_score is None:
            init_score = np.zeros(store.score_state_size)
        return cls([store], [init_score])

    def __iter__(self) -> Iterator[EngineStore]:
        return iter(self.stores)

    def __len__(self) -> int:
        """Engines in all stores."""
        return sum(len(s) for s in self.stores)

    def find(self, engine_id: str) -> EngineStore | None:
        """The store that holds ``engine_id``, or None."""
        for s in self.stores:
            if engine_id in s.index:
                return s
        return None

    def class_of(self, engine_id: str) -> str | None:
        s = self.find(engine_id)
        return None if s is None else s.class_name

    def next_seq(self) -> int:
        """Number the next processing batch (every store's ``seq``)."""
        seq = self.default.seq + 1
        for s in self.stores:
            s.seq = seq
        return seq

    @property
    def committed_seq(self) -> int:
        return self.default.committed_seq

    def set_committed(self, seq: int) -> None:
        for s in self.stores:
            s.committed_seq = max(s.committed_seq, seq)

    def drop_partitions(self, partitions: set[int]) -> list[str]:
        return [e for s in self.stores for e in s.drop_partitions(partitions)]

    def engines_of(self, partitions: set[int]) -> list[str]:
        return [e for s in self.stores for e in s.engines_of(partitions)]

    def forget(self, engine_id: str) -> None:
        for s in self.stores:
            s.forget(engine_id)

    def clear(self) -> None:
        for s in self.stores:
            s.clear()

    def committed_rows(self, partitions: set[int]) -> list[tuple[str, bytes]]:
        """Changelog values of every engine of ``partitions``, of every class."""
        out: list[tuple[str, bytes]] = []
        for store in self.stores:
            with store.lock:
                ids = store.engines_of(partitions)
                slots = np.fromiter((store.index[e] for e in ids), dtype=np.intp,
                                    count=len(ids))
                out.extend(zip(ids, store.encode_rows(slots), strict=True))
        return out


class Placement(Enum):
    """What :func:`place_record` did with a changelog row."""

    RESTORED = "restored"  #: written by the class's current model: restored bit for bit
    REWARM = "rewarm"  #: another version of the class's model with the same layout: restored,
    #: its recurrent state is to be re-warmed from its window (scoring kept, as on a reload)
    RECOMMISSIONED = "recommissioned"  #: another layout (channels, state): fresh state
    FORGOTTEN = "forgotten"  #: a tombstone, an unreadable row or a class with no model here


@dataclass(frozen=True)
class Placed:
    placement: Placement
    store: EngineStore | None = None
    slot: int = -1
    why: str = ""


def place_record(
    stores: ClassStores, engine_id: str, value: bytes | None, partition: int,
    *, recommission: bool = True,
) -> Placed:
    """Apply one changelog record of ``engine_id`` to the store of the class it names (lock
    of that store taken here).

    A row of an older format (before VWS4) belongs to the default class and is taken as the
    default model's. A row naming another model of its class: restored when the layout is
    the same (``REWARM``: the caller re-warms the recurrent state), otherwise
    re-commissioned (``recommission``: an empty row of that class, so the engine keeps its
    class and starts afresh: fresh model state, scoring commissions again) or forgotten (the
    fleet view shows it once its owner writes it again). A row of a class with no model here
    and a row that cannot be read are forgotten (``why`` says why).
    """
    if not value:
        stores.forget(engine_id)
        return Placed(Placement.FORGOTTEN)
    try:
        ident = row_identity(value)
    except ValueError as exc:
        stores.forget(engine_id)
        return Placed(Placement.FORGOTTEN, why=str(exc))
    name = stores.default.class_name if ident.class_name is None else ident.class_name
    store = stores.by_name.get(name)
    if store is None:
        stores.forget(engine_id)
        return Placed(Placement.FORGOTTEN, why=f"written for class {name!r}, which has no "
                      "model here (model.classes)")
    for other in stores:
        if other is not store:
            other.forget(engine_id)
    init = stores.init_scores[name]
    dims = (store.window, store.channels, store.model_state_size, store.score_state_size)
    same_model = ident.fingerprint is None or ident.fingerprint == store.fingerprint
    same_layout = ident.dims == dims and (
        same_model or ident.layout is None or ident.layout == store.layout
    )
    if same_layout:
        try:
            store.restore_row(engine_id, value, init)
        except ValueError as exc:
            store.forget(engine_id)
            return Placed(Placement.FORGOTTEN, why=str(exc))
        with store.lock:
            slot = store.index[engine_id]
        return Placed(Placement.RESTORED if same_model else Placement.REWARM, store, slot)
    why = (f"written by another model of class {name!r} (dims {list(ident.dims)}, this "
           f"model's {list(dims)}; or other channels)")
    if not recommission:
        store.forget(engine_id)
        return Placed(Placement.FORGOTTEN, why=why)
    with store.lock:
        store.forget(engine_id)
        slots, _ = store.slots_for([engine_id], [partition], init)
    return Placed(Placement.RECOMMISSIONED, store, int(slots[0]), why)

