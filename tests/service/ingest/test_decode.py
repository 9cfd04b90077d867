"""The message contract: valid forms decode, every invalid kind has its own reason."""

from __future__ import annotations

import json

import pytest

from service.errors import InvalidMessageError
from service.ingest import DECODER_REASONS, REASONS, MessageDecoder
from service.ingest.columns import ReadingColumns

DEC = MessageDecoder(("rms",), max_bytes=4096, max_batch=3, max_extra_fields=2)


def test_single_reading_rfc3339() -> None:
    msg = b'{"engine_id": "engine-042", "ts": "2026-11-25T12:00:00.000Z", "values": {"rms": 0.061}}'
    [r] = DEC.decode(msg, b"engine-042")
    assert r.engine_id == "engine-042"
    assert r.ts_ms == 1_795_608_000_000
    assert r.values == {"rms": 0.061}


def test_epoch_ms_and_offset_timestamps_agree() -> None:
    a = DEC.decode(b'{"engine_id":"e","ts":1795608000000,"values":{"rms":1}}')[0]
    b = DEC.decode(b'{"engine_id":"e","ts":"2026-11-25T13:00:00+01:00","values":{"rms":1}}')[0]
    assert a.ts_ms == b.ts_ms == 1_795_608_000_000


def test_batch_form_keeps_order_and_ignores_extra_channels() -> None:
    doc = {"engine_id": "e:1", "readings": [
        {"ts": 1_795_608_000_000 + i, "values": {"rms": i, "temp": 3}} for i in range(3)
    ]}
    rs = DEC.decode(json.dumps(doc).encode())
    assert [r.ts_ms % 10 for r in rs] == [0, 1, 2]
    assert [r.values for r in rs] == [{"rms": 0.0}, {"rms": 1.0}, {"rms": 2.0}]


OK = '"engine_id":"e","ts":1795608000000'
BAD: list[tuple[bytes | None, bytes | None, str]] = [
    (b"x" * 5000, None, "oversize"),
    (b"", None, "empty"),
    (None, None, "empty"),
    (b"{not json", None, "not_json"),
    (b"\xff\xfe", None, "not_json"),
    (b"[1, 2]", None, "not_object"),
    (b'{"ts":1795608000000,"values":{"rms":1}}', None, "missing_field"),
    (b'{"engine_id":"e","values":{"rms":1}}', None, "missing_field"),
    (b'{"engine_id":"e","ts":1795608000000}', None, "missing_field"),
    (("{" + OK + ',"values":{"rms":1},"a":1,"b":2,"c":3}').encode(), None, "too_many_fields"),
    (b'{"engine_id":"bad id!","ts":1795608000000,"values":{"rms":1}}', None, "bad_engine_id"),
    (b'{"engine_id":"' + b"x" * 65 + b'","ts":1795608000000,"values":{"rms":1}}', None,
     "bad_engine_id"),
    (b'{"engine_id":7,"ts":1795608000000,"values":{"rms":1}}', None, "bad_engine_id"),
    # Unhashable ids (the decoder's cache of valid ids is a set).
    (b'{"engine_id":{"a":1},"ts":1795608000000,"values":{"rms":1}}', None, "bad_engine_id"),
    (b'{"engine_id":["e1"],"ts":1795608000000,"values":{"rms":1}}', None, "bad_engine_id"),
    (("{" + OK + ',"values":{"rms":1}}').encode(), b"other", "key_mismatch"),
    (b'{"engine_id":"e","ts":"yesterday","values":{"rms":1}}', None, "bad_timestamp"),
    (b'{"engine_id":"e","ts":"2026-11-25T12:00:00","values":{"rms":1}}', None, "bad_timestamp"),
    (b'{"engine_id":"e","ts":1795608000,"values":{"rms":1}}', None, "bad_timestamp"),
    (b'{"engine_id":"e","ts":true,"values":{"rms":1}}', None, "bad_timestamp"),
    (("{" + OK + ',"values":[1]}').encode(), None, "bad_values"),
    (("{" + OK + ',"values":{"rms":"1"}}').encode(), None, "bad_values"),
    (("{" + OK + ',"values":{"rms":true}}').encode(), None, "bad_values"),
    (("{" + OK + ',"values":{"rms":NaN}}').encode(), None, "non_finite"),
    (("{" + OK + ',"values":{"rms":Infinity}}').encode(), None, "non_finite"),
    (("{" + OK + ',"values":{"rms":1e999}}').encode(), None, "non_finite"),
    # An integer beyond float range (float() would raise OverflowError).
    (("{" + OK + ',"values":{"rms":1' + "0" * 400 + "}}").encode(), None, "non_finite"),
    (("{" + OK + ',"values":{"vib":1}}').encode(), None, "missing_channel"),
    (b'{"engine_id":"e","readings":[]}', None, "empty_batch"),
    (b'{"engine_id":"e","readings":[' + b",".join(
        [b'{"ts":1795608000000,"values":{"rms":1}}'] * 4) + b"]}", None, "batch_too_large"),
    (b'{"engine_id":"e","readings":{"ts":1}}', None, "bad_reading"),
    (b'{"engine_id":"e","readings":[5]}', None, "bad_reading"),
    (b'{"engine_id":"e","readings":[{"ts":1795608000000,"values":{"rms":1}}],"ts":1}', None,
     "bad_reading"),
    (b'{"engine_id":"e","readings":[{"ts":1795608000000,"values":{"rms":1}},'
     b'{"ts":1795608000001,"values":{"rms":NaN}}]}', None, "non_finite"),
]


