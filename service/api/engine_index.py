"""The engine list behind ``GET /engines``: kept up to date from the stores' change journals.

Why: sorting every engine per request cost 1.7–2.9 s at 200k engines and held the
pipeline's lock (``EngineStore.lock``) while it copied every row. Here a refresh (every
``api.index_interval_ms``, on the index's own thread) takes each store's change journal
(:meth:`EngineStore.take_changes`: the rows changed since the previous refresh) and copies
only those rows, under that store's lock: O(changed rows), never O(engines). Outside any
store lock it then merges them into sorted orders (one per sort key; O(engines) vectorised
NumPy passes plus O(changed log engines), no full sort), and a request slices an order:
``sort=score&limit=50`` reads 50 rows.

What a row shows: the engine's latest processed reading as of the last refresh, at most
``api.index_interval_ms`` behind the store (``GET /engines/{id}`` reads the store itself).
An engine is listed once: from the pipeline's store when this instance owns it (``local``),
otherwise from the fleet view's store (``fleet``).

Order: ascending by (key, engine id); ``order=desc`` reverses it (ties by engine id
descending, as before). Memory: about ``(3 * channels + 9) * 8`` bytes per listed engine
plus four ``int64`` order entries, ~130 bytes with one channel: ~13 MB at 100k engines.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from service.classes import ClassStores
from service.state import EngineStore

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

#: Sort keys, each with an order kept up to date. ``severity``: the status (its index in the
#: processor's status order, warmup < normal < warning < alarm), then the score, so an engine
#: whose alarm is held while its current reading scores low (between an intermittent
#: fault's bursts, after a repair) still lists above every engine that is not in alarm.
SORT_KEYS = ("severity", "score", "engine_id", "last_seen", "status_since")
LOCAL, FLEET = 0, 1
#: The largest score fraction: status + fraction stays below the next status code in float64.
_BELOW_ONE = 1.0 - 1e-9


def severity(status: npt.NDArray[np.int8], score: F64) -> F64:
    """One sortable number per engine: the status code plus ``score / (1 + score)`` (in
    [0, 1), increasing in the score, which has no ceiling), so the status orders first and
    the score within a status. NaN counts as 0, infinity as the highest score."""
    s = np.nan_to_num(np.maximum(score, 0.0), nan=0.0, posinf=np.finfo(np.float64).max)
    frac = np.minimum(s / (1.0 + s), _BELOW_ONE)
    out: F64 = status.astype(np.float64) + frac
    return out



@dataclass(frozen=True, slots=True)
class Rows:
    """Copies of some engines' shown fields (one entry per engine, in the same order)."""

    ids: list[str]
    source: npt.NDArray[np.int8]
    score: F64
    status: npt.NDArray[np.int8]
    last_seen: I64
    status_since: I64
    last_ts: I64
    readings: I64
    error: F64
    changed_seq: I64
    values: F64  # (n, channels): NaN beyond the engine class's channels
    predicted: F64
    scored: F64
    klass: npt.NDArray[np.int8]  # the engine's class (its index in the index's stores)

    @classmethod
    def gather(cls, store: EngineStore, slots: npt.NDArray[np.intp], ids: list[str],
               source: int, klass: int = 0, width: int | None = None) -> Rows:
        """Copy the shown fields of ``slots`` (their engines are ``ids``, of class number
        ``klass``), per-channel fields padded with NaN to ``width``; lock held."""
        pos = (store.count[slots] - 1) % store.window

        def wide(a: F64) -> F64:
            if width is None or width == a.shape[1]:
                return a
            out = np.full((a.shape[0], width), np.nan)
            out[:, : a.shape[1]] = a
            return out

        return cls(
            ids=ids,
            source=np.full(len(ids), source, dtype=np.int8),
            score=store.score[slots],
            status=store.status[slots],
            last_seen=store.last_seen[slots],
            status_since=store.status_since[slots],
            last_ts=store.last_ts[slots],
            readings=store.count[slots],
            error=store.error[slots],
            changed_seq=store.changed_seq[slots],
            values=wide(store.ring[slots, pos].astype(np.float64)),
            predicted=wide(store.last_pred[slots]),
            scored=wide(store.scored_pred[slots]),
            klass=np.full(len(ids), klass, dtype=np.int8),
        )

    @classmethod
    def concat(cls, parts: Sequence[Rows], channels: int) -> Rows:
        if not parts:
            return cls.empty(channels)
        if len(parts) == 1:
            return parts[0]
        fields: dict[str, Any] = {"ids": [i for p in parts for i in p.ids]}
        for name in cls.__slots__:
            if name != "ids":
                fields[name] = np.concatenate([getattr(p, name) for p in parts])
        return cls(**fields)

    @classmethod
    def empty(cls, channels: int) -> Rows:
        f, i = np.empty(0, np.float64), np.empty(0, np.int64)
        c = np.empty((0, channels), np.float64)
        return cls([], np.empty(0, np.int8), f, np.empty(0, np.int8), i, i, i, i, f, i, c,
                   c, c, np.empty(0, np.int8))


