"""`instructkit train ppo` end to end on the tiny model with the IFEval reward: outputs, one-line
errors for rows the verifier cannot read, and a SIGKILLed run that resumes to the same log."""

import json
import sys

import yaml
from click.testing import CliRunner
from killing import complete_rows, kill_when

from instructkit.cli.main import cli

IFEVAL_ROWS = [
    {"prompt": "Describe tea in all lowercase letters.",
     "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]},
    {"prompt": "Name a fruit, in lowercase only.",
     "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]},
    {"prompt": "Say hello and mention the word leaf.",
     "instruction_id_list": ["keywords:existence"], "kwargs": [{"keywords": ["leaf"]}]},
    {"prompt": "Write about rain in lowercase and mention 'cloud'.",
     "instruction_id_list": ["change_case:english_lowercase", "keywords:existence"],
     "kwargs": [{}, {"keywords": ["cloud"]}]},
]  # fmt: skip
SETTINGS = [
    "--model", "tiny-random-llama", "--reward", "ifeval",
    "--set", "max_seq_len=96", "--set", "rollout.batch_size=4", "--set", "rollout.max_new_tokens=8",
    "--set", "train.minibatch_size=2", "--set", "train.epochs=1", "--set", "train.lr=0.01",
]  # fmt: skip


def _prompts(tmp_path, rows=IFEVAL_ROWS):
    path = tmp_path / "ifeval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_train_ppo_with_the_ifeval_reward_writes_its_outputs(tmp_path):
    out = tmp_path / "run"
    args = ["train", "ppo", _prompts(tmp_path), "-o", str(out), *SETTINGS, "--set", "train.steps=2"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "2 PPO steps on 4 prompts (0 rejected)" in r.output
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [0, 1]
    assert all(0.0 <= row["reward_mean"] <= 1.0 for row in rows)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["reward"] == {
        "kind": "ifeval",
        "field": "answer",
        "path": None,
        "judge": None,
        "reference_field": None,
        "shared_base": None,
    }
    assert saved["prompts"].endswith("ifeval.jsonl") and saved["train"]["steps"] == 2
    for name in ("adapter", "value_head.safetensors", "reward.png", "kl.png", "summary.json"):
        assert (out / name).exists(), name


def test_a_row_the_verifier_cannot_read_is_one_line_before_the_model_loads(tmp_path):
    rows = [*IFEVAL_ROWS[:2], {"prompt": "hi", "instruction_id_list": ["no:such"], "kwargs": [{}]}]
    out = tmp_path / "run"
    r = CliRunner().invoke(
        cli, ["train", "ppo", _prompts(tmp_path, rows), "-o", str(out), *SETTINGS]
    )
    assert r.exit_code == 1
    line = r.output.strip()
    assert line.startswith("error:") and "\n" not in line and "ifeval.jsonl:3" in line, line
    assert not out.exists()
    r = CliRunner().invoke(cli, ["train", "ppo", "-o", str(out), "--set", "prompts="])
    assert r.exit_code == 1 and "prompts: a file of prompt rows is needed" in r.output


def test_killed_run_resumes_with_the_same_rollouts(tmp_path):
    prompts = _prompts(tmp_path)
    base = [sys.executable, "-m", "instructkit", "train", "ppo", prompts, *SETTINGS,
            "--set", "train.steps=4", "--set", "train.save_every=2"]  # fmt: skip
    full = CliRunner().invoke(cli, [*base[3:], "-o", str(tmp_path / "full")])
    assert full.exit_code == 0, full.output
    killed = tmp_path / "killed"
    kill_when([*base, "-o", str(killed)], lambda: any(killed.glob("checkpoints/checkpoint-*")))
    assert not (killed / "summary.json").exists(), "the run finished before it was killed"
    r = CliRunner().invoke(cli, [*base[3:], "-o", str(killed)])
    assert r.exit_code == 0 and "resuming from" in r.output, r.output
    a, b = (
        complete_rows(tmp_path / "full" / "metrics.jsonl"),
        complete_rows(killed / "metrics.jsonl"),
    )
    assert [x["step"] for x in b] == [0, 1, 2, 3]
    for x, y in zip(a, b, strict=True):
        for k in ("reward_mean", "kl", "policy_loss", "value_loss", "response_length", "kl_coef"):
            assert abs(x[k] - y[k]) <= 1e-5 + 1e-4 * abs(x[k]), (x["step"], k)


def test_report_to_a_missing_package_is_one_line_naming_it(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "tensorboard" else real(n, *a)
    )
    out = tmp_path / "run"
    args = ["train", "ppo", _prompts(tmp_path), "-o", str(out), *SETTINGS]
    r = CliRunner().invoke(cli, [*args, "--set", "report_to=[tensorboard]"])
    assert r.exit_code == 1 and "pip install tensorboard" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and not out.exists()
