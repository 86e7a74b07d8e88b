"""The one percentile (linear interpolation) and the summaries built on it."""

import json

import pytest

from instructkit.data.quantiles import describe, percentile, summarize
from instructkit.data.workflows import stats
from instructkit.errors import InstructkitError


def test_percentile_interpolates_between_ranks_by_hand():
    # sorted 1 2 3 4 10; p90 sits at rank 0.9 * 4 = 3.6: 4 + 0.6 * (10 - 4) = 7.6
    assert percentile([10, 3, 1, 4, 2], 0.9) == pytest.approx(7.6)
    assert percentile([1, 2, 3, 4], 0.5) == 2.5  # rank 1.5: halfway between 2 and 3
    assert percentile([1, 2, 3, 4], 0.0) == 1 and percentile([1, 2, 3, 4], 1.0) == 4
    assert percentile([7], 0.9) == 7
    # 1..10: p99 at rank 8.91 -> 9 + 0.91 * 1
    assert percentile(range(1, 11), 0.99) == pytest.approx(9.91)


def test_percentile_rejects_no_values_and_bad_quantiles():
    with pytest.raises(InstructkitError, match="no values"):
        percentile([], 0.9)
    with pytest.raises(InstructkitError, match="outside"):
        percentile([1, 2], 90)


def test_summaries_round_and_name_their_quantiles():
    assert summarize([10, 3, 1, 4, 2]) == {"min": 1, "p50": 3, "p90": 7.6, "max": 10}
    assert summarize([0.1, 0.2, 0.3]) == {"min": 0.1, "p50": 0.2, "p90": 0.28, "max": 0.3}
    assert list(summarize([1, 2])) == ["min", "p50", "p90", "max"]
    assert summarize([]) == {} and describe([]) == {}
    assert describe(list(range(1, 11))) == {
        "min": 1,
        "p50": 5.5,
        "p90": 9.1,
        "p99": 9.91,
        "max": 10,
        "mean": 5.5,
        "total": 55,
    }


def test_data_stats_uses_the_same_p90(tmp_path):
    """`data stats` once took the nearest rank above (5 here); now the interpolated 3.8."""
    rows = []
    for turns in (1, 1, 1, 2, 5):
        messages = []
        for t in range(turns):
            messages += [
                {"role": "user", "content": f"Question {t}?"},
                {"role": "assistant", "content": f"Answer {t}."},
            ]
        rows.append({"messages": messages})
    src = tmp_path / "chats.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    turns = stats(src).turns  # 1 1 1 2 5: p90 at rank 3.6 -> 2 + 0.6 * 3
    assert turns["p90"] == pytest.approx(3.8) and turns == describe([1, 1, 1, 2, 5])
