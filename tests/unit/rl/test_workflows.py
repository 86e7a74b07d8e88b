"""`train ppo`'s reward source from config: a LoRA reward model on the policy's base model is
served as a second adapter by default, else loaded separately with a line saying why; with
``shared_base: true`` what cannot share is a one-line ConfigError (no model is loaded here)."""

import json

import pytest
from pydantic import ValidationError

import instructkit.rl.workflows as workflows
from instructkit.errors import ConfigError
from instructkit.rl.grpo_job import GRPOJobConfig
from instructkit.rl.workflows import PPOJobConfig, ppo_reward
from instructkit.train.reward_adapter import SharedBaseReward

SEPARATE = object()


def _reward_dir(tmp_path, *, base="tiny-random-llama", lora=True, peft_type="LORA"):
    root = tmp_path / "rm"
    info = {"base_model": base, "template": "tokenizer", "max_seq_len": 64}
    (root / ("adapter" if lora else "model")).mkdir(parents=True)
    (root / "reward_model.json").write_text(json.dumps(info))
    if lora:
        (root / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": peft_type}))
    return root


def _cfg(root, shared_base=None, **over):
    reward = {"kind": "model", "path": str(root), "shared_base": shared_base}
    return PPOJobConfig.model_validate({"model": "tiny-random-llama", "reward": reward, **over})


@pytest.fixture
def separate(monkeypatch):
    monkeypatch.setattr(workflows, "build_reward", lambda spec: SEPARATE)


def test_a_lora_reward_model_on_the_same_base_is_shared_by_default(tmp_path, separate, capsys):
    root = _reward_dir(tmp_path)
    reward = ppo_reward(_cfg(root))
    assert isinstance(reward, SharedBaseReward) and reward.scorer is None  # attached by run_ppo
    assert "as a second adapter on the policy's base model (shared)" in capsys.readouterr().out
    assert isinstance(ppo_reward(_cfg(root, True)), SharedBaseReward)


@pytest.mark.parametrize(
    ("kwargs", "over", "reason"),
    [
        ({"lora": False}, {}, "full-weight reward model"),
        ({"base": "smollm2-135m-instruct"}, {}, "trained on smollm2-135m-instruct"),
        ({"peft_type": "IA3"}, {}, "is IA3, not LoRA"),
        ({}, {"lora": {"enabled": False}}, "the policy trains all weights"),
    ],
)
def test_what_cannot_share_loads_separately_or_fails_when_required(
    tmp_path, separate, capsys, kwargs, over, reason
):
    root = _reward_dir(tmp_path, **kwargs)
    assert ppo_reward(_cfg(root, **over)) is SEPARATE
    out = capsys.readouterr().out
    assert "as a separate model, a second base model in memory" in out and reason in out
    with pytest.raises(ConfigError) as info:
        ppo_reward(_cfg(root, True, **over))
    assert reason in str(info.value) and "\n" not in str(info.value)
    assert "reward.shared_base: false" in info.value.fix


def test_shared_base_false_loads_separately(tmp_path, separate, capsys):
    assert ppo_reward(_cfg(_reward_dir(tmp_path), False)) is SEPARATE
    assert "as a separate model (reward.shared_base: false)" in capsys.readouterr().out


def test_other_kinds_and_other_workflows_ignore_or_refuse_shared_base():
    cfg = PPOJobConfig.model_validate({"reward": {"kind": "ifeval"}})
    assert ppo_reward(cfg).name == "ifeval"
    cfg = PPOJobConfig.model_validate({"reward": {"kind": "ifeval", "shared_base": True}})
    with pytest.raises(ConfigError, match="applies to reward kind 'model', not 'ifeval'"):
        ppo_reward(cfg)
    with pytest.raises(ValidationError, match="shared_base"):  # a PPO-only key
        GRPOJobConfig.model_validate({"reward": {"kind": "model", "shared_base": True}})
