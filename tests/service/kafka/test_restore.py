"""Applying changelog records to the stores of every class (service.kafka.restore)."""

from __future__ import annotations

import numpy as np

from service.classes import ClassStores, layout_fingerprint, model_fingerprint
from service.kafka.restore import Applied, apply_records
from service.state import EngineStore
from service.testing import FakeStepModel

BEARING = FakeStepModel(("vibration",), version="b-1")
PUMP = FakeStepModel(tuple(f"p{i}" for i in range(8)), version="p-1")


def _stores(bearing: FakeStepModel = BEARING, pump: FakeStepModel = PUMP) -> ClassStores:
    def store(name: str, m: FakeStepModel) -> EngineStore:
        return EngineStore(window=4, channels=len(m.channels), model_state_size=m.state_size,
                           score_state_size=2, class_name=name, fingerprint=model_fingerprint(m),
                           layout=layout_fingerprint(m))

    return ClassStores([store("default", bearing), store("pump", pump)],
                       [np.zeros(2), np.zeros(2)])


def _rows(stores: ClassStores, name: str, ids: list[str]) -> dict[str, bytes]:
    store = stores.by_name[name]
    slots, _ = store.slots_for(ids, [0] * len(ids), np.zeros(2))
    store.push(slots, np.ones((len(ids), store.channels)), np.full(len(ids), 1000))
    return dict(zip(ids, store.encode_rows(slots), strict=True))


def test_a_mixed_changelog_restores_into_each_class() -> None:
    src = _stores()
    bearings = _rows(src, "default", ["b-0", "b-1"])
    pumps = _rows(src, "pump", ["p-0", "p-1", "p-2"])
    legacy = {"b-9": b"VWS3" + bearings["b-0"][4:12] +
              bearings["b-0"][len(src.default.row_header()):]}
    latest: dict[str, tuple[int, bytes | None]] = {
        e: (0, v) for e, v in {**bearings, **pumps, **legacy}.items()}
    latest["gone"] = (0, None)
    # the pump class now runs another version of its model, the same layout
    dst = _stores(pump=FakeStepModel(PUMP.channels, version="p-2"))
    dst.default.slots_for(["gone"], [0], np.zeros(2))
    applied = Applied()
    apply_records(dst, latest, applied)
    assert sorted(dst.default.index) == ["b-0", "b-1", "b-9"]
    assert sorted(dst.by_name["pump"].index) == ["p-0", "p-1", "p-2"]
    assert sorted(applied.rewarm["pump"]) == sorted(dst.by_name["pump"].index.values())
    assert "default" not in applied.rewarm and not applied.recommissioned
    assert applied.skipped == 0
    for e, v in bearings.items():
        assert dst.default.encode_row(dst.default.index[e]) == v
    assert dst.default.encode_row(dst.default.index["b-9"]) == bearings["b-0"]


def test_rows_of_another_layout_are_counted_as_recommissioned() -> None:
    src = _stores()
    latest: dict[str, tuple[int, bytes | None]] = {
        e: (3, v) for e, v in _rows(src, "pump", ["p-0", "p-1"]).items()}
    dst = _stores(pump=FakeStepModel(tuple(f"q{i}" for i in range(8)), version="q-1"))
    applied = Applied()
    apply_records(dst, latest, applied)
    assert applied.recommissioned == {"pump": 2} and not applied.rewarm
    store = dst.by_name["pump"]
    assert all(int(store.count[s]) == 0 and int(store.partition[s]) == 3
               for s in store.index.values())
