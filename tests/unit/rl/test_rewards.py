"""Verifier rewards: IFEval's share of instructions followed, exact answers; rows checked first."""

import pytest

from instructkit.errors import DataFormatError
from instructkit.rl.rewards import RewardSpec, build_reward
from instructkit.train.rewards import RewardFn, RewardItem

LOWER_AND_KEYWORD = {
    "prompt": "Describe tea in lowercase and mention 'leaf'.",
    "instruction_id_list": ["change_case:english_lowercase", "keywords:existence"],
    "kwargs": [{}, {"keywords": ["leaf"]}],
}


def test_ifeval_reward_is_the_share_of_instructions_followed():
    reward = build_reward(RewardSpec(kind="ifeval"))
    assert isinstance(reward, RewardFn)
    prompt = LOWER_AND_KEYWORD["prompt"]
    items = [
        RewardItem(prompt, "tea is a leaf brewed in water.", LOWER_AND_KEYWORD),
        RewardItem(prompt, "Tea is a leaf brewed in water.", LOWER_AND_KEYWORD),
        RewardItem(prompt, "TEA IS HOT.", LOWER_AND_KEYWORD),
        RewardItem(prompt, "   ", LOWER_AND_KEYWORD),
    ]
    assert reward(items) == [1.0, 0.5, 0.0, 0.0]


def test_ifeval_reward_rejects_a_row_without_checks_naming_file_row_field():
    reward = build_reward(RewardSpec(kind="ifeval"))
    row = {"prompt": "hi", "instruction_id_list": ["no:such_check"], "kwargs": [{}]}
    with pytest.raises(DataFormatError) as info:
        reward.check(row, path="p.jsonl", row_no=4)
    assert (info.value.path, info.value.row) == ("p.jsonl", 4)


def test_exact_reward_reads_the_answer_leniently_and_accepts_any_listed_answer():
    reward = build_reward(RewardSpec(kind="exact", field="answer"))
    row = {"prompt": "2+2?", "answer": ["4", "four"]}
    items = [
        RewardItem("2+2?", "4", row),
        RewardItem("2+2?", "Let me think. So the answer is four.", row),
        RewardItem("2+2?", "5", row),
    ]
    assert reward(items) == [1.0, 1.0, 0.0]
    with pytest.raises(DataFormatError, match="reward.field") as info:
        reward.check({"prompt": "x"}, path="p.jsonl", row_no=2)
    assert info.value.field == "answer"
