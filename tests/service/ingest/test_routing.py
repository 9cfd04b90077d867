"""The class router: one parse, the class's channels checked (service.ingest.routing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.classes import ClassResolver, ClassStores
from service.errors import InvalidMessageError
from service.ingest import MessageDecoder
from service.ingest.routing import ClassRouter
from service.state import EngineStore

PUMP_CHANNELS = tuple(f"p{i}" for i in range(8))


def _router() -> tuple[ClassRouter, ClassStores]:
    stores = ClassStores(
        [EngineStore(window=4, channels=c, model_state_size=1, score_state_size=1,
                     class_name=n) for n, c in (("default", 1), ("pump", 8))],
        [np.zeros(1), np.zeros(1)],
    )
    router = ClassRouter(
        {"default": MessageDecoder(("vibration",)), "pump": MessageDecoder(PUMP_CHANNELS)},
        ClassResolver("default", ["pump"], [("pump", "pump-.*")]), stores,
    )
    return router, stores


def _msg(engine_id: str, values: dict[str, float], **extra: object) -> bytes:
    return json.dumps({"engine_id": engine_id, "ts": 1_795_608_000_000, "values": values,
                       **extra}).encode()


def test_each_message_goes_to_its_class_with_its_channels() -> None:
    router, _ = _router()
    cols = router.columns()
    pump = dict.fromkeys(PUMP_CHANNELS, 1.0)
    assert router.decode_into(cols, _msg("pump-1", pump), None, 0) == "pump"
    assert router.decode_into(cols, _msg("e-1", {"vibration": 0.1}), None, 1) == "default"
    assert router.decode_into(cols, _msg("e-2", pump, **{"class": "pump"}), None, 0) == "pump"
    assert cols["pump"].engine_ids == ["pump-1", "e-2"] and len(cols["pump"].values) == 8
    assert cols["default"].engine_ids == ["e-1"]


def test_a_class_is_kept_within_a_batch_and_across_batches() -> None:
    router, stores = _router()
    cols = router.columns()
    router.decode_into(cols, _msg("e-2", dict.fromkeys(PUMP_CHANNELS, 1.0), **{"class": "pump"}),
                       None, 0)
    # the same engine without a class field stays a pump (its id matches no pattern)
    with pytest.raises(InvalidMessageError) as info:
        router.decode_into(cols, _msg("e-2", {"vibration": 1.0}), None, 0)
    assert info.value.reason == "missing_channel"  # checked against the pump's channels
    with pytest.raises(InvalidMessageError) as info:
        router.decode_into(cols, _msg("e-2", {"vibration": 1.0}, **{"class": "default"}),
                           None, 0)
    assert info.value.reason == "class_mismatch"
    stores.by_name["pump"].slots_for(["e-3"], [0], np.zeros(1))  # tracked from before
    router.begin_batch()
    with pytest.raises(InvalidMessageError) as info:
        router.decode_into(router.columns(), _msg("e-3", {"vibration": 1.0},
                                                  **{"class": "default"}), None, 0)
    assert info.value.reason == "class_mismatch"


@pytest.mark.parametrize(("klass", "reason"), [("valve", "unknown_class"), (7, "bad_class")])
def test_a_class_with_no_model_is_refused_with_its_reason(klass: object, reason: str) -> None:
    router, _ = _router()
    cols = router.columns()
    with pytest.raises(InvalidMessageError) as info:
        router.decode_into(cols, _msg("e-1", {"vibration": 1.0}, **{"class": klass}), None, 0)
    assert info.value.reason == reason
    assert not any(len(c) for c in cols.values())
