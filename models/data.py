"""Loading run-to-failure and monitoring data into per-engine series.

Every loader returns a :class:`Dataset`: a tuple of :class:`Series`, one per engine (one
sequence the model reads from its start), with the channel names in column order. Formats:

- ``ims``: the IMS bearing snapshot CSVs (``ims_test*_snapshot_meanabs.csv``); every bearing
  channel of a test is one engine with the single channel ``vibration`` (g).
- ``ims-multi``: the same files, one engine per test whose channels are all its bearing
  channels, named as in the file's header (``Bearing 1 C1`` ... ``Bearing 4 C2`` for test 1).
- ``cmapss``: NASA C-MAPSS ``train_FD00x.txt`` / ``test_FD00x.txt``; one engine per unit,
  channels = sensors. The data has no clock: a cycle is taken as :data:`CMAPSS_CYCLE_S`.
- ``nab``: Numenta Anomaly Benchmark style ``timestamp,value`` CSVs; one engine per file,
  channel ``value``.
- ``skab``: SKAB pump testbed CSVs (``timestamp`` plus 8 sensors, labels dropped); one engine
  per file, channels named as in the header.
- ``csv``: a time column plus channel columns; one engine per file, or an engine-id column.

Every dataset carries the unit of each channel where the format defines it (``Dataset.units``),
and every series its readings' event times (``Series.ts_ms``, epoch ms) where the format has
them: the scoring's settings are time spans.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from models.sources import CMAPSS_UNITS, IMS_UNIT, SKAB_LABELS, SKAB_UNITS

FORMATS = ("ims", "ims-multi", "cmapss", "skab", "nab", "csv")
#: Below this level (g) on every channel the IMS rig was stopped: such rows are dropped.
IMS_STOPPED_G = 0.01
#: C-MAPSS sensors that vary in FD001 (the others are constant or nearly so).
CMAPSS_INFORMATIVE = (
    "s2", "s3", "s4", "s7", "s8", "s9", "s11", "s12", "s13", "s14", "s15", "s17", "s20", "s21",
)  # fmt: skip
CMAPSS_COLUMNS = (
    "unit", "cycle", "setting1", "setting2", "setting3", *(f"s{i}" for i in range(1, 22)),
)  # fmt: skip
#: Seconds per C-MAPSS cycle (one flight): the data has no clock, so an hour is assumed.
CMAPSS_CYCLE_S = 3600


class DataError(ValueError):
    """A data file that cannot be read as the requested format; names the file."""

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)


@dataclass(frozen=True, eq=False)
class Series:
    """One engine's readings: ``values`` (T, C) float64, rows in time order.

    ``score_from`` is the first target index that counts in evaluation: the readings before
    it are context (they warm the state up) taken from an earlier part of the same engine.
    ``ts_ms`` are the rows' event times (epoch ms, int64) when the format has them.
    """

    engine_id: str
    source: str
    channels: tuple[str, ...]
    values: np.ndarray
    score_from: int = 0
    ts_ms: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True, eq=False)
class Dataset:
    """Series of one format read from ``files``; ``sha256`` hashes the files' bytes;
    ``units`` maps a channel name to its unit where known."""

    name: str
    kind: str
    series: tuple[Series, ...]
    files: tuple[Path, ...]
    sha256: str = field(default="")
    units: dict[str, str] = field(default_factory=dict)

    @property
    def channels(self) -> tuple[str, ...]:
        return self.series[0].channels if self.series else ()

    @property
    def channel_units(self) -> tuple[str, ...]:
        """The unit of each channel in :attr:`channels` order (``""`` where unknown)."""
        return tuple(self.units.get(c, "") for c in self.channels)


def hash_files(files: Sequence[Path]) -> str:
    """sha256 over the files' names and bytes, in sorted name order."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def parse_spec(spec: str) -> tuple[str, Path]:
    """``"ims:path"``, ``"cmapss:path"``, ... or a bare path (the format is then detected)."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in FORMATS:
        return kind, Path(rest)
    path = Path(spec)
    return detect_format(path), path


def detect_format(path: Path) -> str:
    """Guess the format of a file or directory from names and the CSV header."""
    files = _files(path, ("*.csv", "*.txt"))
    if not files and path.is_dir():
        files = sorted(path.rglob("*.csv"))  # NAB keeps its files in category folders
    names = [f.name for f in files]
    if names and all(n.startswith("ims_") and n.endswith(".csv") for n in names):
        return "ims"
    if names and all(n.startswith(("train_FD", "test_FD")) for n in names):
        return "cmapss"
    csvs = [f for f in files if f.suffix == ".csv"]
    if csvs and all(_header(f)[:2] == ["timestamp", "value"] for f in csvs):
        return "nab"
    if csvs and all(any("Accelerometer1RMS" in h for h in _header(f)) for f in csvs):
        return "skab"
    if csvs:
        return "csv"
    raise DataError(path, "cannot tell the data format; prefix the path with ims:, cmapss:, ...")


def load(
    spec: str,
    *,
    channels: Sequence[str] | None = None,
    engine_column: str | None = None,
    time_column: str | None = None,
    rename: dict[str, str] | None = None,
    units: dict[str, str] | None = None,
) -> Dataset:
    """Load ``spec`` (see :func:`parse_spec`); ``rename`` maps file channel names to model
    channel names, then ``channels`` selects and orders columns; ``units`` (channel -> unit)
    adds to or overrides the units the format defines."""
    kind, path = parse_spec(spec)
    if not (path.exists() or (_is_pattern(path) and _files(path, ()))):
        raise DataError(path, "no such file or directory")
    if kind == "ims":
        ds = load_ims(path)
    elif kind == "ims-multi":
        ds = load_ims_multi(path)
    elif kind == "skab":
        ds = load_skab(path)
    elif kind == "cmapss":
        ds = load_cmapss(path, channels or CMAPSS_INFORMATIVE)
    elif kind == "nab":
        ds = load_nab(path)
    else:
        ds = load_csv(path, engine_column=engine_column, time_column=time_column)
    if rename:
        ds = rename_channels(ds, rename)
    if channels is not None and kind != "cmapss":
        ds = select_channels(ds, channels)
    if units:
        unknown = sorted(set(units) - set(ds.channels))
        if unknown:
            raise DataError(path, f"units given for unknown channel(s) {unknown}")
        ds = Dataset(ds.name, ds.kind, ds.series, ds.files, ds.sha256, {**ds.units, **units})
    return ds


def rename_channels(ds: Dataset, mapping: dict[str, str]) -> Dataset:
    """The same dataset with channels renamed by ``mapping`` (old name -> new name)."""
    out = [
        Series(
            s.engine_id,
            s.source,
            tuple(mapping.get(c, c) for c in s.channels),
            s.values,
            s.score_from,
            s.ts_ms,
        )
        for s in ds.series
    ]
    units = {mapping.get(c, c): u for c, u in ds.units.items()}
    return Dataset(ds.name, ds.kind, tuple(out), ds.files, ds.sha256, units)


def select_channels(ds: Dataset, channels: Sequence[str]) -> Dataset:
    """The same dataset restricted to ``channels``, in that order."""
    out = []
    for s in ds.series:
        missing = [c for c in channels if c not in s.channels]
        if missing:
            raise DataError(s.source, f"engine {s.engine_id} has no channel(s) {missing}")
        idx = [s.channels.index(c) for c in channels]
        out.append(Series(s.engine_id, s.source, tuple(channels), s.values[:, idx], s.score_from,
                          s.ts_ms))
    return Dataset(ds.name, ds.kind, tuple(out), ds.files, ds.sha256, ds.units)


def _is_pattern(path: Path) -> bool:
    return any(ch in path.name for ch in "*?[")


def _files(path: Path, patterns: Sequence[str]) -> list[Path]:
    """The file ``path``, the files of the directory ``path`` matching ``patterns``, or the
    files matching ``path`` when its last part is a glob pattern (``skab-dev/valve1_*.csv``)."""
    if path.is_file():
        return [path]
    if _is_pattern(path):
        return sorted(f for f in path.parent.glob(path.name) if f.is_file())
    return sorted({f for p in patterns for f in path.glob(p) if f.is_file()})


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [h.strip() for h in next(csv.reader(fh), [])]


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read ({exc})") from exc
    if len(rows) < 2:
        raise DataError(path, "needs a header and at least one row")
    return [h.strip() for h in rows[0]], rows[1:]


def _floats(path: Path, rows: list[list[str]], cols: list[int]) -> np.ndarray:
    try:
        arr = np.array([[float(r[c]) for c in cols] for r in rows], dtype=np.float64)
    except (ValueError, IndexError) as exc:
        raise DataError(path, f"non-numeric or missing value ({exc})") from exc
    if not np.all(np.isfinite(arr)):
        raise DataError(path, "holds NaN or infinite values")
    return arr


def _slug(text: str) -> str:
    return "".join(ch.lower() if ch.isalnum() else "-" for ch in text).strip("-")


def parse_times(path: Path | str, texts: Sequence[str]) -> np.ndarray:
    """Event times as epoch ms (int64): ISO-8601 or ``YYYY-MM-DD hh:mm:ss`` text, or numbers
    (seconds). Raises DataError when they are neither."""
    try:
        return np.array([float(t) * 1000.0 for t in texts]).astype(np.int64)
    except ValueError:
        pass
    try:
        stamps = [datetime.fromisoformat(t.strip()) for t in texts]
    except ValueError as exc:
        raise DataError(path, f"bad time value ({exc})") from exc
    # A time without an offset is taken as UTC.
    return np.array(
        [round((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() * 1000) for t in stamps],
        dtype=np.int64,
    )


def load_ims(path: Path) -> Dataset:
    """IMS snapshot CSVs: first column the time, then one column per bearing channel.

    Engine ids are ``ims<test>-<column>``, e.g. ``ims2-bearing-1``. Trailing rows where every
    channel is below :data:`IMS_STOPPED_G` (the rig was stopped) are dropped.
    """
    files = _files(path, ("ims_*.csv",))
    if not files:
        raise DataError(path, "no ims_*.csv files")
    series = []
    for f in files:
        names, values, ts = _ims_table(f)
        test = _ims_test(f)
        for k, name in enumerate(names):
            engine = f"ims{test}-{_slug(name)}"
            series.append(Series(engine, f.name, ("vibration",), values[:, k : k + 1].copy(),
                                 ts_ms=ts))
    units = {"vibration": IMS_UNIT}
    return Dataset("ims", "ims", tuple(series), tuple(files), hash_files(files), units)


def _ims_table(f: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One IMS file: its channel names, values (T, C) and snapshot times (epoch ms), the
    stopped-rig rows at the end dropped."""
    header, rows = _read_csv(f)
    values = _floats(f, rows, list(range(1, len(header))))
    running = np.flatnonzero(values.max(axis=1) >= IMS_STOPPED_G)
    if running.size == 0:
        raise DataError(f, "every row is below the stopped-rig level")
    end = running[-1] + 1
    return header[1:], values[:end], parse_times(f, [r[0] for r in rows[:end]])


