"""Reading and writing NAB-layout directories.

A NAB-layout directory has ``data/<category>/<name>.csv`` (columns ``timestamp,value``) and
``labels/combined_windows.json`` (``"<category>/<name>.csv"`` -> list of ``[start, end]``).
Results use NAB's layout: ``<out>/<detector>/<category>/<detector>_<name>.csv`` with columns
``timestamp,value,anomaly_score,label``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from models.data import DataError
from models.data import load_nab as load_series
from service.errors import VibewatchError
from service.evaluation.nab_score import LabeledFile, window_rows

FloatArray = npt.NDArray[np.float64]


class DatasetError(VibewatchError):
    """A dataset directory or file that cannot be read; ``path`` names it."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass(frozen=True)
class NabFile:
    """One NAB data file with its labels resolved to rows."""

    name: str  #: "<category>/<file>.csv", the key in combined_windows.json
    timestamps: tuple[str, ...]
    values: FloatArray
    labeled: LabeledFile
    ts_ms: npt.NDArray[np.int64]  #: event times (epoch ms) as in the file

    @property
    def labels(self) -> npt.NDArray[np.int8]:
        """0/1 per row: 1 inside an anomaly window (NAB's ``label`` column)."""
        out = np.zeros(self.labeled.n_rows, dtype=np.int8)
        for lo, hi in self.labeled.windows:
            out[lo : hi + 1] = 1
        return out


def read_columns(path: Path) -> dict[str, list[str]]:
    """All columns of a CSV file with a header row, as strings."""
    try:
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            cols: list[list[str]] = [[] for _ in header]
            for row in reader:
                if not row:
                    continue
                for c, v in zip(cols, row, strict=False):
                    c.append(v)
    except (OSError, StopIteration) as exc:
        raise DatasetError(path, f"cannot read CSV: {exc}") from exc
    return {h.strip(): c for h, c in zip(header, cols, strict=True)}


def load_nab(data_dir: Path) -> list[NabFile]:
    """Every ``data/<category>/*.csv`` of a NAB-layout directory, sorted by name, with its
    labels resolved to rows (the files are read by ``models.data.load_nab``, the project's
    one NAB reader). Files missing from the labels file get no windows. Raises DatasetError
    on a bad layout."""
    labels_path = data_dir / "labels" / "combined_windows.json"
    try:
        windows: dict[str, list[list[str]]] = json.loads(labels_path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(labels_path, f"cannot read labels: {exc}") from exc
    if not sorted((data_dir / "data").glob("*/*.csv")):
        raise DatasetError(data_dir / "data", "no data/<category>/*.csv files")
    try:
        ds = load_series(data_dir / "data")
    except DataError as exc:
        raise DatasetError(Path(exc.path), str(exc).split(": ", 1)[-1]) from exc
    out = []
    for series in sorted(ds.series, key=lambda x: x.source):
        name = series.source
        assert series.ts_ms is not None
        times = series.ts_ms.astype("datetime64[ms]")
        stamps = tuple(str(t.astype("datetime64[s]")).replace("T", " ") for t in times)
        values = np.asarray(series.values[:, 0], dtype=np.float64)
        rows = window_rows(times, windows.get(name, []))
        out.append(NabFile(name, stamps, values, LabeledFile(name, len(values), tuple(rows)),
                           series.ts_ms))
    return out


def result_path(out_dir: Path, detector: str, name: str) -> Path:
    """Where NAB keeps a detector's results for data file ``name``."""
    category, fname = name.split("/", 1)
    return out_dir / detector / category / f"{detector}_{fname}"


def read_result_column(path: Path, column: str) -> FloatArray:
    """One numeric column of a results file (e.g. ``anomaly_score`` or ``S(t)_standard``)."""
    cols = read_columns(path)
    if column not in cols:
        raise DatasetError(path, f"no column {column}")
    return np.array([float(v) for v in cols[column]], dtype=np.float64)


def write_result(out_dir: Path, detector: str, f: NabFile, scores: FloatArray) -> Path:
    """Write one NAB results file; returns its path."""
    path = result_path(out_dir, detector, f.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = f.labels
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value", "anomaly_score", "label"])
        for i, ts in enumerate(f.timestamps):
            w.writerow([ts, repr(float(f.values[i])), repr(float(scores[i])), int(labels[i])])
    return path
