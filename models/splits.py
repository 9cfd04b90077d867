"""Train / validation / test splits that never let evaluation targets into training.

- by engine: whole engines go to one part (named, or drawn with a seed);
- by file: whole source files go to one part;
- by time: every engine is cut at two points; the validation and test parts carry the
  preceding readings as unscored context (``Series.score_from``), which is the past the
  service would have seen too, never a future value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.data import DataError, Dataset, Series

METHODS = ("engine", "file", "time")


@dataclass(frozen=True, eq=False)
class Split:
    """Three disjoint parts of one dataset, and how they were made."""

    method: str
    train: tuple[Series, ...]
    val: tuple[Series, ...]
    test: tuple[Series, ...]
    params: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        """JSON-ready record of the split for the manifest."""
        return {
            "method": self.method,
            **self.params,
            "train": [s.engine_id for s in self.train],
            "val": [s.engine_id for s in self.val],
            "test": [s.engine_id for s in self.test],
        }


def split_dataset(
    ds: Dataset,
    method: str = "engine",
    *,
    val: Sequence[str] = (),
    test: Sequence[str] = (),
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    context: int = 128,
    require_train: bool = True,
) -> Split:
    """Split ``ds``. ``val``/``test`` name engines (method engine) or files (method file);
    when both are empty, ``val_fraction``/``test_fraction`` of them are drawn with ``seed``.
    For method time the fractions are of each engine's length and ``context`` readings before
    each cut are carried, unscored. ``require_train=False`` allows an empty training part
    (evaluation of unseen data).
    """
    if method == "time":
        return _by_time(ds, val_fraction, test_fraction, context)
    if method not in METHODS:
        raise ValueError(f"unknown split method {method!r}; known: {METHODS}")

    def key(s: Series) -> str:
        return s.engine_id if method == "engine" else s.source

    groups = sorted({key(s) for s in ds.series})
    unknown = sorted(set(val) - set(groups)) + sorted(set(test) - set(groups))
    if unknown:
        raise DataError(ds.name, f"split names unknown {method}(s) {unknown}")
    if set(val) & set(test):
        raise DataError(ds.name, f"{sorted(set(val) & set(test))} in both val and test")
    val_set, test_set = set(val), set(test)
    params: dict[str, Any] = {}
    if not val_set and not test_set:
        rng = np.random.default_rng(seed)
        order = [groups[i] for i in rng.permutation(len(groups))]
        n_val = max(1, round(val_fraction * len(groups)))
        n_test = max(1, round(test_fraction * len(groups)))
        if n_val + n_test >= len(groups):
            raise DataError(ds.name, f"too few {method}s ({len(groups)}) to split")
        val_set, test_set = set(order[:n_val]), set(order[n_val : n_val + n_test])
        params = {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    parts: dict[str, list[Series]] = {"train": [], "val": [], "test": []}
    for s in ds.series:
        k = key(s)
        parts["val" if k in val_set else "test" if k in test_set else "train"].append(s)
    if require_train and not parts["train"]:
        raise DataError(ds.name, "the split leaves nothing to train on")
    # Named parts keep the order they were named in (the first test engine is the one the
    # model card plots).
    for part, names in (("val", list(val)), ("test", list(test))):
        rank = {name: k for k, name in enumerate(names)}
        parts[part].sort(key=lambda s: rank.get(key(s), len(rank)))
    return Split(method, tuple(parts["train"]), tuple(parts["val"]), tuple(parts["test"]), params)


def _by_time(ds: Dataset, val_fraction: float, test_fraction: float, context: int) -> Split:
    if min(val_fraction, test_fraction) <= 0 or val_fraction + test_fraction >= 1:
        raise ValueError("time split fractions must be positive and sum to less than 1")
    train, val, test = [], [], []
    for s in ds.series:
        n = len(s)
        a = round(n * (1 - val_fraction - test_fraction))
        b = round(n * (1 - test_fraction))
        if a < 2 or b - a < 2 or n - b < 2:
            continue  # too short to cut three ways
        train.append(Series(s.engine_id, s.source, s.channels, s.values[:a]))
        va = max(0, a - context)
        val.append(Series(s.engine_id, s.source, s.channels, s.values[va:b], a - va))
        tb = max(0, b - context)
        test.append(Series(s.engine_id, s.source, s.channels, s.values[tb:], b - tb))
    if not train:
        raise DataError(ds.name, "every engine is too short for a time split")
    params = {"val_fraction": val_fraction, "test_fraction": test_fraction, "context": context}
    return Split("time", tuple(train), tuple(val), tuple(test), params)
