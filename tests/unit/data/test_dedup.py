"""Exact and near-duplicate removal of instructkit.data.dedup."""

import pytest

from instructkit.config import load_config
from instructkit.data.dedup import DedupConfig, dedup_records, dedup_text
from instructkit.data.records import Conversation, Message
from instructkit.errors import ConfigError


def alpaca(instruction, input=None, output="ok"):
    return Conversation([Message("user", instruction, input=input), Message("assistant", output)])


def test_dedup_exact_and_near_first_kept():
    records = [
        alpaca("Write a poem about the sea."),  # 0 kept
        alpaca("write a poem, about the SEA!"),  # 1 exact dup of 0
        alpaca("Give three tips for staying healthy."),  # 2 kept
        alpaca("Give three good tips for staying healthy."),  # 3 near dup of 2
        alpaca("Explain photosynthesis to a child."),  # 4 kept
        alpaca("Give three good tips for staying healthy!"),  # 5 exact dup of 3 -> matches 2
    ]
    result = dedup_records(records, DedupConfig(), rows=[10, 11, 12, 13, 14, 15])
    assert result.kept == [records[0], records[2], records[4]]
    got = [(d.index, d.match, d.reason) for d in result.duplicates]
    assert got == [(1, 0, "exact_duplicate"), (3, 2, "near_duplicate"), (5, 2, "exact_duplicate")]
    assert result.duplicates[0].similarity == 1.0
    assert result.duplicates[1].similarity == pytest.approx(2 * 6 / (6 + 7))
    assert result.rejected[1][1] == [
        ("near_duplicate", "ROUGE-L 0.923 >= 0.7 on instruction with row 12")
    ]
    assert result.rejected[2][1][0][1] == (
        "same instruction (normalized) as row 13, itself a near duplicate of row 12"
    )


def test_dedup_field_and_threshold():
    records = [
        alpaca("Classify the sentiment.", "I love it."),
        alpaca("Classify the sentiment.", "Awful."),
    ]
    assert len(dedup_records(records, DedupConfig()).kept) == 1
    assert len(dedup_records(records, DedupConfig(field="instruction+input")).kept) == 2
    assert dedup_text(records[0], "instruction+input") == "Classify the sentiment.\n\nI love it."
    near = [
        alpaca("Give three tips for staying healthy."),
        alpaca("Give three good tips for staying healthy."),
    ]
    assert len(dedup_records(near, DedupConfig(threshold=0.95)).kept) == 2
    with pytest.raises(ConfigError):
        load_config(DedupConfig, threshold=1.5)