@pytest.mark.parametrize(("value", "key", "reason"), BAD)
def test_invalid_message_has_its_reason(value: bytes | None, key: bytes | None,
                                        reason: str) -> None:
    with pytest.raises(InvalidMessageError) as info:
        DEC.decode(value, key)
    assert info.value.reason == reason
    assert reason in REASONS


def test_every_reason_is_exercised() -> None:
    assert {r for _, _, r in BAD} == set(DECODER_REASONS)


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_deep_nesting_is_not_json_not_a_crash(depth: int) -> None:
    # orjson refuses it, and the standard library's parser would hit RecursionError
    dec = MessageDecoder(("rms",), max_bytes=1 << 20)
    for doc in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        with pytest.raises(InvalidMessageError) as info:
            dec.decode(doc)
        assert info.value.reason == "not_json"


def _batch(items: list[str]) -> bytes:
    return ('{"engine_id":"e","readings":[' + ",".join(items) + "]}").encode()


def test_common_and_unusual_shapes_decode_the_same() -> None:
    # float values and integer ms take the cheap checks; text ts and integer values the full
    fast = DEC.decode(_batch(['{"ts":1795608000000,"values":{"rms":1.0}}',
                              '{"ts":1795608000001,"values":{"rms":2.5,"temp":3.0}}']))
    full = DEC.decode(_batch(['{"ts":"2026-11-25T12:00:00Z","values":{"rms":1}}',
                              '{"ts":1795608000001.0,"values":{"rms":2.5,"x":1},"note":1}']))
    assert fast == full


def test_decode_into_appends_a_message_whole_or_not_at_all() -> None:
    cols = ReadingColumns(DEC.channels)
    assert DEC.decode_into(cols, _batch(['{"ts":1795608000000,"values":{"rms":1.5}}']), None, 4)
    bad = [
        _batch(['{"ts":1795608000001,"values":{"rms":1.5}}',
                '{"ts":1795608000002,"values":{"rms":NaN}}']),
        _batch(['{"ts":1795608000001,"values":{"rms":1.5}}', '{"ts":4102444800000,'
                '"values":{"rms":1.5}}']),
        b'{"engine_id":"e","ts":946684799999,"values":{"rms":1.5}}',
    ]
    for value, reason in zip(bad, ["non_finite", "bad_timestamp", "bad_timestamp"], strict=True):
        with pytest.raises(InvalidMessageError) as info:
            DEC.decode_into(cols, value, None, 4)
        assert info.value.reason == reason
    assert (cols.engine_ids, cols.partitions, cols.counts) == (["e"], [4], [1])
    assert (cols.ts, cols.values) == ([1_795_608_000_000], [[1.5]])
    assert cols.readings() == DEC.decode(_batch(['{"ts":1795608000000,"values":{"rms":1.5}}']))


def test_column_checks_fall_back_to_item_checks() -> None:
    big = DEC.decode(_batch(['{"ts":1795608000000,"values":{"rms":1e308}}',
                             '{"ts":1795608000001,"values":{"rms":1e308}}']))  # sum overflows
    assert [r.values["rms"] for r in big] == [1e308, 1e308]
    for item, reason in [('{"ts":true,"values":{"rms":1.5}}', "bad_timestamp"),
                         ('{"ts":1795608000001,"values":{"rms":-Infinity}}', "non_finite"),
                         ('{"ts":1795608000001,"values":{"temp":1.5}}', "missing_channel"),
                         ('{"ts":1795608000001}', "missing_field")]:
        with pytest.raises(InvalidMessageError) as info:
            DEC.decode(_batch(['{"ts":1795608000000,"values":{"rms":1.5}}', item]))
        assert info.value.reason == reason
