"""Statistics for honest comparisons of two systems scored on the same items, and rater agreement.

Two systems (model A vs B, instruction A vs B) scored on the *same* items give paired scores; the
item-to-item variation cancels in the differences, so paired tests are far more sensitive than
comparing two means. Everything here is numpy only and deterministic given ``seed``::

    result = compare_paired(scores_a, scores_b)          # PairedComparison
    result.diff, (result.ci_low, result.ci_high)          # mean(b - a) and its bootstrap CI
    result.p_permutation                                  # paired approximate-randomization test
    result.p_mcnemar                                      # only when every score is 0 or 1
    compare_by_group(scores_a, scores_b, ["seen", "unseen", ...])   # plus an "all" entry

    krippendorff_alpha([[1, 1, None], [2, 2, 2], [3, 2, 3]], level="ordinal")

* ``paired_bootstrap_ci``: percentile bootstrap (Efron & Tibshirani 1993) of mean(b - a),
  resampling items with replacement (Koehn 2004, "Statistical Significance Tests for Machine
  Translation Evaluation").
* ``paired_permutation_test``: approximate randomization (Noreen 1989; Riezler & Maxwell 2005,
  "On Some Pitfalls in Automatic Evaluation and Significance Testing for MT"), exact for few items.
* ``mcnemar_test``: McNemar (1947) for paired binary outcomes (correct / wrong).
* ``holm_adjust``: Holm (1979), "A Simple Sequentially Rejective Multiple Test Procedure":
  step-down adjusted p-values for a family of tests (used by reports and instruction comparisons).
* ``krippendorff_alpha``: Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "PairedComparison",
    "paired_bootstrap_ci",
    "paired_permutation_test",
    "mcnemar_test",
    "compare_paired",
    "compare_by_group",
    "holm_adjust",
    "krippendorff_alpha",
]

# Rows of random draws generated at once: bounds memory at ~16 MiB whatever the number of items.
_CHUNK_CELLS = 2_000_000
# 2^24 sign patterns of float64 = 128 MiB; exact enumeration beyond that is not worth it.
_MAX_EXACT_N = 24


@dataclass(frozen=True)
class PairedComparison:
    """Paired comparison of systems A and B on the same ``n`` items (``diff`` = mean_b - mean_a).

    ``wins`` counts items where B scored higher, ``losses`` where A did. ``p_mcnemar`` is None
    unless every score is 0 or 1. ``permutation_exact`` says whether ``p_permutation`` came from
    enumerating all sign flips or from ``n_resamples`` random ones; the bootstrap CI always uses
    ``n_resamples`` resamples drawn with ``seed``.
    """

    n: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    ci_level: float
    p_permutation: float
    p_mcnemar: float | None
    wins: int
    losses: int
    ties: int
    permutation_exact: bool
    n_resamples: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (JSON-serialisable)."""
        return dataclasses.asdict(self)


