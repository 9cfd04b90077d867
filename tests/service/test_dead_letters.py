"""Bad input on the real broker: every kind lands in the dead-letter topic with its reason,
counters are exact, and the valid readings' results equal those of a clean stream."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from service.kafka.outputs import REASON_HEADER, SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER
from service.simulator import Fleet, messages
from tests.service.ingest.test_decode import BAD
from tests.support import ServiceProcess, latest_by_key, read_all, topic_env, wait_for

pytestmark = pytest.mark.integration

ENGINES = 6
TICKS = 60
T0 = 1_795_608_000_000


def _corpus() -> list[tuple[bytes | None, bytes | None, str]]:
    """At least 20 kinds of bad message; limits match the service settings below."""
    out = [(v, k, r) for v, k, r in BAD if r not in ("oversize", "too_many_fields")]
    out.append((b'{"engine_id":"e","ts":1795608000000,"values":{"vibration":1},"pad":"'
                + b"x" * 5000 + b'"}', None, "oversize"))
    extra = ",".join(f'"f{i}":1' for i in range(20))
    out.append((('{"engine_id":"e","ts":1795608000000,"values":{"vibration":1},' + extra + "}")
                .encode(), None, "too_many_fields"))
    # the shared corpus is written for the channel "rms"; this service reads "vibration";
    # Kafka needs a key or a value, so the null-value message gets a key
    return [(v.replace(b'"rms"', b'"vibration"') if v else v, k if v else b"null-value", r)
            for v, k, r in out]


def _produce(bootstrap: str, topic: str, with_bad: bool) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    bad = _corpus() if with_bad else []
    good = list(messages(Fleet(ENGINES, seed=3), TICKS, start_ms=T0, interval_ms=1000))
    # one bad message after every few good ones, so they share polls and transactions
    step = max(1, len(good) // max(1, len(bad)))
    for i, (key, value) in enumerate(good):
        producer.send(topic, key=key.encode(), value=value)
        if i % step == 0 and bad:
            v, k, _ = bad.pop()
            producer.send(topic, key=k, value=v)
    for v, k, _ in bad:
        producer.send(topic, key=k, value=v)
    # a duplicate and a late reading of a valid engine: counted and skipped, not dead letters
    dup = b'{"engine_id":"engine-0001","ts":%d,"values":{"vibration":0.1}}' % (T0 + 5000)
    producer.send(topic, key=b"engine-0001", value=dup)
    producer.flush()
    producer.close()
    return len(good)


def _run(bootstrap: str, tmp: Path, name: str, with_bad: bool) -> tuple[ServiceProcess, str]:
    readings = f"dl-{name}.readings"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(readings, 3, 1)])
    admin.close()
    env = topic_env(bootstrap, f"dl-{name}", VIBEWATCH_KAFKA__READINGS_TOPIC=readings,
                    VIBEWATCH_KAFKA__MAX_MESSAGE_BYTES="4096",
                    VIBEWATCH_KAFKA__MAX_BATCH_READINGS="3")
    _produce(bootstrap, readings, with_bad)
    service = ServiceProcess(env, tmp / f"{name}.log", name).start()
    service.wait_ready()

    def done() -> bool:
        status, page = service.get("/engines?limit=100")
        return status == 200 and page["total"] == ENGINES and all(
            e["readings"] == TICKS for e in page["engines"])
    wait_for(done, 60, "all valid readings processed")
    return service, f"dl-{name}"


def test_bad_input_goes_to_dead_letters_with_reasons(kafka_bootstrap: str,
                                                     tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    corpus = _corpus()
    assert len({r for _, _, r in corpus}) >= 14 and len(corpus) >= 20
    dirty, prefix = _run(kafka_bootstrap, tmp_path, f"bad-{run}", with_bad=True)
    try:
        dead = wait_for(
            lambda: (lambda rs: rs if len(rs) >= len(corpus) else None)(
                read_all(kafka_bootstrap, f"{prefix}.dead-letter")),
            30, "all dead letters")
        assert len(dead) == len(corpus)
        got = Counter(dict(r.headers)[REASON_HEADER].decode() for r in dead)
        assert got == Counter(r for _, _, r in corpus)
        sent = {(v or b"") for v, _, _ in corpus}
        assert {r.value for r in dead} == sent  # original bytes, unchanged
        for r in dead:
            h = dict(r.headers)
            assert int(h[SOURCE_PARTITION_HEADER]) in (0, 1, 2)
            assert int(h[SOURCE_OFFSET_HEADER]) >= 0

        # counters count committed work: the acknowledgement of the commit that carried
        # the dead letters reaches the loop a moment after they are visible
        def counted() -> str | None:
            _, text = dirty.get("/metrics")
            m = re.search(r'^vibewatch_readings_total\{outcome="invalid"\} (\S+)$', text, re.M)
            return text if m is not None and float(m.group(1)) == len(corpus) else None

        metrics = wait_for(counted, 10, "dead letters counted")
        for reason, n in got.items():
            m = re.search(rf'^vibewatch_dead_letters_total\{{reason="{reason}"\}} (\S+)$',
                          metrics, re.M)
            assert m is not None and float(m.group(1)) == n, reason
        invalid = re.search(r'^vibewatch_readings_total\{outcome="invalid"\} (\S+)$', metrics,
                            re.M)
        assert invalid is not None and float(invalid.group(1)) == len(corpus)
        dup = re.search(r'^vibewatch_readings_total\{outcome="(duplicate|late)"\} 1\.0$',
                        metrics, re.M)
        assert dup is not None
    finally:
        assert dirty.stop() == 0, dirty.log_tail()

    clean, clean_prefix = _run(kafka_bootstrap, tmp_path, f"clean-{run}", with_bad=False)
    assert clean.stop() == 0, clean.log_tail()
    want = latest_by_key(read_all(kafka_bootstrap, f"{clean_prefix}.changelog"))
    got_state = latest_by_key(read_all(kafka_bootstrap, f"{prefix}.changelog"))
    assert set(got_state) == set(want) and len(want) == ENGINES
    # last_seen (wall clock) sits at a fixed offset in the record; compare everything else
    from tests.service.test_exactly_once import _store

    store = _store()
    for key in want:
        a, b = store.decode_row(want[key]), store.decode_row(got_state[key])
        a.pop("last_seen")
        b.pop("last_seen")
        assert all(a[f].tobytes() == b[f].tobytes() for f in a), key