class Page:
    """One page of the list, copied out of the index (so it outlives the next refresh)."""

    def __init__(self, total: int, rows: Rows, committed_seq: int) -> None:
        self.total = total
        self.rows = rows
        self.committed_seq = committed_seq


class EngineIndex:
    """The listed engines, their shown fields and one sorted order per key.

    Written only by :meth:`refresh` (the index thread, or a test); read by :meth:`page`
    from request handlers. Both take the index's own lock, never a store's lock for more
    than the changed rows.
    """

    def __init__(
        self, local: EngineStore | ClassStores, fleet: EngineStore | ClassStores | None,
        channels: int,
    ) -> None:
        """``local`` and ``fleet``: the stores of each engine class (in the same class
        order); ``channels``: the most channels of any class (per-channel fields are padded
        to it)."""
        self.local = ClassStores.of(local)
        self.fleet = None if fleet is None else ClassStores.of(fleet)
        self.channels = channels
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._generations: dict[tuple[int, int], int] = {
            (source, k): store.generation for source, k, store in self._stores()
        }
        self.version = 0
        #: monotonic time the last completed refresh began (it holds every change before)
        self.refreshed_from = 0.0
        # Row storage; freed rows are reused.
        self._row_of: dict[str, int] = {}
        self._ids: list[str] = []
        self._free: list[int] = []
        self._cap = 0
        self._alloc(1024)
        # Orders: rows ascending by (key, id rank); live rows only. Beside each numeric
        # order, its keys in the same order (so a merge gathers no columns).
        self._orders: dict[str, I64] = {k: np.empty(0, np.int64) for k in SORT_KEYS}
        self._keys: dict[str, npt.NDArray[np.complex128]] = {
            k: np.empty(0, np.complex128) for k in SORT_KEYS if k != "engine_id"}
        self._rank = np.zeros(self._cap, np.int64)  # position in the engine_id order
        self._sorted_ids: list[str] = []  # engine ids ascending (the engine_id order)
        # Memo of filtered orders, cleared at every refresh.
        self._memo: dict[tuple[str, int], I64] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- storage -------------------------------------------------------------------------
    def _alloc(self, cap: int) -> None:
        old = self._cap

        def grow(name: str, shape: tuple[int, ...], dtype: Any) -> None:
            new: npt.NDArray[Any] = np.zeros((cap, *shape), dtype=dtype)
            if old:
                new[:old] = getattr(self, name)[:old]
            setattr(self, name, new)

        for name in ("score", "error"):
            grow(name, (), np.float64)
        for name in ("last_seen", "status_since", "last_ts", "readings", "changed_seq"):
            grow(name, (), np.int64)
        grow("status", (), np.int8)
        grow("source", (), np.int8)
        grow("klass", (), np.int8)
        for name in ("values", "predicted", "scored"):
            grow(name, (self.channels,), np.float64)
        if old:
            rank = np.zeros(cap, np.int64)
            rank[:old] = self._rank[:old]
            self._rank = rank
        self._cap = cap

    score: F64
    error: F64
    last_seen: I64
    status_since: I64
    last_ts: I64
    readings: I64
    changed_seq: I64
    status: npt.NDArray[np.int8]
    source: npt.NDArray[np.int8]
    klass: npt.NDArray[np.int8]
    values: F64
    predicted: F64
    scored: F64

    def __len__(self) -> int:
        return len(self._row_of)

    # -- the refresh thread ----------------------------------------------------------------
    def start(self, interval_s: float) -> None:
        """Refresh now, then every ``interval_s`` on a daemon thread until :meth:`stop`
        (idempotent)."""
        if self._thread is None:
            self.refresh()
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, args=(interval_s,), name="engine-index", daemon=True
            )
            self._thread.start()

    def wake(self) -> None:
        """Refresh now rather than at the end of the interval."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self, interval_s: float) -> None:
        while True:
            self._wake.wait(interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.refresh()

    # -- refresh ---------------------------------------------------------------------------
    def refresh(self) -> int:
        """Take in every change since the last refresh; returns the engines touched."""
        with self._refresh_lock:
            began = time.monotonic()
            touched, reset = self._take()
            if reset:
                with self._lock:
                    touched |= {e for e, r in self._row_of.items()
                                if (int(self.source[r]), int(self.klass[r])) in reset}
            rows = self._resolve(touched)
            self._apply(touched, rows)
            self.refreshed_from = began
            return len(touched)

    def _stores(self) -> list[tuple[int, int, EngineStore]]:
        """(source, class number, store) of every store, the local ones first."""
        out = [(LOCAL, k, s) for k, s in enumerate(self.local)]
        if self.fleet is not None:
            out.extend((FLEET, k, s) for k, s in enumerate(self.fleet))
        return out

    def _take(self) -> tuple[set[str], set[tuple[int, int]]]:
        """Engine ids named by the journals, and the stores (source, class number) whose
        generation moved."""
        touched: set[str] = set()
        reset: set[tuple[int, int]] = set()
        for source, k, store in self._stores():
            with store.lock:
                generation, slots, removed = store.take_changes()
                ids = store.ids
                touched.update(e for e in (ids[s] for s in slots.tolist()) if e)
            touched.update(removed)
            if generation != self._generations[(source, k)]:
                self._generations[(source, k)] = generation
                reset.add((source, k))
        return touched, reset

    def _resolve(self, touched: Iterable[str]) -> Rows:
        """Current rows of ``touched`` engines: a local store's if one has the engine,
        else a fleet store's; engines in none are absent from the result."""
        missing = list(touched)
        parts = []
        for source, k, store in self._stores():
            if not missing:
                break
            found: list[str] = []
            slots: list[int] = []
            rest: list[str] = []
            # In chunks, so that a resync of many engines does not hold the lock long.
            for start in range(0, len(missing), 4096):
                chunk = missing[start:start + 4096]
                with store.lock:
                    f0 = len(found)
                    for e in chunk:
                        slot = store.index.get(e)
                        if slot is None or store.count[slot] == 0:
                            rest.append(e)
                        else:
                            found.append(e)
                            slots.append(slot)
                    if len(found) > f0:
                        parts.append(Rows.gather(
                            store, np.asarray(slots[f0:], dtype=np.intp), found[f0:], source,
                            k, self.channels,
                        ))
            missing = rest
        return Rows.concat(parts, self.channels)

    def _apply(self, touched: set[str], rows: Rows) -> None:
        """Write ``rows`` into the index, drop the other ``touched`` engines, re-sort."""
        if not touched:
            return
        live = set(rows.ids)
        gone_ids = {e for e in touched - live if e in self._row_of}
        gone = [self._row_of[e] for e in gone_ids]
        added = [e for e in rows.ids if e not in self._row_of]
        # Only this thread writes the row map, so reading it before the lock is safe.
        old_rows = np.fromiter((self._row_of[e] for e in touched if e in self._row_of),
                               dtype=np.int64)
        with self._lock:
            for r in gone:
                e = self._ids[r]
                del self._row_of[e]
                self._ids[r] = ""
                self._free.append(r)
            for e in added:
                if self._free:
                    r = self._free.pop()
                    self._ids[r] = e
                else:
                    r = len(self._ids)
                    if r >= self._cap:
                        self._alloc(self._cap + max(1024, self._cap // 4))
                    self._ids.append(e)
                self._row_of[e] = r
            target = np.fromiter((self._row_of[e] for e in rows.ids), dtype=np.int64,
                                 count=len(rows.ids))
            for name in Rows.__slots__:
                if name != "ids":
                    getattr(self, name)[target] = getattr(rows, name)
            reranked = bool(gone or added)
            if reranked:
                self._rerank(added, gone_ids)
            moved = np.union1d(old_rows, target)
            moved_mask = np.zeros(self._cap, dtype=bool)
            moved_mask[moved] = True
            for key in self._keys:
                self._merge(key, moved_mask, target, reranked)
            self.version += 1
            self._memo.clear()

    def _rerank(self, added: list[str], gone: set[str]) -> None:
        """Rebuild the engine_id order and every row's rank (membership changed).

        The sorted id list is merged rather than sorted: Timsort finds the two sorted runs,
        so this is O(engines) comparisons plus the sort of the added ids.
        """
        ids = [e for e in self._sorted_ids if e not in gone] if gone else self._sorted_ids
        ids = sorted(ids + sorted(added))
        self._sorted_ids = ids
        rows = np.fromiter((self._row_of[e] for e in ids), dtype=np.int64, count=len(ids))
        self._rank[rows] = np.arange(len(ids), dtype=np.int64)
        self._orders["engine_id"] = rows

    def _key(self, key: str, rows: I64) -> npt.NDArray[np.complex128]:
        """Sort keys of ``rows``: (primary, id rank) as one complex number, since NumPy
        sorts and searches complex values by real part, then imaginary part."""
        out = np.empty(len(rows), dtype=np.complex128)
        if key == "severity":
            out.real = severity(self.status[rows], self.score[rows])
        else:
            primary = {"score": self.score, "last_seen": self.last_seen,
                       "status_since": self.status_since}[key][rows]
            out.real = np.nan_to_num(primary, nan=-np.inf)
        out.imag = self._rank[rows]
        return out

    def _merge(self, key: str, moved: npt.NDArray[np.bool_], live_moved: I64,
               reranked: bool) -> None:
        """Take the ``moved`` rows (a mask) out of the order of ``key`` and put
        ``live_moved`` back at their new places (lock held; ranks current).

        O(engines) vectorised passes (a mask, an insert) plus O(moved log moved); the keys
        of the rows that stay are recomputed only when the ranks changed (``reranked``).
        """
        order, keys = self._orders[key], self._keys[key]
        keep = ~moved[order]
        order = order[keep]
        keys = self._key(key, order) if reranked else keys[keep]
        if live_moved.size:
            new_keys = self._key(key, live_moved)
            by = np.argsort(new_keys, kind="stable")
            new_keys = new_keys[by]
            at = np.searchsorted(keys, new_keys)
            order = np.insert(order, at, live_moved[by])
            keys = np.insert(keys, at, new_keys)
        self._orders[key], self._keys[key] = order, keys

    # -- reading ----------------------------------------------------------------------------
    def page(
        self,
        *,
        sort: str = "score",
        descending: bool = True,
        status: int | None = None,
        min_score: float = 0.0,
        stale: bool | None = None,
        stale_before_ms: int = 0,
        offset: int = 0,
        limit: int = 100,
    ) -> Page:
        """Rows ``offset`` to ``offset + limit`` of the filtered order, and the total.

        ``stale``: True lists only engines last seen before ``stale_before_ms`` (wall-clock
        epoch ms), False only the others. Cost: O(limit) for the default query; each filter
        adds one vectorised pass over the order (the status filter's is remembered until
        the next refresh).
        """
        with self._lock:
            order = self._filtered(sort, status)
            if min_score > 0:
                if sort == "score":
                    order = order[np.searchsorted(self.score[order], min_score):]
                else:
                    order = order[self.score[order] >= min_score]
            if stale is not None:
                if sort == "last_seen":
                    cut = int(np.searchsorted(self.last_seen[order], stale_before_ms))
                    order = order[:cut] if stale else order[cut:]
                else:
                    old = self.last_seen[order] < stale_before_ms
                    order = order[old if stale else ~old]
            total = len(order)
            start = min(offset, total)
            sel = (order[::-1] if descending else order)[start:start + limit]
            rows = self._copy(sel)
        return Page(total, rows, self.local.committed_seq)

    def _filtered(self, sort: str, status: int | None) -> I64:
        order = self._orders[sort]
        if status is None:
            return order
        memo = self._memo.get((sort, status))
        if memo is None:
            memo = order[self.status[order] == status]
            self._memo[(sort, status)] = memo
        return memo

    def _copy(self, sel: I64) -> Rows:
        return Rows(
            ids=[self._ids[r] for r in sel.tolist()],
            source=self.source[sel], score=self.score[sel], status=self.status[sel],
            last_seen=self.last_seen[sel], status_since=self.status_since[sel],
            last_ts=self.last_ts[sel], readings=self.readings[sel], error=self.error[sel],
            changed_seq=self.changed_seq[sel], values=self.values[sel],
            predicted=self.predicted[sel], scored=self.scored[sel], klass=self.klass[sel],
        )

    def current(self, engine_id: str) -> Rows | None:
        """The engine's row read from the stores now (not the index): O(1) under one lock.
        None when neither store has a reading of it."""
        for source, k, store in self._stores():
            with store.lock:
                slot = store.index.get(engine_id)
                if slot is not None and store.count[slot] > 0:
                    return Rows.gather(store, np.array([slot], dtype=np.intp), [engine_id],
                                       source, k, self.channels)
        return None

    def count_stale(self, stale_before_ms: int, source: int = LOCAL) -> int:
        """Engines of ``source`` last seen before ``stale_before_ms`` (for the gauge)."""
        with self._lock:
            order = self._orders["last_seen"]
            cut = int(np.searchsorted(self.last_seen[order], stale_before_ms))
            return int(np.count_nonzero(self.source[order[:cut]] == source))
