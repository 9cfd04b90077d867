"""NAB v1.1 scoring, implemented from the benchmark's rules (Lavin & Ahmad 2015).

* Windows are row ranges ``[l, r]`` (inclusive) around each labelled anomaly.
* The first ``min(floor(0.15 n), 750)`` rows of a file are probation: never scored.
* Scaled sigmoid ``S(y) = 2 / (1 + e^(5y)) - 1``, and ``S(y) = -1`` for ``y > 3``.
* The earliest detection in a window scores ``tp * S(-(r - i + 1) / w) / S(-1)``; later ones
  in the same window score nothing; a window without detection costs ``-fn``. Both are
  booked on the window's first row, as NAB's results files do.
* A detection outside every window costs ``fp * S(|i - r_prev| / (w_prev - 1))`` after a
  window, ``-fp`` before the first one.
* A row is a detection when its anomaly score is ``>=`` the threshold; the threshold per
  detector and profile maximises the corpus total (an exact sweep over every distinct score).
* Normalised score = ``100 (S - S_null) / (S_perfect - S_null)`` with
  ``S_perfect = tp * windows`` and ``S_null = -fn * windows``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PROBATION_PERCENT = 0.15
PROBATION_CAP = 750  # 0.15 * 5000 rows


@dataclass(frozen=True)
class Profile:
    """A NAB cost profile (``config/profiles.json``); ``tn`` is unused by NAB's score."""

    name: str
    tp: float
    fp: float
    fn: float


#: NAB v1.1's three profiles, as in its config/profiles.json.
PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0),
}


def load_profiles(path: Path) -> dict[str, Profile]:
    """Read a NAB ``profiles.json``; raises OSError/KeyError/ValueError if it is malformed."""
    raw = json.loads(path.read_text())
    out = {}
    for name, body in raw.items():
        cm = body["CostMatrix"]
        out[name] = Profile(
            name, float(cm["tpWeight"]), float(cm["fpWeight"]), float(cm["fnWeight"])
        )
    return out


def scaled_sigmoid(y: FloatArray) -> FloatArray:
    """NAB's scaled sigmoid: ``2 / (1 + e^(5y)) - 1``, and -1 beyond ``y > 3``."""
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(over="ignore"):
        val = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    out: FloatArray = np.where(y > 3.0, -1.0, val)
    return out


def probation_rows(n_rows: int) -> int:
    """Rows at the start of a file that are never scored."""
    return int(min(math.floor(PROBATION_PERCENT * n_rows), PROBATION_CAP))


def window_rows(
    timestamps: npt.NDArray[np.datetime64], windows: Sequence[Sequence[str]]
) -> list[tuple[int, int]]:
    """Turn ``[start, end]`` timestamp windows into inclusive row ranges ``(l, r)``.

    ``l`` is the first row at or after ``start`` and ``r`` the last row at or before ``end``
    (some NAB files step back in time once, so this does not assume sorted timestamps).
    Windows that contain no row are dropped.
    """
    out = []
    for start, end in windows:
        after = np.flatnonzero(timestamps >= np.datetime64(start))
        before = np.flatnonzero(timestamps <= np.datetime64(end))
        if after.size and before.size and before[-1] >= after[0]:
            out.append((int(after[0]), int(before[-1])))
    return out


@dataclass(frozen=True)
class LabeledFile:
    """What NAB needs to know about one data file, independent of any detector."""

    name: str
    n_rows: int
    windows: tuple[tuple[int, int], ...]

    @property
    def probation(self) -> int:
        return probation_rows(self.n_rows)


@dataclass(frozen=True)
class RowValues:
    """Per-row value of a detection under one profile (before thresholding)."""

    window: IntArray  #: window index of the row, -1 outside every window
    value: FloatArray  #: what a detection on this row is worth (TP value or FP cost)


def row_values(f: LabeledFile, profile: Profile) -> RowValues:
    """Worth of a detection on each row of ``f`` under ``profile``."""
    n = f.n_rows
    idx = np.arange(n, dtype=np.int64)
    window = np.full(n, -1, dtype=np.int64)
    value = np.zeros(n, dtype=np.float64)
    max_tp = float(scaled_sigmoid(np.array([-1.0]))[0])
    for k, (lo, hi) in enumerate(f.windows):
        window[lo : hi + 1] = k
        width = hi - lo + 1
        pos = -(hi - idx[lo : hi + 1] + 1) / width
        value[lo : hi + 1] = profile.tp * scaled_sigmoid(pos) / max_tp
    outside = window < 0
    ends = np.array([hi for _, hi in f.windows], dtype=np.int64)
    widths = np.array([hi - lo + 1 for lo, hi in f.windows], dtype=np.int64)
    prev = np.searchsorted(ends, idx, side="left") - 1  # last window with end < i
    has_prev = outside & (prev >= 0)
    fp_value = np.full(n, -profile.fp)
    if len(ends):
        p = np.clip(prev, 0, None)
        dist = np.abs(idx - ends[p]) / np.maximum(widths[p] - 1, 1)
        fp_value = np.where(has_prev, profile.fp * scaled_sigmoid(dist), -profile.fp)
    value = np.where(outside, fp_value, value)
    return RowValues(window=window, value=value)