def _as_pairs(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> np.ndarray:
    """Validate paired scores and return them as a float array of shape (2, n)."""
    try:
        arr_a = np.asarray(a, dtype=np.float64)
        arr_b = np.asarray(b, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"paired scores must be numbers: {exc}") from exc
    if arr_a.ndim != 1 or arr_b.ndim != 1:
        raise ValueError("paired scores must be flat sequences of numbers, one per item")
    if len(arr_a) != len(arr_b):
        raise ValueError(
            f"paired scores must have one score per item for both systems: "
            f"got {len(arr_a)} scores for A and {len(arr_b)} for B"
        )
    if len(arr_a) == 0:
        raise ValueError("paired scores are empty: need at least one item")
    for name, arr in (("A", arr_a), ("B", arr_b)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise ValueError(
                f"score of system {name} at item {bad[0]} is {arr[bad[0]]}, not finite"
            )
    return np.stack([arr_a, arr_b])  # (2, n)


def _check_resampling(n_resamples: int, level: float | None = None) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if level is not None and not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.95), got {level}")


def paired_bootstrap_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 10000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(b - a), resampling items (pairs) with replacement.

    Efron & Tibshirani (1993), ch. 13; Koehn (2004) for its use on paired system scores. When all
    differences are equal the bootstrap distribution is a single point and the CI is that point.
    """
    _check_resampling(n_resamples, level)
    a_arr, b_arr = _as_pairs(a, b)
    d = b_arr - a_arr  # (n,)
    if np.all(d == d[0]):
        return float(d[0]), float(d[0])
    rng = np.random.default_rng(seed)
    n = len(d)
    chunk = max(1, _CHUNK_CELLS // n)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, chunk):
        rows = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(rows, n))  # (rows, n)
        means[start : start + rows] = d[idx].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def _exact_sign_flip_sums(d: np.ndarray) -> np.ndarray:
    """Sum of ``s * d`` for all 2^m sign vectors s in {-1, +1}^m; shape (2^m,)."""
    sums = np.zeros(1)
    for value in d:
        sums = np.concatenate([sums + value, sums - value])
    return sums


def paired_permutation_test(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 10000,
    seed: int = 0,
    exact_max_n: int = 20,
) -> float:
    """Two-sided p-value of mean(b - a) = 0 by paired approximate randomization.

    Noreen (1989), "Computer-Intensive Methods for Testing Hypotheses"; Riezler & Maxwell (2005).
    Under H0 the labels A/B of each item are exchangeable, so each difference's sign is flipped at
    random. Pairs with zero difference contribute nothing and are dropped. When at most
    ``exact_max_n`` (<= 24) nonzero differences remain, all 2^m sign flips are enumerated and
    p = count(|T*| >= |T|) / 2^m exactly; otherwise ``n_resamples`` random flips give
    p = (count + 1) / (n_resamples + 1), which is never 0 (Phipson & Smyth 2010).
    """
    _check_resampling(n_resamples)
    if not 0 <= exact_max_n <= _MAX_EXACT_N:
        raise ValueError(f"exact_max_n must be between 0 and {_MAX_EXACT_N}, got {exact_max_n}")
    a_arr, b_arr = _as_pairs(a, b)
    d = (b_arr - a_arr)[b_arr != a_arr]  # (m,)
    if d.size == 0:
        return 1.0
    observed = abs(float(d.sum()))
    # Flipped sums add the same numbers in another order: allow for rounding when comparing.
    threshold = observed - 1e-9 * float(np.abs(d).sum())
    if d.size <= exact_max_n:
        sums = _exact_sign_flip_sums(d)
        return float(np.count_nonzero(np.abs(sums) >= threshold) / sums.size)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // d.size)
    count = 0
    for start in range(0, n_resamples, chunk):
        rows = min(chunk, n_resamples - start)
        signs = rng.integers(0, 2, size=(rows, d.size)) * 2 - 1  # (rows, m)
        count += int(np.count_nonzero(np.abs(signs @ d) >= threshold))
    return (count + 1) / (n_resamples + 1)


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def mcnemar_test(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    exact: bool | None = None,
) -> float:
    """Two-sided McNemar (1947) p-value for paired binary outcomes (1 = correct, 0 = wrong).

    Only the discordant pairs count: b01 (A wrong, B right) and b10 (A right, B wrong). With
    ``exact=None`` the exact binomial test (b01 ~ Bin(b01 + b10, 1/2)) is used when
    b01 + b10 < 25, else the chi-square test with Edwards' continuity correction,
    max(|b01 - b10| - 1, 0)^2 / (b01 + b10) on 1 degree of freedom. p = 1.0 with no discordant
    pairs.
    """
    a_arr, b_arr = _as_pairs(a, b)
    if not (_is_binary(a_arr) and _is_binary(b_arr)):
        raise ValueError("McNemar's test needs binary scores (0 or 1) for every item")
    b01 = int(np.count_nonzero((a_arr == 0) & (b_arr == 1)))
    b10 = int(np.count_nonzero((a_arr == 1) & (b_arr == 0)))
    discordant = b01 + b10
    if discordant == 0:
        return 1.0
    if exact is None:
        exact = discordant < 25
    if exact:
        # Exact integer arithmetic: the binomial tail is a ratio of (big) integers.
        tail = sum(math.comb(discordant, k) for k in range(min(b01, b10) + 1))
        return float(min(1.0, 2 * tail / 2**discordant))
    stat = max(abs(b01 - b10) - 1, 0) ** 2 / discordant
    return math.erfc(math.sqrt(stat / 2.0))  # chi-square(1) survival function


def compare_paired(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 10000,
    level: float = 0.95,
    seed: int = 0,
    exact_max_n: int = 20,
) -> PairedComparison:
    """Mean difference, bootstrap CI, permutation p, McNemar p (binary scores) and win/loss/tie."""
    a_arr, b_arr = _as_pairs(a, b)
    binary = _is_binary(a_arr) and _is_binary(b_arr)
    low, high = paired_bootstrap_ci(a_arr, b_arr, n_resamples=n_resamples, level=level, seed=seed)
    p_perm = paired_permutation_test(
        a_arr, b_arr, n_resamples=n_resamples, seed=seed, exact_max_n=exact_max_n
    )
    mean_a, mean_b = float(a_arr.mean()), float(b_arr.mean())
    return PairedComparison(
        n=len(a_arr),
        mean_a=mean_a,
        mean_b=mean_b,
        diff=float((b_arr - a_arr).mean()),
        ci_low=low,
        ci_high=high,
        ci_level=level,
        p_permutation=p_perm,
        p_mcnemar=mcnemar_test(a_arr, b_arr) if binary else None,
        wins=int(np.count_nonzero(b_arr > a_arr)),
        losses=int(np.count_nonzero(b_arr < a_arr)),
        ties=int(np.count_nonzero(b_arr == a_arr)),
        permutation_exact=int(np.count_nonzero(b_arr != a_arr)) <= exact_max_n,
        n_resamples=n_resamples,
        seed=seed,
    )


def compare_by_group(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    groups: Sequence[str],
    *,
    n_resamples: int = 10000,
    level: float = 0.95,
    seed: int = 0,
    exact_max_n: int = 20,
) -> dict[str, PairedComparison]:
    """``compare_paired`` over all items ("all") and within each group, in order of appearance.

    ``groups`` names one group per item (e.g. "seen" / "unseen" tasks); "all" is reserved.
    """
    a_arr, b_arr = _as_pairs(a, b)
    labels = [str(g) for g in groups]
    if len(labels) != len(a_arr):
        raise ValueError(f"groups must name one group per item: got {len(labels)} for {len(a_arr)}")
    if "all" in labels:
        raise ValueError('group name "all" is reserved for the comparison over every item')

    def compare(x: np.ndarray, y: np.ndarray) -> PairedComparison:
        return compare_paired(
            x, y, n_resamples=n_resamples, level=level, seed=seed, exact_max_n=exact_max_n
        )

    out = {"all": compare(a_arr, b_arr)}
    names = np.asarray(labels, dtype=object)
    for name in dict.fromkeys(labels):
        mask = names == name
        out[name] = compare(a_arr[mask], b_arr[mask])
    return out


def holm_adjust(pvalues: Sequence[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values, in the order given.

    With p sorted ascending, p_(1) <= ... <= p_(m): adj_(i) = max_{j <= i} min(1, (m - j + 1)
    p_(j)). Calling adj < alpha significant keeps the family-wise error rate at most alpha under
    any dependence between the tests.
    """
    for i, p in enumerate(pvalues):
        if not 0.0 <= p <= 1.0:  # also rejects NaN
            raise ValueError(f"p-value {i} is {p}, not between 0 and 1")
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda k: pvalues[k])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def _pairable_units(ratings: Sequence[Sequence[object]] | np.ndarray) -> list[list[Hashable]]:
    """Non-missing values of each unit that has at least two of them (the pairable values)."""
    units = []
    for row in ratings:
        values = [v.item() if isinstance(v, np.generic) else v for v in row if not _is_missing(v)]
        if len(values) >= 2:
            units.append(values)
    return units


