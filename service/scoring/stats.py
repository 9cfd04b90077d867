"""Vectorised statistics the scorers share: EWMA updates and Gaussian tail probabilities.

Everything here works on whole columns of engines at once (NumPy arrays of shape ``(n,)``)
and never loops over engines in Python.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: Tail probability that maps to score 1.0 (HTM's log-likelihood uses the same 1e-10).
LOG_TAIL_FLOOR = float(np.log(1e-10))
_SQRT2 = float(np.sqrt(2.0))
_LOG_HALF = float(np.log(0.5))
# Chebyshev fit of erfc (Numerical Recipes 6.2), highest power first for Horner.
_ERFC_COEFFS = (
    0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807,
    -0.18628806, 0.09678418, 0.37409196, 1.00002368, -1.26551223,
)  # fmt: skip


def const(value: float) -> FloatArray:
    """``value`` as a float64 0-d array, for constants in hot array expressions.

    With float64 arrays it gives exactly the results of the Python float (the same float64
    operation), but NumPy skips converting a Python scalar on every call, which is a large
    part of the cost of one operation on the small batches the service scores.
    """
    return np.array(value, dtype=np.float64)


_C_HALF, _C_ONE, _C_TWO = const(0.5), const(1.0), const(2.0)
_C_SQRT2, _C_LOG_HALF, _C_LOG_TAIL_FLOOR = const(_SQRT2), const(_LOG_HALF), const(LOG_TAIL_FLOOR)
_C_ERFC = tuple(const(c) for c in _ERFC_COEFFS)


def log_erfc(x: FloatArray) -> FloatArray:
    """``log(erfc(x))`` with relative error below 1.2e-7 everywhere (Numerical Recipes' erfcc).

    Works in log space, so far tails (x up to ~1e150) neither underflow nor lose precision.
    """
    # In place on fresh temporaries: the same operations in the same order as the plain
    # formulas, with fewer calls and arrays (per-call cost dominates at fleet batch sizes).
    z = np.abs(x)
    t = _C_HALF * z
    t += _C_ONE
    t = _C_ONE / t  # t = 1 / (1 + z/2)
    # Horner; the first step of ``poly * t + c`` from zero is just the first coefficient.
    poly = t * _C_ERFC[0]
    poly += _C_ERFC[1]
    for c in _C_ERFC[2:]:
        poly *= t
        poly += c
    log_pos = np.log(t)
    z *= z
    log_pos -= z
    log_pos += poly  # log_pos = log(t) - z*z + poly
    # erfc(-z) = 2 - erfc(z); for x < 0 the value is in (1, 2], no precision problem.
    neg = np.log(_C_TWO - np.exp(log_pos))
    out: FloatArray = np.where(x >= 0, log_pos, neg)
    return out


def log_normal_tail(z: FloatArray) -> FloatArray:
    """``log P(Z > z)`` for a standard normal Z."""
    out = log_erfc(z / _C_SQRT2)
    out += _C_LOG_HALF  # log(0.5) + log_erfc
    return out


def tail_to_score(log_tail: FloatArray) -> FloatArray:
    """Map a log tail probability to a score in [0, 1]: 0 for p >= 1, 1 for p <= 1e-10.

    Log scale, as HTM's anomaly log-likelihood: score 0.5 is a 1-in-100,000 event, so the
    top of the range keeps its resolution where the alarm levels sit.
    """
    return clip01(log_tail / _C_LOG_TAIL_FLOOR)


def clip01(x: FloatArray) -> FloatArray:
    """``np.clip(x, 0.0, 1.0)`` in place (same values, -0.0 and NaN included), returned."""
    out: FloatArray = x.clip(0.0, 1.0, out=x)
    return out


def score_to_log_tail(score: float) -> float:
    """Inverse of :func:`tail_to_score` for one score level."""
    return score * LOG_TAIL_FLOOR


@functools.lru_cache(maxsize=256)
def normal_isf(log_tail: float) -> float:
    """The z with ``log P(Z > z) == log_tail`` (bisection, cached: levels are settings)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if float(log_normal_tail(np.array([mid]))[0]) > log_tail:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def ewma_rate(decay: float, count: FloatArray) -> FloatArray:
    """Effective EWMA rate: ``1/(count+1)`` (a plain running mean) until that falls below ``decay``.

    Early statistics are then the exact sample mean of what was seen, instead of being
    biased towards the zero they were initialised with.
    """
    out: FloatArray = np.maximum(decay, 1.0 / (count + 1.0))
    return out


def ewma_update(
    x: FloatArray, mean: FloatArray, var: FloatArray, rate: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """One exponentially weighted mean/variance step (West 1979); returns new arrays."""
    new_mean = np.empty_like(mean)
    new_var = np.empty_like(var)
    ewma_step(x - mean, mean, var, rate, new_mean, new_var)
    return new_mean, new_var


def ewma_step(
    diff: FloatArray,
    mean: FloatArray,
    var: FloatArray,
    rate: FloatArray,
    out_mean: FloatArray,
    out_var: FloatArray,
) -> None:
    """:func:`ewma_update` given ``diff = x - mean``, written into ``out_mean``/``out_var``
    (for example columns of a new state block): ``mean + rate*diff`` and
    ``(1 - rate) * (var + diff * rate*diff)``."""
    incr = rate * diff
    np.add(mean, incr, out=out_mean)
    incr *= diff
    incr += var  # var + diff*incr
    np.multiply(_C_ONE - rate, incr, out=out_var)
