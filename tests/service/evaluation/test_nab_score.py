"""The NAB scorer against NAB's own per-row scores of the reference detectors.

NAB's results files carry, for each profile, the per-row score ``S(t)_<profile>`` that NAB's
scorer wrote at its published threshold for that detector and profile. Re-scoring the
``anomaly_score`` column with our implementation must reproduce every row and every file
total to 1e-6.

The thresholds: NAB's ``config/thresholds.json`` is not shipped with the data subset, so the
values below were derived from the reference files themselves: they are the set of
thresholds at which the reference rows are consistent (NAB's FP rows need score >= threshold,
its silent out-of-window rows need score < threshold). Any threshold in each interval
reproduces the same detections; the test uses the upper end and the lower end of each one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.evaluation.nab_data import NabFile, load_nab, read_result_column, result_path
from service.evaluation.nab_score import (
    PROFILES,
    LabeledFile,
    Profile,
    load_profiles,
    normalised,
    optimise_threshold,
    probation_rows,
    scaled_sigmoid,
    score_corpus,
    score_file,
)

NAB = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "nab-dev"

# (detector, profile) -> (lower bound exclusive, upper bound inclusive) of NAB's threshold
THRESHOLDS: dict[tuple[str, str], tuple[float, float]] = {
    ("numenta", "standard"): (0.54168599589, 0.547289439756),
    ("numenta", "reward_low_FN_rate"): (0.54168599589, 0.547289439756),
    ("numenta", "reward_low_FP_rate"): (0.574726331087, 0.578960154395),
    ("windowedGaussian", "standard"): (0.999999999999, 1.0),
    ("windowedGaussian", "reward_low_FN_rate"): (0.999999999999, 1.0),
    ("windowedGaussian", "reward_low_FP_rate"): (0.999999999999, 1.0),
}

needs_data = pytest.mark.skipif(not NAB.is_dir(), reason=f"{NAB} not present")


@pytest.fixture(scope="module")
def corpus() -> list[NabFile]:
    return load_nab(NAB)


def test_profiles_file_matches_builtin() -> None:
    if not NAB.is_dir():
        pytest.skip("no data")
    assert load_profiles(NAB / "config" / "profiles.json") == PROFILES


def test_scaled_sigmoid_values() -> None:
    y = np.array([-1.0, 0.0, 1.0, 3.0, 3.0001])
    expected = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    expected[-1] = -1.0
    assert np.allclose(scaled_sigmoid(y), expected)
    assert probation_rows(4032) == 604 and probation_rows(22695) == 750


def test_small_hand_worked_file() -> None:
    # 100 rows, probation 15, one window rows 40..49 (width 10).
    f = LabeledFile("x.csv", 100, ((40, 49),))
    p = Profile("p", tp=1.0, fp=0.11, fn=1.0)
    scores = np.zeros(100)
    scores[[5, 20, 45, 47, 60]] = 1.0  # 5 is in probation; 20 before the window
    fs = score_file(f, scores, p, 0.5)

    def s(y: float) -> float:
        return float(2.0 / (1.0 + np.exp(5.0 * y)) - 1.0)

    tp = s(-(49 - 45 + 1) / 10) / s(-1.0)
    fp_after = 0.11 * s(abs(60 - 49) / 9)
    assert fs.tp == 1 and fs.fn == 0 and fs.fp == 2
    assert fs.score == pytest.approx(-0.11 + tp + fp_after)
    assert fs.rows[40] == pytest.approx(tp) and fs.rows[20] == pytest.approx(-0.11)
    assert score_file(f, np.zeros(100), p, 0.5).score == pytest.approx(-1.0)
    threshold, total = optimise_threshold([f], [scores], p)
    assert threshold == 1.0 and total == pytest.approx(fs.score)
    better = scores.copy()
    better[45] = 2.0  # now thresholding above 1 keeps the TP and drops both FPs
    threshold, total = optimise_threshold([f], [better], p)
    assert threshold == 2.0 and total == pytest.approx(tp)
    assert normalised(p.tp * 1, 1, p) == 100.0 and normalised(-p.fn, 1, p) == 0.0


@needs_data
@pytest.mark.parametrize(("detector", "profile"), sorted(THRESHOLDS))
def test_reproduces_reference_rows_and_file_scores(
    corpus: list[NabFile], detector: str, profile: str
) -> None:
    lo, hi = THRESHOLDS[detector, profile]
    for threshold in (float(np.nextafter(lo, np.inf)), hi):
        for f in corpus:
            path = result_path(NAB / "reference", detector, f.name)
            scores = read_result_column(path, "anomaly_score")
            expected = read_result_column(path, f"S(t)_{profile}")
            got = score_file(f.labeled, scores, PROFILES[profile], threshold)
            np.testing.assert_allclose(got.rows, expected, atol=1e-6, rtol=0, err_msg=f.name)
            assert got.score == pytest.approx(expected.sum(), abs=1e-6), f.name


@needs_data
def test_threshold_below_interval_changes_scores(corpus: list[NabFile]) -> None:
    # The check has teeth: just below the derived interval the rows no longer match.
    lo, _ = THRESHOLDS["numenta", "standard"]
    files = [f.labeled for f in corpus]
    scores = [
        read_result_column(result_path(NAB / "reference", "numenta", f.name), "anomaly_score")
        for f in corpus
    ]
    at = score_corpus(files, scores, PROFILES["standard"], lo + 1e-12).total
    below = score_corpus(files, scores, PROFILES["standard"], lo).total
    assert abs(at - below) > 1e-3
    # The optimum on this subset is at least as good as NAB's corpus-wide threshold.
    opt = score_corpus(files, scores, PROFILES["standard"])
    assert opt.total >= at - 1e-9
