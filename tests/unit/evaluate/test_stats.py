import json
import math

import numpy as np
import pytest

from instructkit.evaluate.stats import (
    PairedComparison,
    compare_by_group,
    compare_paired,
    holm_adjust,
    krippendorff_alpha,
    mcnemar_test,
    paired_bootstrap_ci,
    paired_permutation_test,
)


def _binary_pairs(b01: int, b10: int, both_right: int = 3, both_wrong: int = 2):
    """Scores with b01 items A wrong / B right and b10 items A right / B wrong."""
    a = [0] * b01 + [1] * b10 + [1] * both_right + [0] * both_wrong
    b = [1] * b01 + [0] * b10 + [1] * both_right + [0] * both_wrong
    return a, b


# --- input validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        ([1, 2], [1], "1 for B"),
        ([], [], "empty"),
        ([1.0, float("nan")], [1, 2], "system A at item 1"),
        ([1.0, 2.0], [1, float("inf")], "system B at item 1"),
        (["x"], [1], "must be numbers"),
        ([[1, 2]], [[1, 2]], "flat"),
    ],
)
def test_paired_inputs_are_validated(a, b, match):
    with pytest.raises(ValueError, match=match):
        compare_paired(a, b)


def test_resampling_arguments_are_validated():
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap_ci([0, 1], [1, 1], level=95)
    with pytest.raises(ValueError, match="n_resamples"):
        paired_permutation_test([0, 1], [1, 1], n_resamples=0)
    with pytest.raises(ValueError, match="exact_max_n"):
        paired_permutation_test([0, 1], [1, 1], exact_max_n=40)


# --- permutation test -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("diffs", "expected"),
    [
        # sign-flip sums of [1, 1, 1]: 3, 1, 1, -1, 1, -1, -1, -3 -> |T| >= 3 twice in 8
        ([1, 1, 1], 2 / 8),
        ([1, 1, 1, 0, 0], 2 / 8),  # zero differences contribute nothing
        ([1, 2], 2 / 4),  # sums 3, 1, -1, -3
        ([2, 1, -1], 6 / 8),  # T = 2; sums 4, 2, 2, 0, 0, -2, -2, -4
        ([0.5], 1.0),  # one pair: both signs reach |T|
        ([0, 0], 1.0),  # no differences at all
    ],
)
def test_permutation_exact_hand_computed(diffs, expected):
    a = np.zeros(len(diffs))
    assert paired_permutation_test(a, a + np.array(diffs)) == pytest.approx(expected, abs=1e-12)


def test_permutation_is_symmetric_in_a_and_b():
    a, b = [0.1, 0.5, 0.2, 0.9], [0.4, 0.7, 0.2, 0.3]
    assert paired_permutation_test(a, b) == paired_permutation_test(b, a)


def test_permutation_monte_carlo_floor_is_one_over_r_plus_one():
    # 30 equal differences: only the all-plus / all-minus flips (2 in 2^30) reach |T|, so in
    # 999 random flips none does and p = (0 + 1) / (999 + 1).
    p = paired_permutation_test([0] * 30, [1] * 30, n_resamples=999, exact_max_n=0)
    assert p == pytest.approx(1 / 1000)


def test_permutation_monte_carlo_agrees_with_exact():
    rng = np.random.default_rng(1)
    a = rng.normal(size=14)
    b = a + rng.normal(0.4, 1.0, size=14)
    exact = paired_permutation_test(a, b)
    r = 20000
    approx = paired_permutation_test(a, b, n_resamples=r, exact_max_n=0, seed=3)
    assert 0.01 < exact < 0.99  # a case where sampling error is visible
    se = math.sqrt(exact * (1 - exact) / r)
    assert abs(approx - exact) < 4 * se


def test_permutation_monte_carlo_is_deterministic_by_seed():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=40), rng.normal(size=40)
    assert paired_permutation_test(a, b, seed=5) == paired_permutation_test(a, b, seed=5)


def test_permutation_exact_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = rng.normal(size=10)
    b = a + rng.normal(0.5, 1.0, size=10)
    ref = stats.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        alternative="two-sided",
        n_resamples=np.inf,
        vectorized=True,
    )
    assert paired_permutation_test(a, b) == pytest.approx(ref.pvalue, abs=1e-12)


# --- bootstrap CI ---------------------------------------------------------------------------


def test_bootstrap_constant_difference_is_a_point():
    a = [0.1, 0.7, 0.3]
    b = [x + 0.25 for x in a]
    low, high = paired_bootstrap_ci([0, 0, 0, 0], [2, 2, 2, 2])
    assert (low, high) == (2.0, 2.0)
    low, high = paired_bootstrap_ci(a, b)  # differences 0.25 up to rounding
    assert low == pytest.approx(0.25)
    assert high == pytest.approx(0.25)


def test_bootstrap_two_items_hand_computed():
    # diffs [0, 1]: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the
    # 2.5% / 97.5% quantiles are 0 and 1, and the 30% / 70% quantiles both 0.5.
    assert paired_bootstrap_ci([0, 0], [0, 1]) == (0.0, 1.0)
    assert paired_bootstrap_ci([0, 0], [0, 1], level=0.4) == (0.5, 0.5)


