"""`instructkit train dpo` and `train grpo` end to end on the tiny model, from the CLI."""

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from instructkit.cli.main import cli

WORDS = ["apple", "pear", "plum", "fig", "kiwi", "lime", "date", "melon"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_train_dpo_cli(tmp_path):
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [{"prompt": f"Say {w}.", "chosen": w, "rejected": w.upper()} for w in WORDS],
    )
    held = write_jsonl(
        tmp_path / "held.jsonl",
        [{"prompt": f"Say {w}.", "chosen": w, "rejected": w.upper()} for w in WORDS[:2]],
    )
    cfg = tmp_path / "dpo.yaml"
    train = {"max_steps": 2, "batch_size": 4, "lr": 1e-2}
    cfg.write_text(yaml.safe_dump({"max_seq_len": 64, "lora": {"r": 4}, "train": train}))
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", "dpo", str(pairs), "-o", str(out), "--model",
                                 "tiny-random-llama", "--eval", str(held), "--config", str(cfg),
                                 "--set", "loss_type=hinge", "--set", "beta=0.2"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "held-out implicit-reward accuracy 0.000 ->" in r.output
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["loss_type"] == "hinge" and resolved["beta"] == 0.2
    assert resolved["eval_path"] == str(held) and resolved["model"] == "tiny-random-llama"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["n_eval"] == 2


def test_train_dpo_cli_bad_row_is_one_line(tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl",
                        [{"prompt": "Hi.", "chosen": "Yo.", "rejected": "No."},
                         {"prompt": "Hi.", "chosen": "Same.", "rejected": "Same."}])  # fmt: skip
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", "dpo", str(pairs), "-o", str(out), "--model",
                                 "tiny-random-llama"])  # fmt: skip
    assert r.exit_code == 1
    line = r.output.strip()
    assert "\n" not in line and f"{pairs}:2: field 'rejected'" in line, line
    assert not out.exists()  # a run that fails before its first checkpoint leaves nothing


def test_train_grpo_cli_with_an_exact_reward(tmp_path):
    prompts = write_jsonl(tmp_path / "prompts.jsonl",
                          [{"prompt": f"Say {w}.", "answer": w} for w in WORDS[:4]])  # fmt: skip
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", "grpo", str(prompts), "-o", str(out), "--model",
                                 "tiny-random-llama", "--reward", "exact",
                                 "--set", "num_generations=2", "--set", "max_completion_length=4",
                                 "--set", "lora.r=4", "--set", "train.max_steps=1",
                                 "--set", "train.batch_size=2"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "reward exact:answer" in r.output
    assert yaml.safe_load((out / "config.yaml").read_text())["reward"] == {
        "kind": "exact", "field": "answer", "path": None, "judge": None,
        "reference_field": None}  # fmt: skip
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if "reward_mean" in e] == [1]


def test_train_grpo_cli_row_without_the_reward_field(tmp_path):
    prompts = write_jsonl(tmp_path / "prompts.jsonl",
                          [{"prompt": "Say a.", "answer": "a"}, {"prompt": "Say b."}])  # fmt: skip
    r = CliRunner().invoke(cli, ["train", "grpo", str(prompts), "-o", str(tmp_path / "run"),
                                 "--model", "tiny-random-llama", "--reward", "exact"])  # fmt: skip
    assert r.exit_code == 1
    assert f"{prompts}:2: field 'answer'" in r.output and r.output.count("\n") == 1, r.output


def test_killed_dpo_run_resumes_to_the_same_weights(tmp_path):
    """SIGKILL once a checkpoint is complete; the re-run resumes and ends where an uninterrupted
    run ends (same data order and weights), logging every step once."""
    import sys

    from killing import kill_when
    from safetensors.torch import load_file

    pairs = write_jsonl(tmp_path / "pairs.jsonl",
                        [{"prompt": f"Say {w}.", "chosen": w, "rejected": w.upper()}
                         for w in WORDS * 2])  # fmt: skip

    def cmd(name: str) -> list[str]:
        return [sys.executable, "-m", "instructkit", "train", "dpo", str(pairs), "-o",
                str(tmp_path / name), "--model", "tiny-random-llama", "--set", "eval_ratio=0",
                "--set", "lora.r=4", "--set", "train.max_steps=12", "--set", "train.save_every=3",
                "--set", "train.batch_size=2", "--set", "train.lr=1e-2"]  # fmt: skip

    import subprocess

    subprocess.run(cmd("ref"), check=True, capture_output=True)
    ckpts = tmp_path / "killed" / "checkpoints"
    kill_when(cmd("killed"), lambda: any(ckpts.glob("checkpoint-*/trainer_state.json")))
    assert not (tmp_path / "killed" / "adapter").exists(), "run finished before it was killed"
    out = subprocess.run(cmd("killed"), check=True, capture_output=True, text=True)
    assert "resuming from" in out.stdout
    a = load_file(str(tmp_path / "ref" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max() < 1e-5, k
    events = [
        json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [e["step"] for e in events if "loss" in e] == list(range(1, 13))


def test_killed_grpo_run_resumes_with_the_same_rollouts(tmp_path):
    """SIGKILL once a checkpoint is complete; the re-run resumes from it (in a later epoch of
    the prompts) and samples what the uninterrupted run sampled: the same prompts, rewards and
    completion lengths per step, and in the end the same adapter weights."""
    import subprocess
    import sys

    from killing import kill_when
    from safetensors.torch import load_file

    prompts = write_jsonl(tmp_path / "prompts.jsonl",
                          [{"prompt": f"Say {w}.", "answer": w} for w in WORDS[:6]])  # fmt: skip

    def cmd(name: str) -> list[str]:
        return [sys.executable, "-m", "instructkit", "train", "grpo", str(prompts), "-o",
                str(tmp_path / name), "--model", "tiny-random-llama", "--reward", "exact",
                "--set", "num_generations=2", "--set", "max_completion_length=4",
                "--set", "lora.r=4", "--set", "train.max_steps=12", "--set", "train.save_every=3",
                "--set", "train.batch_size=4", "--set", "train.lr=1e-2"]  # fmt: skip

    subprocess.run(cmd("ref"), check=True, capture_output=True)
    ckpts = tmp_path / "killed" / "checkpoints"
    kill_when(cmd("killed"), lambda: any(ckpts.glob("checkpoint-*/trainer_state.json")))
    assert not (tmp_path / "killed" / "adapter").exists(), "run finished before it was killed"
    out = subprocess.run(cmd("killed"), check=True, capture_output=True, text=True)
    assert "resuming from" in out.stdout

    def per_step(name: str) -> list[tuple]:
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        events = [json.loads(x) for x in lines]
        keys = ("step", "reward_mean", "reward_std", "response_length", "num_tokens", "kl")
        return [tuple(e[k] for k in keys) for e in events if "reward_mean" in e]

    ref, killed = per_step("ref"), per_step("killed")
    assert [s[0] for s in killed] == list(range(1, 13))  # every step logged once
    assert killed == ref  # the same rollouts, scored the same
    a = load_file(str(tmp_path / "ref" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max() < 1e-5, k
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["steps"] == 12 and "checkpoint-" in summary["resumed_from"]
