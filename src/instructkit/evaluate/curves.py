"""Adaptation curves: a metric against fine-tuning steps k, with CIs over (task, seed) units.

``eval adapt`` measures, for each initialization (a *system*), each unseen task and each seed,
the query-set score after k adaptation steps; a *unit* is one (task, seed) pair, so every
system is measured on the same units and two systems can be compared paired::

    values = {"base": {0: [0.1, 0.3], 4: [0.5, 0.4]}, "meta": {0: [0.2, 0.2], 4: [0.6, 0.7]}}
    curve = build_curve("lenient", values)          # evaluate.results.Curve
    curve.points["meta"][1].ci_low                  # 95% bootstrap CI of the mean at k = 4

Each point's interval is the percentile bootstrap CI of the mean over units; each comparison
(every system but the first, minus the first, at every k) is
:func:`~instructkit.evaluate.stats.compare_paired` over the same units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from instructkit.evaluate.results import Comparison, Curve, CurveComparison, CurvePoint
from instructkit.evaluate.stats import compare_paired, paired_bootstrap_ci

__all__ = ["build_curve", "mean_ci"]


def mean_ci(
    values: Sequence[float], *, level: float = 0.95, seed: int = 0, n_resamples: int = 2000
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (one value: that value)."""
    if len(values) == 1:
        return float(values[0]), float(values[0])
    # the CI of mean(values - 0), resampling values: the paired bootstrap against zeros
    zeros = np.zeros(len(values))
    return paired_bootstrap_ci(zeros, values, level=level, seed=seed, n_resamples=n_resamples)


def build_curve(
    metric: str,
    values: Mapping[str, Mapping[int, Sequence[float]]],
    *,
    higher_is_better: bool = True,
    level: float = 0.95,
    seed: int = 0,
) -> Curve:
    """The curve of ``metric`` from ``values[system][k]`` = per-unit values (same unit order
    for every system and k); comparisons pair each later system with the first."""
    points = {
        system: [
            CurvePoint(k=k, n=len(v), mean=float(np.mean(v)), ci_low=lo, ci_high=hi)
            for k, v in sorted(by_k.items())
            for lo, hi in [mean_ci(v, level=level, seed=seed)]
        ]
        for system, by_k in values.items()
        if by_k
    }
    systems = list(values)
    comparisons: dict[str, list[CurveComparison]] = {}
    for system in systems[1:]:
        comparisons[system] = [
            CurveComparison(
                k=k,
                comparison=Comparison(
                    **compare_paired(values[systems[0]][k], v, level=level, seed=seed).to_dict()
                ),
            )
            for k, v in sorted(values[system].items())
            if k in values[systems[0]]
        ]
    return Curve(
        metric=metric,
        higher_is_better=higher_is_better,
        level=level,
        points=points,
        comparisons=comparisons,
    )
