"""Run tracking shared by the RL and preference workflows: samples.jsonl, TRL's log names
mapped to ours, and a missing tracking backend failing before any model loads."""

import importlib.util
import json
from pathlib import Path

import pytest

from instructkit.errors import ConfigError
from instructkit.train import dpo, grpo, ppo, reward
from instructkit.train.tracking import RL_METRICS, MetricsLogger, SampleLogger, truncate_metrics
from instructkit.train.trl_runs import TRL_METRIC_NAMES, metric_names


def test_samples_are_due_every_n_steps_and_at_the_last(tmp_path):
    samples = SampleLogger(tmp_path, every=3, per_step=2)
    assert [s for s in range(8) if samples.due(s, last=s == 7)] == [0, 3, 6, 7]
    assert not any(SampleLogger(tmp_path, every=0).due(s, last=True) for s in range(3))
    samples.log(0, ["p0", "p1", "p2"], ["r0", "r1", "r2"], [1.0, 0.5, 0.0])
    samples.log(3, ["q"], ["<b>&"], [2])
    rows = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert rows == [
        {"step": 0, "prompt": "p0", "response": "r0", "reward": 1.0},
        {"step": 0, "prompt": "p1", "response": "r1", "reward": 0.5},
        {"step": 3, "prompt": "q", "response": "<b>&", "reward": 2.0},
    ]
    truncate_metrics(tmp_path / "samples.jsonl", 2)  # a run resumed after step 2
    assert len((tmp_path / "samples.jsonl").read_text().splitlines()) == 2


def test_trl_names_are_mapped_to_ours_and_kept():
    event = metric_names(TRL_METRIC_NAMES)(
        {
            "reward": 0.5,
            "reward_std": 0.1,
            "completions/mean_length": 7.0,
            "clip_ratio/region_mean": 0.0,
            "eval_rewards/margins": 0.25,
            "rewards/accuracies": float("nan"),
            "epoch": 1,
            "note": "text",
        }
    )
    assert event == {
        "reward": 0.5, "reward_mean": 0.5, "reward_std": 0.1,
        "completions/mean_length": 7.0, "response_length": 7.0,
        "clip_ratio/region_mean": 0.0, "clip_fraction": 0.0,
        "eval_rewards/margins": 0.25, "eval_margin": 0.25,
        "rewards/accuracies": None, "accuracy": None,  # not finite: null, not NaN in JSON
        "epoch": 1.0, "note": "text",
    }  # fmt: skip
    assert set(TRL_METRIC_NAMES.values()) <= set(RL_METRICS)


def test_tensorboard_mirror_uses_the_logged_steps(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = MetricsLogger(tmp_path, ["tensorboard"])
    for step, value in ((0, 1.0), (5, 2.0)):
        logger.log({"step": step, "kl": value, "flag": True, "text": "x", "missing": None})
    logger.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert acc.Tags()["scalars"] == ["kl"]  # numbers only: no bools, text or nulls
    assert [(s.step, s.value) for s in acc.Scalars("kl")] == [(0, 1.0), (5, 2.0)]

    resumed = MetricsLogger(tmp_path, ["tensorboard"], purge_step=5)  # from a checkpoint at 5
    resumed.log({"step": 5, "kl": 3.0})
    resumed.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [(s.step, s.value) for s in acc.Scalars("kl")] == [(0, 1.0), (5, 3.0)]


def _no_wandb(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "wandb" else real(n, *a)
    )


def _model_must_not_load(*args, **kwargs):
    raise AssertionError("a model was loaded before the config was checked")


def _configs(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Say hi.", "answer": "hi"}) + "\n")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "Hi.", "chosen": "hi", "rejected": "HI"}) + "\n")
    common = {"model": "tiny-random-llama", "report_to": ["wandb"]}
    return {
        "ppo": (ppo.PPOConfig(prompts=str(prompts), output_dir=str(tmp_path / "ppo"), **common)),
        "grpo": grpo.GRPORunConfig(data=str(prompts), output_dir=str(tmp_path / "grpo"), **common),
        "dpo": dpo.DPORunConfig(data=str(pairs), output_dir=str(tmp_path / "dpo"), **common),
        "reward": reward.RewardConfig(
            data=str(pairs), output_dir=str(tmp_path / "reward"), **common
        ),
    }


class _AnyReward:
    name = "any"

    def __call__(self, items):
        return [0.0 for _ in items]

    def check(self, row, *, path=None, row_no=None):
        pass


@pytest.mark.parametrize("method", ["ppo", "grpo", "dpo", "reward"])
def test_missing_wandb_is_one_line_before_any_model_loads(tmp_path, monkeypatch, method):
    _no_wandb(monkeypatch)
    module = {"ppo": ppo, "grpo": grpo, "dpo": dpo, "reward": reward}[method]
    monkeypatch.setattr(module, "load_model", _model_must_not_load)
    cfg = _configs(tmp_path)[method]
    runs = {
        "ppo": lambda: ppo.run_ppo(cfg, _AnyReward(), progress=False),
        "grpo": lambda: grpo.run_grpo(cfg, _AnyReward(), progress=False),
        "dpo": lambda: dpo.run_dpo(cfg, progress=False),
        "reward": lambda: reward.run_reward(cfg, progress=False),
    }
    with pytest.raises(ConfigError) as e:
        runs[method]()
    msg = str(e.value)
    assert (
        "\n" not in msg and "report_to 'wandb' needs 'wandb'" in msg and "pip install wandb" in msg
    )
    assert not (tmp_path / method).exists()


def test_docs_list_every_shared_metric_name():
    doc = (Path(__file__).parents[3] / "docs" / "preference.md").read_text("utf-8")
    section = doc.split("## Logged metrics, TensorBoard and the run report")[1].split("\n## ")[0]
    assert not [k for k in RL_METRICS if f"`{k}`" not in section]
    assert all(f"`{trl}`" in section for trl in TRL_METRIC_NAMES)
