"""Splits never put an evaluation target into training."""

from __future__ import annotations

import numpy as np
import pytest

from models.data import DataError, Dataset, Series
from models.splits import split_dataset


def dataset(n_engines: int = 10, length: int = 100) -> Dataset:
    series = tuple(
        Series(
            f"e{k}",
            f"file{k % 3}.csv",
            ("v",),
            (1000 * k + np.arange(length, dtype=np.float64))[:, None],
        )
        for k in range(n_engines)
    )
    return Dataset("toy", "csv", series, ())


def test_named_engine_split() -> None:
    split = split_dataset(dataset(), "engine", val=["e1"], test=["e2", "e3"])
    assert [s.engine_id for s in split.val] == ["e1"]
    assert [s.engine_id for s in split.test] == ["e2", "e3"]
    assert len(split.train) == 7
    assert split.describe()["test"] == ["e2", "e3"]


def test_seeded_engine_split_is_disjoint_and_reproducible() -> None:
    a = split_dataset(dataset(20), "engine", seed=3).describe()
    b = split_dataset(dataset(20), "engine", seed=3).describe()
    c = split_dataset(dataset(20), "engine", seed=4).describe()
    assert a == b and a != c
    parts = [set(a["train"]), set(a["val"]), set(a["test"])]
    assert sum(len(p) for p in parts) == 20 == len(set.union(*parts))
    assert len(a["val"]) == len(a["test"]) == 3


def test_file_split_keeps_files_whole() -> None:
    split = split_dataset(dataset(), "file", val=["file1.csv"], test=["file2.csv"])
    assert {s.source for s in split.val} == {"file1.csv"}
    assert {s.source for s in split.test} == {"file2.csv"}
    assert {s.source for s in split.train} == {"file0.csv"}


def test_time_split_scores_only_after_the_training_cut() -> None:
    split = split_dataset(dataset(2, 200), "time", val_fraction=0.2, test_fraction=0.1, context=30)
    for tr, va, te in zip(split.train, split.val, split.test, strict=True):
        train_max = tr.values.max()
        # Scored targets of val and test all lie after every training reading...
        assert va.values[va.score_from :].min() > train_max
        assert te.values[te.score_from :].min() > va.values.max() - 30
        assert te.values[te.score_from :].min() > va.values[va.score_from :].max()
        # ...and the context before them is the immediately preceding past.
        assert va.score_from == 30 and va.values[va.score_from - 1, 0] == train_max
        assert len(tr) == 140 and len(va) - va.score_from == 40 and len(te) - te.score_from == 20


@pytest.mark.parametrize(
    ("val", "test", "message"),
    [
        (["e99"], [], "unknown"),
        (["e1"], ["e1"], "both"),
        ([f"e{k}" for k in range(10)], [], "nothing to train"),
    ],
)
def test_bad_engine_splits(val: list[str], test: list[str], message: str) -> None:
    with pytest.raises(DataError, match=message):
        split_dataset(dataset(), "engine", val=val, test=test)
