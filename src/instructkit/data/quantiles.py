"""Percentiles and summaries of lengths and scores: the one definition of p50/p90/p99 here.

Every place that summarizes a distribution of lengths or scores (``instructkit data stats``
token lengths, the quality report's measures) goes through :func:`percentile`, which
interpolates linearly between the two nearest ranks (Hyndman & Fan 1996 definition 7, numpy's
default), so that a p90 means the same number everywhere::

    percentile([1, 2, 3, 4, 10], 0.9)  # 7.6: rank 0.9 * 4 = 3.6, 4 + 0.6 * (10 - 4)
    summarize([1, 2, 3, 4, 10])        # {"min": 1, "p50": 3, "p90": 7.6, "max": 10}
    describe([1, 2, 3, 4, 10])         # summarize at p50/p90/p99, plus mean and total
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from instructkit.errors import InstructkitError

__all__ = ["percentile", "summarize", "describe"]

_DIGITS = 4  # summaries are rounded, so reports and JSON stay readable


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0 <= q <= 1) of ``values``, linearly interpolated between ranks."""
    if not values:
        raise InstructkitError("the percentile of no values is undefined.")
    if not 0.0 <= q <= 1.0:
        raise InstructkitError(f"quantile {q} is outside [0, 1].")
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def _name(q: float) -> str:
    return f"p{round(q * 100)}"


def summarize(values: Sequence[float], quantiles: Sequence[float] = (0.5, 0.9)) -> dict[str, float]:
    """``{"min", "p50", "p90", "max"}`` (the quantiles asked for), rounded; ``{}`` for none."""
    if not values:
        return {}
    out: dict[str, float] = {"min": round(min(values), _DIGITS)}
    out.update({_name(q): round(percentile(values, q), _DIGITS) for q in quantiles})
    out["max"] = round(max(values), _DIGITS)
    return out


def describe(values: Sequence[float]) -> dict[str, float]:
    """:func:`summarize` at p50, p90 and p99, plus the mean and the total; ``{}`` for none."""
    if not values:
        return {}
    out = summarize(values, (0.5, 0.9, 0.99))
    return {**out, "mean": round(statistics.fmean(values), 1), "total": sum(values)}