def _ims_test(f: Path) -> str:
    return "".join(ch for ch in f.stem.split("_")[1] if ch.isdigit()) or f.stem


def load_ims_multi(path: Path) -> Dataset:
    """IMS snapshot CSVs, one engine per test (``ims1``) with every bearing channel of the
    test as a channel, named as in the header. Several files must share their channels (test
    1 has 8, test 2 has 4: name one file)."""
    files = _files(path, ("ims_*.csv",))
    if not files:
        raise DataError(path, "no ims_*.csv files")
    series: list[Series] = []
    for f in files:
        names, values, ts = _ims_table(f)
        if series and tuple(names) != series[0].channels:
            raise DataError(
                f, f"channels {names} differ from {series[0].source}'s; name a single file"
            )
        series.append(Series(f"ims{_ims_test(f)}", f.name, tuple(names), values, ts_ms=ts))
    units = dict.fromkeys(series[0].channels, IMS_UNIT)
    return Dataset("ims-multi", "ims-multi", tuple(series), tuple(files), hash_files(files), units)


def read_cmapss_table(f: Path) -> np.ndarray:
    """A C-MAPSS file as its table: unit, cycle, 3 settings, 21 sensors per row."""
    try:
        table = np.loadtxt(f, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise DataError(f, f"not a C-MAPSS table ({exc})") from exc
    if table.shape[1] != len(CMAPSS_COLUMNS):
        raise DataError(f, f"expected {len(CMAPSS_COLUMNS)} columns, got {table.shape[1]}")
    return table


def read_cmapss_rul(f: Path) -> np.ndarray:
    """NASA's ``RUL_FD00x.txt``: the cycles each test unit had left, in unit order."""
    try:
        return np.loadtxt(f, dtype=np.float64, ndmin=1)
    except (OSError, ValueError) as exc:
        raise DataError(f, f"not a RUL file ({exc})") from exc


def load_cmapss(path: Path, channels: Sequence[str] = CMAPSS_INFORMATIVE) -> Dataset:
    """C-MAPSS whitespace-separated files (training or test): unit, cycle, 3 settings, 21
    sensors per row. Engine ids ``<tag>-<unit>`` (``fd001-007``, ``test-fd001-007``); event
    times one cycle per :data:`CMAPSS_CYCLE_S`."""
    files = _files(path, ("train_FD*.txt", "test_FD*.txt"))
    if not files:
        raise DataError(path, "no train_FD*.txt or test_FD*.txt files")
    unknown = [c for c in channels if c not in CMAPSS_COLUMNS[2:]]
    if unknown:
        raise DataError(path, f"unknown C-MAPSS channel(s) {unknown}")
    idx = [CMAPSS_COLUMNS.index(c) for c in channels]
    series = []
    for f in files:
        table = read_cmapss_table(f)
        tag = f.stem.split("_")[-1].lower()
        if f.stem.startswith("test_"):
            tag = f"test-{tag}"
        for unit in np.unique(table[:, 0]):
            rows = table[table[:, 0] == unit]
            rows = rows[np.argsort(rows[:, 1], kind="stable")]
            engine = f"{tag}-{int(unit):03d}"
            ts = (rows[:, 1] * CMAPSS_CYCLE_S * 1000).astype(np.int64)
            series.append(Series(engine, f.name, tuple(channels), rows[:, idx].copy(), ts_ms=ts))
    units = {c: CMAPSS_UNITS.get(c, "") for c in channels}
    return Dataset("cmapss", "cmapss", tuple(series), tuple(files), hash_files(files), units)


def load_skab(path: Path) -> Dataset:
    """SKAB CSVs (comma- or semicolon-separated): ``timestamp``, the sensors and, in labelled
    runs, ``anomaly`` and ``changepoint``, which are dropped (labels are never inputs). One
    engine per file, ``skab-<file stem>``; rows in file order (1 s apart)."""
    files = _files(path, ("*.csv",))
    if not files:
        raise DataError(path, "no .csv files")
    series: list[Series] = []
    for f in files:
        header, rows = _read_csv(f)
        if len(header) == 1 and ";" in header[0]:
            header = [h.strip() for h in header[0].split(";")]
            rows = [r[0].split(";") for r in rows]
        if "timestamp" not in header:
            raise DataError(f, "a SKAB file needs a timestamp column")
        skip = {"timestamp", *SKAB_LABELS}
        cols = [k for k, h in enumerate(header) if h not in skip]
        names = tuple(header[k] for k in cols)
        if series and names != series[0].channels:
            raise DataError(f, f"channels {names} differ from {series[0].source}'s")
        ts = parse_times(f, [r[header.index("timestamp")] for r in rows])
        series.append(Series(f"skab-{_slug(f.stem)}", f.name, names, _floats(f, rows, cols),
                             ts_ms=ts))
    units = {c: SKAB_UNITS.get(c, "") for c in series[0].channels}
    return Dataset("skab", "skab", tuple(series), tuple(files), hash_files(files), units)


def load_nab(path: Path) -> Dataset:
    """NAB-style CSVs (``timestamp,value``), searched recursively; one engine per file. In a
    directory a series' ``source`` is its path below it (``realKnownCause/nyc_taxi.csv``, the
    key of NAB's label files); event times as in the file (a few NAB files repeat or step
    back a timestamp: kept as they are)."""
    files = [path] if path.is_file() else sorted(path.rglob("*.csv"))
    if not files:
        raise DataError(path, "no .csv files")
    series = []
    for f in files:
        header, rows = _read_csv(f)
        if header[:2] != ["timestamp", "value"]:
            raise DataError(f, f"expected header timestamp,value, got {header[:2]}")
        values = _floats(f, rows, [1])
        rel = f.relative_to(path).as_posix() if path.is_dir() else f.name
        engine = _slug(rel.removesuffix(".csv") if path.is_dir() else f.stem)
        ts = parse_times(f, [r[0] for r in rows])
        series.append(Series(engine, rel, ("value",), values, ts_ms=ts))
    return Dataset("nab", "nab", tuple(series), tuple(files), hash_files(files))


def load_csv(
    path: Path, *, engine_column: str | None = None, time_column: str | None = None
) -> Dataset:
    """Generic CSVs: a time column (first column unless named), channel columns, and either
    one engine per file or an ``engine_column`` naming the engine of every row.

    Rows are ordered by time within an engine (numeric or ISO-8601 text both sort correctly
    when consistently formatted); every other column is a channel.
    """
    files = _files(path, ("*.csv",))
    if not files:
        raise DataError(path, "no .csv files")
    series: list[Series] = []
    channels: tuple[str, ...] | None = None
    for f in files:
        header, rows = _read_csv(f)
        tcol = header.index(time_column) if time_column in header else 0
        if time_column is not None and time_column not in header:
            raise DataError(f, f"no time column {time_column!r}")
        ecol: int | None = None
        if engine_column is not None:
            if engine_column not in header:
                raise DataError(f, f"no engine column {engine_column!r}")
            ecol = header.index(engine_column)
        cols = [k for k in range(len(header)) if k not in (tcol, ecol)]
        names = tuple(header[k] for k in cols)
        if channels is not None and names != channels:
            raise DataError(f, f"channels {names} differ from the first file's {channels}")
        channels = names
        groups: dict[str, list[list[str]]] = {}
        for r in rows:
            key = r[ecol] if ecol is not None else f.stem
            groups.setdefault(key, []).append(r)
        for key, grp in groups.items():
            grp.sort(key=lambda r: _time_key(r[tcol]))
            engine = _slug(key) if ecol is not None else _slug(f.stem)
            try:
                ts: np.ndarray | None = parse_times(f, [r[tcol] for r in grp])
            except DataError:
                ts = None  # a time column that is neither a date nor a number: order only
            series.append(Series(engine, f.name, names, _floats(f, grp, cols), ts_ms=ts))
    return Dataset(path.stem, "csv", tuple(series), tuple(files), hash_files(files))


def _time_key(text: str) -> tuple[float, str]:
    try:
        value = float(text)
    except ValueError:
        return (math.inf, text)
    return (value, "")