def _coincidences(units: list[list[Hashable]], index: dict[Hashable, int]) -> np.ndarray:
    """Coincidence matrix o_ck = sum_u (#pairs (c, k) of different raters in u) / (m_u - 1)."""
    counts = np.zeros((len(units), len(index)))  # (U, V)
    for u, values in enumerate(units):
        for v in values:
            counts[u, index[v]] += 1
    weights = 1.0 / (counts.sum(axis=1) - 1.0)  # (U,)
    weighted = counts * weights[:, None]
    coincidences: np.ndarray = weighted.T @ counts - np.diag(weighted.sum(axis=0))  # (V, V)
    return coincidences


def _delta_squared(values: np.ndarray, n_c: np.ndarray, level: str) -> np.ndarray:
    """Difference function delta^2_ck of Krippendorff (2011), section C; shape (V, V)."""
    delta: np.ndarray
    if level == "nominal":
        delta = 1.0 - np.eye(len(n_c))
        return delta
    if level == "interval":
        delta = (values[:, None] - values[None, :]) ** 2
        return delta
    if level == "ratio":
        total = values[:, None] + values[None, :]
        diff = values[:, None] - values[None, :]
        delta = np.divide(diff, total, out=np.zeros_like(diff), where=total != 0) ** 2
        return delta
    # ordinal: (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2 over the ranks of the sorted values.
    cum = np.cumsum(n_c)
    ranks = np.arange(len(n_c))
    lo = np.minimum(ranks[:, None], ranks[None, :])
    hi = np.maximum(ranks[:, None], ranks[None, :])
    between = cum[hi] - cum[lo] + n_c[lo]
    delta = (between - (n_c[lo] + n_c[hi]) / 2.0) ** 2
    return delta