@dataclass(frozen=True)
class FileScore:
    """NAB outcome for one file at one threshold; ``rows`` is NAB's per-row ``S(t)``."""

    name: str
    score: float
    tp: int
    fp: int
    fn: int
    rows: FloatArray


def score_file(
    f: LabeledFile, anomaly_scores: FloatArray, profile: Profile, threshold: float
) -> FileScore:
    """Score one file's per-row anomaly scores at ``threshold``."""
    a = np.asarray(anomaly_scores, dtype=np.float64)
    if a.shape != (f.n_rows,):
        raise ValueError(f"{f.name}: {a.shape[0]} scores for {f.n_rows} rows")
    rv = row_values(f, profile)
    det = a >= threshold
    det[: f.probation] = False
    rows = np.zeros(f.n_rows, dtype=np.float64)
    fp_rows = det & (rv.window < 0)
    rows[fp_rows] = rv.value[fp_rows]
    tp = fn = 0
    for lo, hi in f.windows:
        hits = np.flatnonzero(det[lo : hi + 1])
        if hits.size:
            rows[lo] = rv.value[lo + hits[0]]
            tp += 1
        else:
            rows[lo] = -profile.fn
            fn += 1
    return FileScore(f.name, float(rows.sum()), tp, int(fp_rows.sum()), fn, rows)


def _sweep_events(
    f: LabeledFile, anomaly_scores: FloatArray, profile: Profile
) -> tuple[FloatArray, FloatArray]:
    """(score level, change of the file total when the threshold drops to that level)."""
    a = np.asarray(anomaly_scores, dtype=np.float64)
    rv = row_values(f, profile)
    scored = np.arange(f.n_rows) >= f.probation
    fp = scored & (rv.window < 0)
    levels = [a[fp]]
    deltas = [rv.value[fp]]
    for k in range(len(f.windows)):
        rows = np.flatnonzero(scored & (rv.window == k))
        if rows.size == 0:
            continue
        order = rows[np.argsort(-a[rows], kind="stable")]
        best = np.maximum.accumulate(rv.value[order])
        prev = np.concatenate([[-profile.fn], best[:-1]])
        levels.append(a[order])
        deltas.append(best - prev)
    return np.concatenate(levels), np.concatenate(deltas)


def optimise_threshold(
    files: Sequence[LabeledFile], scores: Sequence[FloatArray], profile: Profile
) -> tuple[float, float]:
    """Threshold that maximises the corpus total, and that total (exact sweep).

    Among equally good thresholds the highest is returned. A threshold above every score
    (no detections) is a candidate too; it is reported as ``inf``.
    """
    lv, dv = zip(
        *(_sweep_events(f, s, profile) for f, s in zip(files, scores, strict=True)), strict=True
    )
    levels = np.concatenate(lv)
    deltas = np.concatenate(dv)
    base = -profile.fn * sum(len(f.windows) for f in files)
    if levels.size == 0:
        return math.inf, base
    order = np.argsort(-levels, kind="stable")
    levels, deltas = levels[order], deltas[order]
    totals = base + np.cumsum(deltas)
    last_of_level = np.r_[levels[1:] != levels[:-1], True]
    cand_levels = levels[last_of_level]
    cand_totals = totals[last_of_level]
    best = int(np.argmax(cand_totals))
    if cand_totals[best] <= base:
        return math.inf, base
    return float(cand_levels[best]), float(cand_totals[best])


def normalised(total: float, n_windows: int, profile: Profile) -> float:
    """NAB's normalised score: 0 = detects nothing, 100 = every window at its first row."""
    perfect = profile.tp * n_windows
    null = -profile.fn * n_windows
    return 100.0 * (total - null) / (perfect - null)


@dataclass(frozen=True)
class CorpusResult:
    """One detector under one profile."""

    profile: str
    threshold: float
    total: float
    normalised: float
    files: tuple[FileScore, ...]


def score_corpus(
    files: Sequence[LabeledFile],
    scores: Sequence[FloatArray],
    profile: Profile,
    threshold: float | None = None,
) -> CorpusResult:
    """Score a corpus at ``threshold``, or at the optimal threshold when None."""
    if threshold is None:
        threshold, _ = optimise_threshold(files, scores, profile)
    per_file = tuple(
        score_file(f, s, profile, threshold) for f, s in zip(files, scores, strict=True)
    )
    total = sum(fs.score for fs in per_file)
    n_windows = sum(len(f.windows) for f in files)
    return CorpusResult(
        profile.name, threshold, total, normalised(total, n_windows, profile), per_file
    )


def score_all_profiles(
    files: Sequence[LabeledFile],
    scores: Sequence[FloatArray],
    profiles: Mapping[str, Profile] = PROFILES,
) -> dict[str, CorpusResult]:
    """Optimal-threshold results for every profile."""
    return {name: score_corpus(files, scores, p) for name, p in profiles.items()}