def test_bootstrap_ci_contains_true_difference():
    rng = np.random.default_rng(3)
    a = rng.normal(size=300)
    b = a + 0.5 + rng.normal(0, 0.3, size=300)
    low, high = paired_bootstrap_ci(a, b, n_resamples=4000)
    assert low < 0.5 < high
    assert low < float(np.mean(b - a)) < high
    assert high - low < 0.15  # 2 * 1.96 * 0.3 / sqrt(300) ~ 0.068


def test_bootstrap_is_deterministic_by_seed():
    a, b = [0, 1, 0, 1, 1, 0], [1, 1, 0, 0, 1, 1]
    assert paired_bootstrap_ci(a, b, seed=7) == paired_bootstrap_ci(a, b, seed=7)


def test_bootstrap_matches_scipy_percentile():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(4)
    a = rng.normal(size=60)
    b = a + rng.normal(0.2, 1.0, size=60)
    ref = stats.bootstrap(
        (a, b),
        lambda x, y, axis: np.mean(y - x, axis=axis),
        paired=True,
        vectorized=True,
        method="percentile",
        confidence_level=0.9,
        n_resamples=20000,
        rng=np.random.default_rng(0),
    )
    low, high = paired_bootstrap_ci(a, b, level=0.9, n_resamples=20000)
    # Different random streams: agree within Monte Carlo error (sd of diffs / sqrt(60) ~ 0.13).
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.015)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.015)


# --- McNemar --------------------------------------------------------------------------------


def test_mcnemar_exact_hand_computed():
    # b01 = 1, b10 = 6: p = 2 * (C(7,0) + C(7,1)) / 2^7 = 2 * 8 / 128
    a, b = _binary_pairs(1, 6)
    assert mcnemar_test(a, b) == pytest.approx(0.125, abs=1e-15)
    assert mcnemar_test(b, a) == pytest.approx(0.125, abs=1e-15)


def test_mcnemar_exact_capped_at_one_and_no_discordant_pairs():
    # b01 = b10 = 3: 2 * (1 + 6 + 15 + 20) / 64 > 1 -> 1
    assert mcnemar_test(*_binary_pairs(3, 3)) == 1.0
    assert mcnemar_test(*_binary_pairs(0, 0)) == 1.0


def test_mcnemar_exact_matches_scipy_binomtest():
    stats = pytest.importorskip("scipy.stats")
    for b01, b10 in [(1, 6), (2, 9), (10, 4), (30, 45)]:
        ref = stats.binomtest(b01, b01 + b10, 0.5).pvalue
        assert mcnemar_test(*_binary_pairs(b01, b10), exact=True) == pytest.approx(ref, rel=1e-9)


def test_mcnemar_chi_square_hand_computed():
    # b01 + b10 = 25 switches to chi-square: (|5 - 20| - 1)^2 / 25 = 7.84 on 1 dof
    a, b = _binary_pairs(5, 20)
    expected = math.erfc(math.sqrt(7.84 / 2))  # P(chi2_1 > 7.84) = P(|Z| > 2.8)
    assert mcnemar_test(a, b) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.005110, abs=1e-6)
    stats = pytest.importorskip("scipy.stats")
    assert mcnemar_test(a, b) == pytest.approx(stats.chi2.sf(7.84, 1), rel=1e-9)
    # forced chi-square on few discordant pairs: (|1 - 6| - 1)^2 / 7 = 16 / 7
    assert mcnemar_test(*_binary_pairs(1, 6), exact=False) == pytest.approx(
        stats.chi2.sf(16 / 7, 1), rel=1e-9
    )


def test_mcnemar_rejects_non_binary_scores():
    with pytest.raises(ValueError, match="binary"):
        mcnemar_test([0, 0.5], [1, 1])


# --- compare_paired / compare_by_group ------------------------------------------------------


def test_compare_paired_binary():
    a, b = _binary_pairs(1, 6)  # 12 items: A right on 9, B right on 4
    result = compare_paired(a, b)
    assert isinstance(result, PairedComparison)
    assert (result.n, result.wins, result.losses, result.ties) == (12, 1, 6, 5)
    assert result.mean_a == pytest.approx(9 / 12)
    assert result.mean_b == pytest.approx(4 / 12)
    assert result.diff == pytest.approx(-5 / 12)
    assert result.ci_low <= result.diff <= result.ci_high
    assert result.ci_level == 0.95
    assert result.p_mcnemar == pytest.approx(0.125)
    # sign flips of one +1 and six -1 (|T| = 5): |s_0 - S| >= 5 needs S = +-6 (4 patterns) or
    # S = +-4 with s_0 against it (2 x 6 patterns): 16 / 2^7, the exact McNemar (sign) test
    assert result.p_permutation == pytest.approx(16 / 128)
    assert result.permutation_exact is True
    assert json.loads(json.dumps(result.to_dict()))["wins"] == 1


