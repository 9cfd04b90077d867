"""Engine classes: how an engine's class is decided, and what a restore does with a
changelog row another model wrote (service.classes)."""

from __future__ import annotations

import numpy as np
import pytest

from service.classes import (
    ClassResolver,
    ClassStores,
    Placement,
    layout_fingerprint,
    model_fingerprint,
    place_record,
)
from service.errors import InvalidMessageError
from service.state import EngineStore, row_identity
from service.testing import FakeStepModel

BEARING = FakeStepModel(("vibration",), version="bearing-1")
PUMP = FakeStepModel(tuple(f"p{i}" for i in range(8)), version="pump-1")


def _resolver() -> ClassResolver:
    return ClassResolver("default", ["pump", "fan"], [("pump", "pump-.*"), ("fan", "f[0-9]+")])


def test_class_from_current_then_message_then_pattern_then_default() -> None:
    r = _resolver()
    assert r.resolve("pump-7", None, None) == "pump"
    assert r.resolve("f12", None, None) == "fan"
    assert r.resolve("xpump-7", None, None) == "default"  # the whole id must match
    assert r.resolve("engine-1", "pump", None) == "pump"  # the message's class wins
    assert r.resolve("pump-7", "default", None) == "default"
    assert r.resolve("pump-7", None, "fan") == "fan"  # the class it has here wins
    assert r.resolve("pump-7", "fan", "fan") == "fan"


@pytest.mark.parametrize(
    ("declared", "current", "reason"),
    [("valve", None, "unknown_class"), ("pump", "fan", "class_mismatch")],
)
def test_an_engine_never_changes_class_silently(declared: str, current: str | None,
                                                reason: str) -> None:
    with pytest.raises(InvalidMessageError) as info:
        _resolver().resolve("engine-1", declared, current)
    assert info.value.reason == reason
    assert declared in info.value.detail


@pytest.mark.parametrize("raw", [3, "", "Pump", "p" * 33, "pump!", ["pump"], True])
def test_a_malformed_class_field_is_a_bad_class(raw: object) -> None:
    with pytest.raises(InvalidMessageError) as info:
        _resolver().declared(raw)
    assert info.value.reason == "bad_class"


def test_fingerprints_tell_models_and_layouts_apart() -> None:
    other_version = FakeStepModel(("vibration",), version="bearing-2")
    other_channel = FakeStepModel(("rms",), version="bearing-1")
    assert model_fingerprint(BEARING) != model_fingerprint(other_version)
    assert layout_fingerprint(BEARING) == layout_fingerprint(other_version)
    assert layout_fingerprint(BEARING) != layout_fingerprint(other_channel)
    assert model_fingerprint(BEARING) == model_fingerprint(FakeStepModel(("vibration",),
                                                                         version="bearing-1"))


def _store(name: str, model: FakeStepModel, window: int = 4) -> EngineStore:
    return EngineStore(window=window, channels=len(model.channels),
                       model_state_size=model.state_size, score_state_size=3,
                       class_name=name, fingerprint=model_fingerprint(model),
                       layout=layout_fingerprint(model))


def _stores(bearing: FakeStepModel = BEARING, pump: FakeStepModel = PUMP) -> ClassStores:
    return ClassStores([_store("default", bearing), _store("pump", pump)],
                       [np.zeros(3), np.zeros(3)])


def _row(store: EngineStore, engine_id: str, readings: int = 3) -> bytes:
    slots, _ = store.slots_for([engine_id], [2], np.zeros(3))
    for t in range(readings):
        store.push(slots, np.full((1, store.channels), float(t)), np.array([1000 * (t + 1)]))
    store.model_state[slots] = 0.5
    return store.encode_row(int(slots[0]))


def test_a_row_goes_to_the_store_of_the_class_it_names() -> None:
    src = _stores()
    row = _row(src.by_name["pump"], "pump-1")
    assert row_identity(row).class_name == "pump"
    dst = _stores()
    placed = place_record(dst, "pump-1", row, 2)
    assert placed.placement is Placement.RESTORED and placed.store is dst.by_name["pump"]
    assert "pump-1" not in dst.default.index
    assert dst.by_name["pump"].encode_row(placed.slot) == row


def test_a_row_of_another_version_with_the_same_layout_is_restored_for_a_rewarm() -> None:
    row = _row(_stores().default, "b-1")
    dst = _stores(bearing=FakeStepModel(("vibration",), version="bearing-2"))
    placed = place_record(dst, "b-1", row, 2)
    assert placed.placement is Placement.REWARM
    assert int(dst.default.count[placed.slot]) == 3  # window and scoring kept


def test_a_row_of_another_layout_is_recommissioned_in_its_class() -> None:
    row = _row(_stores().by_name["pump"], "pump-1")
    wider = FakeStepModel(tuple(f"q{i}" for i in range(8)), version="pump-9")  # other channels
    dst = _stores(pump=wider)
    placed = place_record(dst, "pump-1", row, 2)
    assert placed.placement is Placement.RECOMMISSIONED
    store = dst.by_name["pump"]
    assert store.index["pump-1"] == placed.slot  # still a pump: its class is kept
    assert int(store.count[placed.slot]) == 0 and not store.model_state[placed.slot].any()
    assert int(store.partition[placed.slot]) == 2
    # the fleet view shows nothing rather than a stranger's row
    view = _stores(pump=wider)
    assert place_record(view, "pump-1", row, 2, recommission=False).placement is \
        Placement.FORGOTTEN
    assert view.find("pump-1") is None


def test_a_row_of_a_class_with_no_model_here_is_forgotten() -> None:
    row = _row(_stores().by_name["pump"], "pump-1")
    dst = ClassStores([_store("default", BEARING)], [np.zeros(3)])
    placed = place_record(dst, "pump-1", row, 2)
    assert placed.placement is Placement.FORGOTTEN and "pump" in placed.why
    assert dst.find("pump-1") is None


def test_a_row_of_the_previous_format_belongs_to_the_default_class() -> None:
    src = _stores()
    v4 = _row(src.default, "b-1")
    v3 = b"VWS3" + v4[4:12] + v4[len(src.default.row_header()):]
    dst = _stores()
    placed = place_record(dst, "b-1", v3, 2)
    assert placed.placement is Placement.RESTORED and placed.store is dst.default
    assert dst.default.encode_row(placed.slot) == v4


def test_a_row_moves_an_engine_out_of_the_class_it_had() -> None:
    dst = _stores()
    dst.default.slots_for(["e"], [0], np.zeros(3))
    place_record(dst, "e", _row(_stores().by_name["pump"], "e"), 0)
    assert dst.class_of("e") == "pump" and "e" not in dst.default.index
