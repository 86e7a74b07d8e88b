"""The reward model as a second adapter on the PPO policy's base model (tiny model, seconds):
its scores equal the separate reward model's, it stays frozen through PPO while the policy
learns, the policy's adapter is active after scoring, one base model is loaded, and a run
with it resumes to the uninterrupted log."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import instructkit.train.ppo as ppo_module
import instructkit.train.reward_model as reward_model_module
from instructkit.errors import ConfigError
from instructkit.models import load_model
from instructkit.train.ppo import TIMING_KEYS, PPOConfig, run_ppo
from instructkit.train.reward import RewardConfig, run_reward
from instructkit.train.reward_adapter import (
    POLICY_ADAPTER,
    REWARD_ADAPTER,
    SharedBaseReward,
    shared_base_problem,
)
from instructkit.train.reward_model import load_reward_model
from instructkit.train.rewards import RewardFn, RewardItem
from instructkit.train.sft import AdapterConfig, apply_lora

ITEMS = [
    RewardItem("Tell me about tea.", "tea is nice."),
    RewardItem("Tell me about tea.", "TEA IS NICE."),
    RewardItem("Say hi.", ""),  # empty response
    RewardItem("Tell me about rain. " * 3, "rain " * 40),  # cut to the reward's max_seq_len
]


def _train_reward(tmp: Path, name: str, **over) -> Path:
    rows = [
        {"prompt": f"Tell me about {t}.", "chosen": f"{t} is nice.", "rejected": f"{t.upper()}!"}
        for t in "tea rain cats maps bread music".split()
    ]
    (tmp / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "model": "tiny-random-llama", "data": str(tmp / "pairs.jsonl"),
        "output_dir": str(tmp / name), "max_seq_len": 48, "lora": {"r": 4},
        "train": {"batch_tokens": 512, "lr": 5e-3, "epochs": 1}, **over,
    }  # fmt: skip
    run_reward(RewardConfig.model_validate(cfg))
    return tmp / name


@pytest.fixture(scope="module")
def rm(tmp_path_factory) -> Path:
    return _train_reward(tmp_path_factory.mktemp("rm"), "rm")


def _policy():
    lm, _ = load_model("tiny-random-llama", dtype=torch.float32)
    return apply_lora(lm, AdapterConfig(r=8)).eval()


def _adapter_params(lm, name: str) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in lm.named_parameters() if f".{name}." in k}


def test_is_a_reward_fn_and_needs_attach(rm):
    reward = SharedBaseReward(rm)
    assert isinstance(reward, RewardFn) and reward.name == f"model:{rm}"
    with pytest.raises(RuntimeError, match="attach"):
        reward(ITEMS[:1])


@pytest.mark.parametrize("target", ["all-linear", ["q_proj", "v_proj"]])
def test_scores_equal_the_separate_reward_model(tmp_path, rm, target):
    path = rm if target == "all-linear" else _train_reward(tmp_path, "qv", lora={"target": target})
    separate = load_reward_model(path)(ITEMS)
    policy = _policy()
    reward = SharedBaseReward(path)
    reward.attach(policy)
    shared = reward(ITEMS)
    assert len(shared) == len(ITEMS) and len(set(shared)) > 1
    assert shared == pytest.approx(separate, abs=1e-5)
    # scores come from the reward adapter: the policy's adapter is not used for them
    with torch.no_grad():
        for k, p in policy.named_parameters():
            if f".{POLICY_ADAPTER}." in k and "lora_B" in k:
                p.add_(0.5)
    assert reward(ITEMS) == pytest.approx(separate, abs=1e-5)


def test_policy_adapter_is_active_and_trainable_after_scoring(rm):
    policy = _policy()
    reward = SharedBaseReward(rm)
    reward.attach(policy)
    for _ in range(2):
        assert policy.active_adapter == POLICY_ADAPTER
        named = dict(policy.named_parameters())
        assert all(p.requires_grad for k, p in named.items() if f".{POLICY_ADAPTER}." in k)
        assert not any(p.requires_grad for k, p in named.items() if f".{REWARD_ADAPTER}." in k)
        assert not reward.scorer.model.score.weight.requires_grad
        reward(ITEMS[:2])


def test_policy_adapter_is_restored_when_scoring_fails(rm, monkeypatch):
    policy = _policy()
    reward = SharedBaseReward(rm)
    reward.attach(policy)

    def boom(items):
        assert policy.active_adapter == REWARD_ADAPTER
        raise ValueError("boom")

    monkeypatch.setattr(reward, "scorer", boom)
    with pytest.raises(ValueError, match="boom"):
        reward(ITEMS)
    assert policy.active_adapter == POLICY_ADAPTER


def test_an_adapter_the_base_cannot_host_is_a_config_error(tmp_path, rm):
    policy = _policy()
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ("reward_model.json",):
        (bad / f).write_text((rm / f).read_text())
    (bad / "adapter").mkdir()
    for f in (rm / "adapter").iterdir():
        (bad / "adapter" / f.name).write_bytes(f.read_bytes())
    config = json.loads((bad / "adapter" / "adapter_config.json").read_text())
    config["r"] = 2  # the weights no longer fit the layout
    (bad / "adapter" / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError) as info:
        SharedBaseReward(bad).attach(policy)
    assert "\n" not in str(info.value) and "shared_base: false" in info.value.fix


def test_shared_base_problem_names_each_reason(tmp_path, rm):
    assert shared_base_problem(rm, model="tiny-random-llama", lora=True) is None
    assert "all weights" in shared_base_problem(rm, model="tiny-random-llama", lora=False)
    assert "trained on tiny-random-llama" in shared_base_problem(rm, model="other", lora=True)
    full = tmp_path / "full"
    (full / "model").mkdir(parents=True)
    (full / "reward_model.json").write_text((rm / "reward_model.json").read_text())
    assert "full-weight" in shared_base_problem(full, model="tiny-random-llama", lora=True)


class Failing(SharedBaseReward):
    """Interrupts the run on call ``fail_at`` (1-based), as a kill would."""

    def __init__(self, path, fail_at=None):
        super().__init__(path)
        self.calls, self.fail_at = 0, fail_at

    def __call__(self, items):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return super().__call__(items)


def _ppo_cfg(tmp: Path, out: str) -> PPOConfig:
    (tmp / "p.jsonl").write_text(
        "".join(json.dumps({"prompt": f"Tell me about topic {i}"}) + "\n" for i in range(6))
    )
    return PPOConfig.model_validate({
        "model": "tiny-random-llama", "output_dir": str(tmp / out),
        "prompts": str(tmp / "p.jsonl"), "max_seq_len": 64,
        "rollout": {"batch_size": 4, "max_new_tokens": 6},
        "train": {"steps": 4, "minibatch_size": 2, "epochs": 2, "lr": 0.02, "save_every": 2},
    })  # fmt: skip


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory, rm):
    tmp = tmp_path_factory.mktemp("ppo")
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        for module in (ppo_module, reward_model_module):  # count every base model loaded
            original = module.load_model
            mp.setattr(
                module, "load_model", lambda *a, _f=original, **k: calls.append(a) or _f(*a, **k)
            )
        reward = SharedBaseReward(rm)
        run_ppo(_ppo_cfg(tmp, "run"), reward, progress=False)
    return tmp, reward, calls


def test_ppo_loads_one_base_model_and_trains_only_the_policy(ppo_run, rm):
    tmp, reward, calls = ppo_run
    assert len(calls) == 1  # the policy's; the reward model is an adapter on it
    saved = load_file(str(rm / "adapter" / "adapter_model.safetensors"))
    got = _adapter_params(reward.lm, REWARD_ADAPTER)
    lora = {k: v for k, v in saved.items() if ".lora_" in k}
    assert len(got) == len(lora) > 0
    for key, value in lora.items():
        stem, _, leaf = key.rpartition(".")
        assert torch.equal(got[f"{stem}.{REWARD_ADAPTER}.{leaf}"], value), key
    head = next(v for k, v in saved.items() if k.endswith("score.weight"))
    assert torch.equal(reward.scorer.model.score.weight.detach(), head)
    policy_b = _adapter_params(reward.lm, POLICY_ADAPTER)
    assert any(v.abs().sum() > 0 for k, v in policy_b.items() if "lora_B" in k)  # zero at start
    assert reward.lm.active_adapter == POLICY_ADAPTER
    out = tmp / "run" / "adapter"
    assert not (out / REWARD_ADAPTER).exists()  # only the policy's adapter is written
    assert json.loads((out / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
    written = load_file(str(out / "adapter_model.safetensors"))
    assert all(".lora_" in k for k in written) and len(written) == len(policy_b)


def test_resume_with_the_shared_reward_repeats_the_uninterrupted_run(ppo_run, rm):
    tmp, _, _ = ppo_run
    with pytest.raises(KeyboardInterrupt):  # during step 2, after checkpoint 2
        run_ppo(_ppo_cfg(tmp, "resumed"), Failing(rm, fail_at=3), progress=False)
    result = run_ppo(_ppo_cfg(tmp, "resumed"), SharedBaseReward(rm), progress=False)
    assert result.resumed_from == 2
    full, resumed = (
        [json.loads(x) for x in (tmp / d / "metrics.jsonl").read_text().splitlines()]
        for d in ("run", "resumed")
    )
    assert [r["step"] for r in resumed] == [0, 1, 2, 3]
    for a, b in zip(full, resumed, strict=True):
        for k in set(a) - set(TIMING_KEYS):
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), (a["step"], k)
