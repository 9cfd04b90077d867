"""The recorded data the evaluations stream, with event times: NAB corpora, run-to-failure
runs (IMS, any CSV, C-MAPSS) and labelled CSVs.

The files are read by ``models.data`` (one reader per data set); this module adds what the
evaluations need around them: labels, failing units, ends of life. Every stream carries
real event times, because the scoring's settings are time spans: NAB and IMS have
timestamps; C-MAPSS counts cycles, taken as one hour each (``models.data.CMAPSS_CYCLE_S``,
stated wherever C-MAPSS results are reported); labelled CSVs use their time column when it
parses, else one reading per second.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from models.data import (
    CMAPSS_CYCLE_S,
    CMAPSS_INFORMATIVE,
    DataError,
    load_cmapss,
    load_csv,
    load_ims_multi,
    parse_times,
    read_cmapss_rul,
    read_cmapss_table,
)
from service.evaluation.nab_data import DatasetError, NabFile, load_nab, read_columns

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: The IMS runs shipped in the project (models/data/ims), and the bearings that fail in each.
IMS_DIR = Path(__file__).resolve().parents[2] / "models" / "data" / "ims"
IMS_RUNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ims1": ("ims_test1_snapshot_meanabs.csv", ("Bearing 3", "Bearing 4")),
    "ims2": ("ims_test2_snapshot_meanabs.csv", ("Bearing 1",)),
}
#: Column names that are labels, never channels (SKAB's ``anomaly`` and ``changepoint``,
#: NAB's ``label``, and common spellings).
LABEL_COLUMNS = frozenset(
    {"label", "labels", "anomaly", "anomalies", "changepoint", "changepoints", "is_anomaly",
     "outlier", "target", "fault", "attack"}
)  # fmt: skip
#: ``Bearing 3 C1`` -> ``Bearing 3``: the default grouping of channel columns into units.
UNIT_REGEX = r"^(?P<unit>.+?)\s+C\d+$"


def _dataset_error(exc: DataError) -> DatasetError:
    return DatasetError(Path(exc.path), str(exc).split(": ", 1)[-1])


@dataclass(frozen=True)
class NabStream:
    """One NAB file: its labels (for scoring only) and its readings with event times."""

    file: NabFile
    ts_ms: IntArray

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def category(self) -> str:
        return self.file.name.split("/", 1)[0]


def load_nab_corpus(path: Path) -> list[NabStream]:
    """Every file of a NAB-layout directory, with event times, sorted by name."""
    return [NabStream(f, f.ts_ms) for f in load_nab(path)]


def daily_period(ts_ms: IntArray, n_rows: int) -> int:
    """Readings per day from the median step of the first timestamps (1 if unknown), at
    most a third of the file."""
    steps = np.diff(ts_ms[:100]) / 1000.0
    step = float(np.median(steps[steps > 0])) if np.any(steps > 0) else 0.0
    if step <= 0:
        return 1
    return int(min(max(round(86_400 / step), 1), max(n_rows // 3, 1)))


@dataclass(frozen=True)
class Unit:
    """One monitored unit of a run-to-failure data set (a bearing, an engine).

    ``values`` ``(T, C)`` are its channels, ``ts_ms`` the event times; ``end_ms`` is its end
    of life (the failure, or the end of the test for a unit that does not fail), which may
    lie after the last reading (a C-MAPSS test unit is cut before it fails).
    """

    name: str
    channels: tuple[str, ...]
    values: FloatArray
    ts_ms: IntArray
    fails: bool
    end_ms: int


@dataclass(frozen=True)
class RunToFailure:
    """Units run to failure, and how false alarms are told.

    ``healthy_rul_h`` None: some units do not fail (IMS), and any alarm on those is false.
    Otherwise (C-MAPSS, where every unit fails but none says when degradation starts): an
    alarm with more than that many hours of life left is false.
    """

    name: str
    units: tuple[Unit, ...]
    healthy_rul_h: float | None = None


def _units(
    name: str, channels: Sequence[str], values: FloatArray, ts: IntArray,
    failing: Sequence[str], unit_regex: str, source: Path,
) -> RunToFailure:
    pattern = re.compile(unit_regex)
    groups: dict[str, list[int]] = {}
    for k, col in enumerate(channels):
        m = pattern.match(col)
        groups.setdefault(m.group("unit") if m else col, []).append(k)
    unknown = sorted(set(failing) - set(groups))
    if unknown:
        raise DatasetError(source, f"--failing names {unknown}, the units are {sorted(groups)}")
    end = int(ts[-1])
    units = tuple(
        Unit(u, tuple(channels[k] for k in ks), values[:, ks], ts, u in failing, end)
        for u, ks in sorted(groups.items())
    )
    return RunToFailure(name, units)


def load_run_csv(
    path: Path, failing: Sequence[str], unit_regex: str = UNIT_REGEX, name: str | None = None
) -> RunToFailure:
    """A run-to-failure CSV (``models.data.load_csv``): a time column first, then one column
    per channel. Channels are grouped into units by ``unit_regex`` (its ``unit`` group; a
    column that does not match is a unit of its own). ``failing`` names the units that fail
    at the end of the run; the others are healthy controls. Raises DatasetError on a bad file
    or a ``failing`` name that is no unit."""
    try:
        ds = load_csv(path)
    except DataError as exc:
        raise _dataset_error(exc) from exc
    if len(ds.series) != 1:
        raise DatasetError(path, "one run per file (no engine column)")
    s = ds.series[0]
    if s.ts_ms is None:
        raise DatasetError(path, "the first column must hold times (dates or seconds)")
    return _units(name or path.stem, s.channels, s.values, s.ts_ms, failing, unit_regex, path)


def load_ims_run(key: str, root: Path = IMS_DIR) -> RunToFailure:
    """A shipped IMS test (``ims1``, ``ims2``) with its failing bearings (read by
    ``models.data.load_ims_multi``: the rig's stopped rows at the end are dropped)."""
    fname, failing = IMS_RUNS[key]
    try:
        s = load_ims_multi(root / fname).series[0]
    except DataError as exc:
        raise _dataset_error(exc) from exc
    assert s.ts_ms is not None
    return _units(key, s.channels, s.values, s.ts_ms, failing, UNIT_REGEX, root / fname)


def load_cmapss_run(
    path: Path, rul_path: Path | None = None, healthy_rul: float = 125.0
) -> RunToFailure:
    """C-MAPSS units (``models.data.load_cmapss``: the varying sensors, one cycle per
    ``CMAPSS_CYCLE_S``). Without ``rul_path`` every unit runs to failure at its last cycle (a
    training file); with it (a test file), unit ``k`` fails ``RUL[k]`` cycles after its last
    row."""
    try:
        ds = load_cmapss(path, CMAPSS_INFORMATIVE)
        rul = read_cmapss_rul(rul_path) if rul_path is not None else np.zeros(len(ds.series))
    except DataError as exc:
        raise _dataset_error(exc) from exc
    if rul.shape != (len(ds.series),):
        raise DatasetError(rul_path or path, f"{rul.size} RUL values for {len(ds.series)} units")
    cycle_ms = CMAPSS_CYCLE_S * 1000
    units = []
    for s, left in zip(ds.series, rul, strict=True):
        assert s.ts_ms is not None
        end = int(s.ts_ms[-1] + left * cycle_ms)
        units.append(Unit(s.engine_id, s.channels, s.values, s.ts_ms, True, end))
    return RunToFailure(path.stem, tuple(units), healthy_rul * CMAPSS_CYCLE_S / 3600)


def cut_cmapss(train: Path, out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """A C-MAPSS test set from a training file: each unit cut at a random cycle (uniform
    between 10 % of its life and its last cycle, seeded), written as ``test_<name>.txt``
    with ``RUL_<name>.txt`` (the cycles left after each unit's last row), NASA's format."""
    try:
        table = read_cmapss_table(train)
    except DataError as exc:
        raise _dataset_error(exc) from exc
    rng = np.random.default_rng(seed)
    kept, rul = [], []
    for u in np.unique(table[:, 0]):
        rows = table[table[:, 0] == u]
        rows = rows[np.argsort(rows[:, 1], kind="stable")]
        n = len(rows)
        cut = int(rng.integers(max(1, n // 10), n + 1))
        kept.append(rows[:cut])
        rul.append(n - cut)
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = train.stem.split("_", 1)[-1]
    test_path, rul_path = out_dir / f"test_{tag}.txt", out_dir / f"RUL_{tag}.txt"
    fmt = ["%d", "%d"] + ["%.4f"] * 24
    np.savetxt(test_path, np.concatenate(kept), fmt=fmt, delimiter=" ")
    np.savetxt(rul_path, np.array(rul), fmt="%d")
    return test_path, rul_path


@dataclass(frozen=True)
class LabeledSeries:
    """One labelled CSV: readings with event times, and 0/1 labels (for scoring only)."""

    name: str
    channels: tuple[str, ...]
    values: FloatArray  #: (T, C)
    ts_ms: IntArray  #: (T,)
    labels: npt.NDArray[np.bool_]  #: (T,)


def load_labeled(
    data: Path, label: str, time: str, channels: Sequence[str] | None
) -> list[LabeledSeries]:
    """Every CSV under ``data`` (sorted). Channels are ``channels`` or every column that is
    neither the label, the time, nor a known label column (:data:`LABEL_COLUMNS`): labels
    are never inputs. Raises DatasetError on a missing or bad column."""
    paths = sorted(data.rglob("*.csv")) if data.is_dir() else [data]
    if not paths:
        raise DatasetError(data, "no CSV files")
    result = []
    for path in paths:
        cols = read_columns(path)
        if label not in cols:
            raise DatasetError(path, f"no label column {label!r}")
        names = list(channels) if channels else [
            c for c in cols if c and c not in (label, time) and c.lower() not in LABEL_COLUMNS
        ]
        missing = [c for c in names if c not in cols]
        if missing or not names:
            raise DatasetError(path, f"missing channel columns {missing or 'all'}")
        leaked = [c for c in names if c == label or c.lower() in LABEL_COLUMNS]
        if leaked:
            raise DatasetError(path, f"label columns {leaked} cannot be channels")
        try:
            values = np.array([[float(v) for v in cols[c]] for c in names]).T
            labels = np.array([float(v) for v in cols[label]]) > 0.5
        except ValueError as exc:
            raise DatasetError(path, f"non-numeric value: {exc}") from exc
        if not np.all(np.isfinite(values)):
            raise DatasetError(path, "non-finite channel value")
        ts = np.arange(1, len(labels) + 1, dtype=np.int64) * 1000  # one a second
        if time in cols:
            with contextlib.suppress(DataError):  # not a time after all: one a second
                ts = parse_times(path, cols[time])
        rel = str(path.relative_to(data)) if data.is_dir() else path.name
        result.append(LabeledSeries(rel, tuple(names), values, ts, labels))
    return result