def test_compare_paired_real_scores_have_no_mcnemar():
    result = compare_paired([0.2, 0.4, 0.9], [0.3, 0.4, 0.5], exact_max_n=0, n_resamples=99)
    assert result.p_mcnemar is None
    assert result.permutation_exact is False
    assert (result.wins, result.losses, result.ties) == (1, 1, 1)
    assert result.diff == pytest.approx(-0.1)


def test_compare_by_group():
    a = [0, 1, 0, 1, 0.5, 0.2]
    b = [1, 1, 1, 0, 0.5, 0.9]
    groups = ["seen", "unseen", "seen", "unseen", "seen", "unseen"]
    out = compare_by_group(a, b, groups, n_resamples=500)
    assert list(out) == ["all", "seen", "unseen"]
    assert out["all"] == compare_paired(a, b, n_resamples=500)
    assert out["seen"] == compare_paired([0, 0, 0.5], [1, 1, 0.5], n_resamples=500)
    assert out["unseen"].n == 3
    assert out["unseen"].diff == pytest.approx((0 - 1 + 0.7) / 3)


def test_compare_by_group_validates_groups():
    with pytest.raises(ValueError, match="one group per item"):
        compare_by_group([0, 1], [1, 1], ["seen"])
    with pytest.raises(ValueError, match="reserved"):
        compare_by_group([0, 1], [1, 1], ["all", "seen"])


# --- Krippendorff's alpha -------------------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section E: 4 observers
# (rows) x 12 units (columns), None = missing.
_PAPER = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]
_PAPER_UNITS = [list(unit) for unit in zip(*_PAPER, strict=True)]


@pytest.mark.parametrize(
    ("level", "expected"),
    [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)],
)
def test_krippendorff_paper_example(level, expected):
    assert krippendorff_alpha(_PAPER_UNITS, level) == pytest.approx(expected, abs=5e-4)
    as_array = np.array(_PAPER, dtype=float).T  # NaN marks missing
    assert krippendorff_alpha(as_array, level) == pytest.approx(expected, abs=5e-4)


def test_krippendorff_nominal_paper_exact_fraction():
    # Paper: n = 40 pairable values, n_c = 9, 13, 10, 5, 3 for values 1..5 and 8 off-diagonal
    # coincidences (units 2, 6, 8 give 2 + 4 + 2): alpha = 1 - (n - 1) * 8 / (n^2 - sum n_c^2)
    assert krippendorff_alpha(_PAPER_UNITS, "nominal") == pytest.approx(1 - 39 * 8 / 1216)


def test_krippendorff_hand_computed_small():
    # units (1, 2) and (1, 1): o_11 = 2, o_12 = o_21 = 1; n_1 = 3, n_2 = 1, n = 4
    # alpha = 1 - 3 * (1 + 1) / (2 * 3 * 1) = 0
    assert krippendorff_alpha([[1, 2], [1, 1]], "nominal") == pytest.approx(0.0)
    # units (1, 2) and (2, 1): o_12 = o_21 = 2, n_1 = n_2 = 2: alpha = 1 - 3 * 4 / 8 = -0.5
    assert krippendorff_alpha([[1, 2], [2, 1]], "interval") == pytest.approx(-0.5)


def test_krippendorff_perfect_agreement_and_labels():
    ratings = [[1, 1, None], [3, 3, 3], [2, None, 2], [5, 5, 5]]
    for level in ("nominal", "ordinal", "interval", "ratio"):
        assert krippendorff_alpha(ratings, level) == pytest.approx(1.0)
    labels = [["good", "good"], ["bad", "good"], ["bad", "bad"]]
    numbers = [[1, 1], [0, 1], [0, 0]]
    assert krippendorff_alpha(labels, "nominal") == pytest.approx(
        krippendorff_alpha(numbers, "nominal")
    )


def test_krippendorff_drops_units_with_one_rating():
    with_singles = _PAPER_UNITS + [[7, None, None, None], [None] * 4]
    assert krippendorff_alpha(with_singles) == krippendorff_alpha(_PAPER_UNITS)


@pytest.mark.parametrize(
    ("ratings", "level", "match"),
    [
        ([[1, None], [None, 2]], "interval", "fewer than 2 pairable"),
        ([[3, 3], [3, 3, None]], "nominal", "identical"),
        ([["a", "b"]], "interval", "numeric"),
        ([[-1, 2]], "ratio", "non-negative"),
        ([[1, 2]], "cardinal", "level"),
    ],
)
def test_krippendorff_undefined_or_invalid(ratings, level, match):
    with pytest.raises(ValueError, match=match):
        krippendorff_alpha(ratings, level)


@pytest.mark.parametrize(
    ("pvalues", "expected"),
    [
        # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(0.06, 1*0.04)
        ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
        ([0.5, 0.6], [1.0, 1.0]),  # 2 * 0.5 caps at 1; the next may not fall below it
        ([0.01, 0.01], [0.02, 0.02]),
        ([0.2], [0.2]),
        ([], []),
    ],
)
def test_holm_adjust_matches_hand_computed_values(pvalues, expected):
    assert holm_adjust(pvalues) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [1.5, -0.1, math.nan])
def test_holm_adjust_rejects_values_that_are_not_p_values(bad):
    with pytest.raises(ValueError, match="p-value 1"):
        holm_adjust([0.1, bad])