def krippendorff_alpha(
    ratings: Sequence[Sequence[object]] | np.ndarray,
    level: Literal["nominal", "ordinal", "interval", "ratio"] = "interval",
) -> float:
    """Krippendorff's alpha = 1 - D_o / D_e for a units x raters matrix (None / NaN = missing).

    Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", coincidence-matrix form:
    alpha = 1 - (n - 1) * sum_ck o_ck delta^2_ck / sum_ck n_c n_k delta^2_ck. Units with fewer
    than two ratings are dropped. Nominal labels may be any hashable values (e.g. strings); the
    other levels need real numbers (ratio: non-negative). 1 is perfect agreement, 0 agreement at
    chance level. Raises ValueError when alpha is undefined: fewer than two pairable values, or
    all pairable values identical (no variation, D_e = 0).
    """
    if level not in ("nominal", "ordinal", "interval", "ratio"):
        raise ValueError(f"level must be nominal, ordinal, interval or ratio, got {level!r}")
    units = _pairable_units(ratings)
    if not units:
        raise ValueError(
            "Krippendorff's alpha is undefined: fewer than 2 pairable values "
            "(no unit has ratings from at least two raters)"
        )
    labels: list[Hashable] = list(dict.fromkeys(v for values in units for v in values))
    if level != "nominal":
        if not all(isinstance(v, (int, float)) for v in labels):
            raise ValueError(f"{level} alpha needs numeric ratings; use level='nominal' for labels")
        numbers = sorted(float(v) for v in labels if isinstance(v, (int, float)))
        if level == "ratio" and numbers[0] < 0:
            raise ValueError("ratio alpha needs non-negative ratings (a ratio scale has a true 0)")
        labels = list(numbers)  # sorted, as the ordinal ranks need
    if len(labels) < 2:
        raise ValueError(
            "Krippendorff's alpha is undefined: all pairable values are identical "
            f"({labels[0]!r}), so there is no variation to agree on"
        )
    o = _coincidences(units, {v: i for i, v in enumerate(labels)})
    n_c = o.sum(axis=1)  # (V,)
    # Nominal labels only need distinct positions; the other levels use the values themselves.
    values = np.arange(len(labels), dtype=np.float64)
    if level != "nominal":
        values = np.asarray(labels, dtype=np.float64)
    delta = _delta_squared(values, n_c, level)
    expected = float(np.outer(n_c, n_c).ravel() @ delta.ravel())
    if expected == 0.0:
        raise ValueError("Krippendorff's alpha is undefined: expected disagreement D_e is 0")
    return float(1.0 - (n_c.sum() - 1.0) * float(o.ravel() @ delta.ravel()) / expected)
