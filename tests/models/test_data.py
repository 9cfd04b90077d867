"""Loaders for IMS, C-MAPSS, NAB-style and generic CSV data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.data import (
    CMAPSS_INFORMATIVE,
    DataError,
    detect_format,
    load,
    load_cmapss,
    load_csv,
    load_ims,
    load_nab,
)

REPO = Path(__file__).resolve().parents[2]
IMS = REPO / "models" / "data" / "ims"
SHARED_CMAPSS = REPO.parent / "shared" / "data" / "cmapss" / "train_FD001.txt"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_ims_every_bearing_channel_is_an_engine() -> None:
    ds = load_ims(IMS)
    assert ds.kind == "ims" and ds.channels == ("vibration",)
    ids = [s.engine_id for s in ds.series]
    assert len(ids) == 12 == len(set(ids))
    assert "ims2-bearing-1" in ids and "ims1-bearing-3-c2" in ids
    test2 = [s for s in ds.series if s.engine_id.startswith("ims2")]
    # The last two rows of test 2 (rig stopped, ~0.001 g) are dropped, nothing else.
    assert {len(s) for s in test2} == {982}
    assert min(float(s.values.min()) for s in test2) > 0.04
    assert len(ds.sha256) == 64


def test_ims_detected_and_hash_stable() -> None:
    assert detect_format(IMS) == "ims"
    assert load(str(IMS)).sha256 == load(f"ims:{IMS}").sha256


def test_cmapss_units_become_engines(tmp_path: Path) -> None:
    rows = []
    for unit, cycles in ((1, 3), (2, 2)):
        for c in range(1, cycles + 1):
            sensors = " ".join(f"{100 * unit + s + c / 10:.2f}" for s in range(1, 22))
            rows.append(f"{unit} {c} 0.0 0.0 100.0 {sensors}")
    # Rows out of cycle order within a unit are sorted by cycle.
    rows[0], rows[1] = rows[1], rows[0]
    path = write(tmp_path / "train_FD009.txt", "\n".join(rows) + "\n")
    ds = load_cmapss(path, ("s2", "s7"))
    assert [s.engine_id for s in ds.series] == ["fd009-001", "fd009-002"]
    np.testing.assert_allclose(ds.series[0].values[:, 0], [102.1, 102.2, 102.3])
    assert ds.series[1].channels == ("s2", "s7")
    with pytest.raises(DataError, match="unknown C-MAPSS channel"):
        load_cmapss(path, ("s99",))


@pytest.mark.skipif(not SHARED_CMAPSS.exists(), reason="shared C-MAPSS data not present")
def test_cmapss_fd001() -> None:
    ds = load(f"cmapss:{SHARED_CMAPSS}")
    assert len(ds.series) == 100
    assert ds.channels == CMAPSS_INFORMATIVE
    assert sum(len(s) for s in ds.series) == 20631


def test_nab_files_are_engines(tmp_path: Path) -> None:
    write(
        tmp_path / "a" / "x.csv",
        "timestamp,value\n2024-01-01 00:00:00,1.5\n2024-01-01 00:05:00,2\n",
    )
    write(tmp_path / "b" / "y.csv", "timestamp,value\n2024-01-01 00:00:00,3\n")
    assert detect_format(tmp_path) == "nab"
    ds = load_nab(tmp_path)
    assert [s.engine_id for s in ds.series] == ["a-x", "b-y"]
    np.testing.assert_array_equal(ds.series[0].values[:, 0], [1.5, 2.0])


def test_csv_one_file_per_engine(tmp_path: Path) -> None:
    write(tmp_path / "pump-1.csv", "time,rms,temp\n2,0.2,30\n1,0.1,31\n")
    write(tmp_path / "pump-2.csv", "time,rms,temp\n1,0.3,29\n")
    assert detect_format(tmp_path) == "csv"
    ds = load_csv(tmp_path)
    assert [s.engine_id for s in ds.series] == ["pump-1", "pump-2"]
    assert ds.channels == ("rms", "temp")
    np.testing.assert_array_equal(ds.series[0].values, [[0.1, 31], [0.2, 30]])  # time order
    only = load(f"csv:{tmp_path}", channels=["temp"])
    assert only.channels == ("temp",)


def test_csv_engine_column(tmp_path: Path) -> None:
    path = write(
        tmp_path / "fleet.csv",
        "engine,ts,rms\nA,2024-01-01T00:10:00Z,2\nB,2024-01-01T00:00:00Z,5\n"
        "A,2024-01-01T00:00:00Z,1\n",
    )
    ds = load_csv(path, engine_column="engine", time_column="ts")
    assert {s.engine_id: s.values[:, 0].tolist() for s in ds.series} == {
        "a": [1.0, 2.0],
        "b": [5.0],
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,rms\n1,abc\n", "non-numeric"),
        ("time,rms\n1,nan\n", "NaN"),
        ("time,rms\n", "at least one row"),
    ],
)
def test_bad_csv_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError, match=message) as info:
        load_csv(path)
    assert info.value.path == str(path)


def test_missing_channel_and_path(tmp_path: Path) -> None:
    write(tmp_path / "e.csv", "time,rms\n1,0.1\n")
    with pytest.raises(DataError, match="no channel"):
        load(f"csv:{tmp_path}", channels=["vibration"])
    with pytest.raises(DataError, match="no such file"):
        load(f"csv:{tmp_path / 'nope'}")


def test_ims_multi_is_one_engine_per_test_with_every_bearing_channel() -> None:
    ds = load(f"ims-multi:{IMS / 'ims_test1_snapshot_meanabs.csv'}")
    (series,) = ds.series
    assert series.engine_id == "ims1" and len(series) == 2156
    assert ds.channels == tuple(f"Bearing {b} C{c}" for b in range(1, 5) for c in (1, 2))
    assert ds.channel_units == ("g",) * 8
    by_bearing = load_ims(IMS)
    one = next(s for s in by_bearing.series if s.engine_id == "ims1-bearing-3-c2")
    np.testing.assert_array_equal(series.values[:, 5], one.values[:, 0])
    with pytest.raises(DataError, match="name a single file"):
        load(f"ims-multi:{IMS}")  # test 1 has 8 channels, test 2 has 4


SKAB_HEADER = (
    "timestamp,Accelerometer1RMS,Accelerometer2RMS,Current,Pressure,Temperature,"
    "Thermocouple,Voltage,Volume Flow RateRMS"
)


def test_skab_files_drop_the_labels_and_know_the_units(tmp_path: Path) -> None:
    rows = [f"2020-03-09 10:14:{i:02d},0.02,0.04,1.3,0.05,79.3,26.0,233.0,32.0" for i in range(5)]
    write(tmp_path / "free.csv", SKAB_HEADER + "\n" + "\n".join(rows) + "\n")
    labelled = [r + ",0.0,0.0" for r in rows]
    write(tmp_path / "valve1_0.csv", SKAB_HEADER + ",anomaly,changepoint\n" + "\n".join(labelled))
    semi = [r.replace(",", ";") for r in labelled]
    header = (SKAB_HEADER + ",anomaly,changepoint").replace(",", ";")
    write(tmp_path / "valve1_1.csv", header + "\n" + "\n".join(semi) + "\n")
    assert detect_format(tmp_path) == "skab"
    ds = load(str(tmp_path))
    assert [s.engine_id for s in ds.series] == ["skab-free", "skab-valve1-0", "skab-valve1-1"]
    assert len(ds.channels) == 8 and "anomaly" not in ds.channels
    assert ds.channel_units == ("g", "g", "A", "bar", "°C", "°C", "V", "L/min")
    for s in ds.series:
        assert s.values.shape == (5, 8) and s.values[0, 7] == 32.0


def test_csv_units_from_the_command_line(tmp_path: Path) -> None:
    write(tmp_path / "e.csv", "t,rms,temp\n0,1.0,20\n1,1.1,21\n")
    ds = load(f"csv:{tmp_path}", units={"rms": "g"})
    assert ds.channel_units == ("g", "")
    with pytest.raises(DataError, match="unknown channel"):
        load(f"csv:{tmp_path}", units={"speed": "rpm"})


def test_a_glob_pattern_selects_files(tmp_path: Path) -> None:
    for name in ("valve1_0", "valve1_1", "other_1", "anomaly-free"):
        write(tmp_path / f"{name}.csv", "t,rms\n0,1.0\n1,1.1\n")
    ds = load(f"csv:{tmp_path}/[vo]*.csv")
    assert [s.engine_id for s in ds.series] == ["other-1", "valve1-0", "valve1-1"]
    with pytest.raises(DataError, match="no such file"):
        load(f"csv:{tmp_path}/nothing*.csv")


def test_series_carry_their_event_times(tmp_path: Path) -> None:
    """The scoring's settings are time spans: every loader with a clock passes it on."""
    ims = load_ims(IMS)
    s = next(x for x in ims.series if x.engine_id == "ims2-bearing-1")
    assert s.ts_ms is not None and s.ts_ms.shape == (len(s),)
    assert set(np.diff(s.ts_ms)) == {600_000}  # test 2: a snapshot every 10 minutes
    nab_dir = tmp_path / "nab"
    write(nab_dir / "cat" / "a.csv",
          "timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,2\n")
    (series,) = load_nab(nab_dir).series
    assert series.ts_ms is not None
    assert series.source == "cat/a.csv"  # the key of NAB's label files
    assert list(series.ts_ms) == [1396310400000, 1396310700000]
    rows = [f"{u} {c} 0 0 100 " + " ".join(["1.0"] * 21) for u in (1, 2) for c in (1, 2, 3)]
    test = write(tmp_path / "test_FD009.txt", "\n".join(rows) + "\n")
    ds = load_cmapss(test)
    assert ds.series[0].ts_ms is not None
    assert [x.engine_id for x in ds.series] == ["test-fd009-001", "test-fd009-002"]
    assert list(ds.series[0].ts_ms) == [3_600_000, 7_200_000, 10_800_000]  # a cycle an hour
