"""`instructkit train ppo` with a LoRA reward model on the policy's base model (tiny model): the
run says it shares the base, a SIGKILLed run resumes to the same log, and `shared_base: true`
where it cannot share is one line before any model loads."""

import json
import sys

import pytest
from click.testing import CliRunner
from killing import complete_rows, kill_when

from instructkit.cli.main import cli
from instructkit.train.reward import RewardConfig, run_reward

SETTINGS = [
    "--model", "tiny-random-llama", "--set", "reward.kind=model",
    "--set", "max_seq_len=64", "--set", "rollout.batch_size=4", "--set", "rollout.max_new_tokens=6",
    "--set", "train.minibatch_size=2", "--set", "train.epochs=1", "--set", "train.lr=0.01",
]  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ppo_rm")
    pairs = [
        {"prompt": f"Tell me about {t}.", "chosen": f"{t} is nice.", "rejected": f"{t.upper()}!"}
        for t in "tea rain cats maps".split()
    ]
    (tmp / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))
    cfg = {
        "model": "tiny-random-llama", "data": str(tmp / "pairs.jsonl"),
        "output_dir": str(tmp / "rm"), "max_seq_len": 48, "lora": {"r": 4},
        "train": {"batch_tokens": 512, "epochs": 1},
    }  # fmt: skip
    run_reward(RewardConfig.model_validate(cfg))
    prompts = tmp / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Say hi {i}."}) + "\n" for i in range(4)))
    return str(prompts), str(tmp / "rm")


def test_killed_run_with_the_shared_reward_model_resumes_to_the_same_log(tmp_path, files):
    prompts, rm = files
    base = [sys.executable, "-m", "instructkit", "train", "ppo", prompts, *SETTINGS,
            "--set", f"reward.path={rm}", "--set", "train.steps=4",
            "--set", "train.save_every=2"]  # fmt: skip
    full = CliRunner().invoke(cli, [*base[3:], "-o", str(tmp_path / "full")])
    assert full.exit_code == 0, full.output
    assert f"reward: {rm} as a second adapter on the policy's base model (shared)" in full.output
    killed = tmp_path / "killed"
    kill_when([*base, "-o", str(killed)], lambda: any(killed.glob("checkpoints/checkpoint-*")))
    assert not (killed / "summary.json").exists(), "the run finished before it was killed"
    r = CliRunner().invoke(cli, [*base[3:], "-o", str(killed)])
    assert r.exit_code == 0 and "resuming from" in r.output and "(shared)" in r.output, r.output
    a, b = (complete_rows(d / "metrics.jsonl") for d in (tmp_path / "full", killed))
    assert [x["step"] for x in b] == [0, 1, 2, 3]
    assert len({x["reward_mean"] for x in a}) > 1  # the reward model scores, and they vary
    for x, y in zip(a, b, strict=True):
        for k in ("reward_mean", "kl", "policy_loss", "value_loss", "response_length", "kl_coef"):
            assert abs(x[k] - y[k]) <= 1e-5 + 1e-4 * abs(x[k]), (x["step"], k)


def test_shared_base_true_where_it_cannot_share_is_one_line(tmp_path, files):
    prompts, rm = files
    out = tmp_path / "run"
    args = ["train", "ppo", prompts, "-o", str(out), *SETTINGS, "--set", f"reward.path={rm}",
            "--set", "reward.shared_base=true", "--set", "lora.enabled=false"]  # fmt: skip
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1
    line = r.output.strip()
    assert line.startswith("error: reward.shared_base:") and "\n" not in line, line
    assert "the policy trains all weights" in line and "reward.shared_base: false" in line
    assert not out.exists()
