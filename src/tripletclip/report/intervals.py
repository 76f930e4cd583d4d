"""Intervals of a report that cannot go negative or NaN by rounding: whiskers, half ranges, sampling errors.

Floating point does not keep ``min(v) <= mean(v) <= max(v)``: three equal seeds at 100 * 25 / 26 give
``mean - min = -1.4e-14`` (issue 23), which matplotlib refuses as an error bar. Every interval shown or used
in a decision is therefore computed here: the mean is clipped into ``[min, max]`` and lengths are clipped at 0;
non-finite inputs are dropped (a failed run is NaN) rather than propagated.

Binomial intervals: the normal-approximation standard error of an accuracy, its difference between two models
(unpaired, hence conservative), and the Wilson score interval (Wilson, JASA 1927), which stays inside [0, 100]
at 0% and 100% where the normal interval collapses to zero width.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

Z95 = 1.96


def finite(values: Iterable[object]) -> list[float]:
    """The finite numbers of ``values`` (None, NaN, inf and non-numbers dropped), as floats."""
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(v):
            out.append(float(v))
    return out


def mean(values: Sequence[float]) -> float:
    """The mean of the finite values, clipped into [min, max] of them (NaN when there are none)."""
    vals = finite(values)
    if not vals:
        return math.nan
    lo, hi = min(vals), max(vals)
    return min(max(math.fsum(vals) / len(vals), lo), hi)


def whiskers(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, mean - min, max - mean) of the finite values; both lengths >= 0 exactly ((nan, 0, 0) if none)."""
    vals = finite(values)
    if not vals:
        return math.nan, 0.0, 0.0
    m = mean(vals)
    return m, max(0.0, m - min(vals)), max(0.0, max(vals) - m)


def half_range(values: Sequence[float]) -> float:
    """Half the min..max range of the finite values (0 for one value or none); never negative."""
    vals = finite(values)
    return max(0.0, (max(vals) - min(vals)) / 2) if len(vals) > 1 else 0.0


def _fraction(accuracy: float) -> float:
    """An accuracy in percent as a probability in [0, 1] (NaN stays NaN)."""
    return min(max(accuracy / 100.0, 0.0), 1.0) if math.isfinite(accuracy) else math.nan


def diff_error(a: float, b: float, rows: Sequence[int], z: float = Z95) -> float:
    """``z`` x the standard error (points) of the difference of two accuracies a, b (percent), each the mean
    of ``len(rows)`` parts measured on ``rows[i]`` rows (binomial variance at the parts' mean accuracy). A part
    with no rows counts as one row (the widest error); NaN when an accuracy is not finite."""
    pa, pb = _fraction(a), _fraction(b)
    if math.isnan(pa) or math.isnan(pb):
        return math.nan
    k = max(1, len(rows))
    parts = list(rows) or [1]
    var = math.fsum((pa * (1 - pa) + pb * (1 - pb)) / max(1, int(n)) for n in parts) / (k * k)
    return 100.0 * z * math.sqrt(max(0.0, var))


def wilson(accuracy: float, rows: int, z: float = Z95) -> Optional[tuple[float, float]]:
    """The Wilson score interval (percent) of an accuracy measured on ``rows`` rows; None without rows or with
    a non-finite accuracy. Always 0 <= low <= accuracy <= high <= 100."""
    p = _fraction(accuracy)
    if rows < 1 or math.isnan(p):
        return None
    n = float(rows)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(max(0.0, p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    return 100.0 * min(low, p), 100.0 * max(high, p)
