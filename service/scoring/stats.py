"""Vectorised statistics the scorers share: EWMA updates and Gaussian tail probabilities.

Everything here works on whole columns of engines at once (NumPy arrays of shape ``(n,)``)
and never loops over engines in Python.
"""

from __future__ import annotations

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


_C_ZERO, _C_HALF, _C_ONE, _C_TWO = const(0.0), const(0.5), const(1.0), const(2.0)
_C_HOUR = const(3600.0)
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


#: The unit of time scores are counted in (seconds): a score says how many hours of normal
#: operation an engine runs, on average, between departures as large as this one.
HOUR_S = 3600.0


def log_hours(dt_s: FloatArray) -> FloatArray:
    """``ln(dt / 1 hour)`` of each engine's sampling interval; 0 (one reading an hour) while
    the interval is not known (``dt_s`` 0)."""
    out: FloatArray = np.log(np.where(dt_s > _C_ZERO, dt_s, _C_HOUR) / _C_HOUR)
    return out


def tail_to_score(log_tail: FloatArray, log_h: FloatArray | float = 0.0) -> FloatArray:
    """Map the tail probability ``p`` of one reading to a score: tenths of decades of the
    hours of normal operation between readings this extreme, ``log10(dt / (p * 1 h)) / 10``.

    ``log_h`` is :func:`log_hours` of the sampling interval ``dt``. So 0.3 means "once in
    1,000 hours", 0.5 "once in 100,000 hours", 1.0 "once in 10^10 hours" whether the engine
    reports every second or every hour (at one reading an hour it is HTM's log-likelihood
    scale), and there is no ceiling: a worse departure always scores higher, so sorting
    engines by score puts the worst first. Below "once an hour" the score is 0.
    """
    return clip0((log_tail - log_h) / _C_LOG_TAIL_FLOOR)


def clip0(x: FloatArray) -> FloatArray:
    """``np.maximum(x, 0.0)`` in place (NaN stays NaN), returned."""
    out: FloatArray = np.maximum(x, _C_ZERO, out=x)
    return out


def score_to_log_tail(score: float | FloatArray, log_h: FloatArray | float = 0.0) -> FloatArray:
    """Inverse of :func:`tail_to_score`: the log tail probability scoring ``score``."""
    out: FloatArray = np.asarray(score * LOG_TAIL_FLOOR + log_h, dtype=np.float64)
    return out


_C_LOG_SQRT_2PI = const(0.5 * float(np.log(2 * np.pi)))


def _isf_newton(log_tail: FloatArray) -> FloatArray:
    """The z with ``log P(Z > z) == log_tail``: Newton's method from the tail's asymptote,
    four steps (to float precision for ``log_tail <= log(0.5)``)."""
    z = np.sqrt(np.maximum(-2.0 * log_tail, 0.0))
    # log Q(z) ~ -z^2/2 - log(z sqrt(2 pi)) for large z
    z = np.sqrt(np.maximum(-2.0 * log_tail - 2.0 * (np.log(np.maximum(z, 1.0))
                                                    + _C_LOG_SQRT_2PI), 0.0))
    for _ in range(4):
        lq = log_normal_tail(z)
        log_phi = -0.5 * z * z - _C_LOG_SQRT_2PI
        z = z + (lq - log_tail) * np.exp(lq - log_phi)
    return z


#: ``normal_isf_many`` by table: z against ``sqrt(-log_tail)``, nearly a straight line, from
#: p = 0.5 to p = 1e-4000 (a score far beyond any level).
_ISF_U = np.linspace(np.sqrt(-np.log(0.5)), 100.0, 20001)
_ISF_Z = _isf_newton(-(_ISF_U**2))


def normal_isf_many(log_tail: FloatArray) -> FloatArray:
    """The z with ``log P(Z > z) == log_tail``, one per engine (levels are counted in
    time and engines report at different rates), by interpolation in a table computed once
    (relative error below 1e-8). Tails above 0.5 give z = 0."""
    out: FloatArray = np.interp(np.sqrt(np.maximum(-log_tail, 0.0)), _ISF_U, _ISF_Z, left=0.0)
    return out


def span_rate(span_s: FloatArray | float, dt_s: FloatArray) -> FloatArray:
    """Per-reading EWMA rate of a memory ``span_s`` seconds long for readings ``dt_s`` apart:
    ``1 - exp(-dt/span)``. The weight of a reading then decays by ``e`` per ``span_s`` of
    time whatever the sampling interval, so one setting means the same on 1-second and on
    hourly data. ``dt_s`` 0 (interval not known yet) gives 0."""
    out: FloatArray = -np.expm1(-(dt_s / span_s))
    return out


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
