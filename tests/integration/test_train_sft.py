"""`instructkit train sft` end to end on the tiny model: outputs, kill + resume, 2 processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file

from instructkit.cli.main import cli

WORDS = ["apple", "pear", "plum", "fig", "kiwi", "lime", "date", "melon"]


def write_config(tmp: Path, name: str, **train) -> Path:
    data = tmp / "data.jsonl"
    if not data.exists():
        rows = [{"instruction": f"Echo the word {w}.", "input": "", "output": w} for w in WORDS * 6]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "model": "tiny-random-llama",
        "output_dir": str(tmp / name),
        "max_seq_len": 64,
        "datasets": [{"path": str(data)}],
        "merge": False,
        "lora": {"r": 4},
        "train": {"batch_tokens": 128, "lr": 1e-2, "seed": 3, **train},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def adapter(run: Path) -> dict:
    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "instructkit", *args]


def test_train_sft_writes_all_outputs(tmp_path):
    cfg = write_config(tmp_path, "run", epochs=2, eval_every=2)
    r = CliRunner().invoke(
        cli,
        ["train", "sft", "--config", str(cfg), "--set", "eval_ratio=0.1", "--set", "merge=true"],
    )
    assert r.exit_code == 0, r.output
    run = tmp_path / "run"
    for f in [
        "adapter/adapter_config.json",
        "merged/config.json",
        "config.yaml",
        "metrics.jsonl",
        "loss_curve.png",
        "summary.json",
    ]:
        assert (run / f).exists(), f
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("eval_loss" in e for e in events) and any("loss" in e for e in events)
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(run / "merged")
    assert merged.config.num_hidden_layers == 2


def test_config_errors_reported_together(tmp_path):
    cfg = write_config(tmp_path, "bad", lr=-1)
    r = CliRunner().invoke(cli, ["train", "sft", "--config", str(cfg), "--set", "max_seq_lenn=3"])
    assert r.exit_code == 1
    assert "2 config problem(s)" in r.output and "did you mean 'max_seq_len'?" in r.output


def test_killed_process_resumes_to_the_same_weights(tmp_path):
    steps = dict(max_steps=150, save_every=5, keep_checkpoints=2)
    ref_cfg = write_config(tmp_path, "ref", **steps)
    subprocess.run(
        cli_cmd("train", "sft", "--config", str(ref_cfg)), check=True, capture_output=True
    )

    cfg = write_config(tmp_path, "killed", **steps)
    proc = subprocess.Popen(
        cli_cmd("train", "sft", "--config", str(cfg)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpts = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not any(ckpts.glob("checkpoint-*/state.json")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "adapter").exists(), "run finished before it was killed"
    out = subprocess.run(
        cli_cmd("train", "sft", "--config", str(cfg)), check=True, capture_output=True, text=True
    )
    assert "resuming from" in out.stdout
    a, b = adapter(tmp_path / "ref"), adapter(tmp_path / "killed")
    for k in a:
        assert (a[k] - b[k]).abs().max() < 1e-6, k
    steps_logged = [
        json.loads(x)["step"]
        for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps_logged == list(range(1, 151))  # nothing lost, nothing logged twice


@pytest.mark.skipif(sys.platform != "linux", reason="gloo on loopback")
def test_two_processes_equal_one_with_accumulation(tmp_path):
    one = write_config(tmp_path, "one", max_steps=6, grad_accum=2)
    subprocess.run(cli_cmd("train", "sft", "--config", str(one)), check=True, capture_output=True)
    two = write_config(tmp_path, "two", max_steps=6, grad_accum=1)
    # on a CPU-only machine, --multi_gpu just means "torchrun-style processes"; instructkit
    # then forms a gloo group (Accelerator(cpu=True))
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29517",
        "-m",
        "instructkit",
        "train",
        "sft",
        "--config",
        str(two),
    ]
    out = subprocess.run(launch, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    a, b = adapter(tmp_path / "one"), adapter(tmp_path / "two")
    for k in a:
        assert (a[k] - b[k]).abs().max() < 1e-5, k
    ev1 = (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()
    ev2 = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(ev1) == len(ev2) == 6  # only the main process logs
    assert json.loads(ev1[-1])["tokens"] == json.loads(ev2[-1])["tokens"]


def test_full_finetuning_writes_model_and_grad_checkpointing_matches(tmp_path):
    plain = write_config(tmp_path, "plain", max_steps=3)
    ckpt = write_config(tmp_path, "gc", max_steps=3, grad_checkpointing=True)
    for cfg in (plain, ckpt):
        r = CliRunner().invoke(
            cli, ["train", "sft", "--config", str(cfg), "--set", "lora.enabled=false"]
        )
        assert r.exit_code == 0, r.output
    a = load_file(str(tmp_path / "plain" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "gc" / "model" / "model.safetensors"))
    for k in a:
        assert (a[k] - b[k]).abs().max() < 1e-5, k


def test_missing_tracking_backend_is_a_config_error(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "wandb" else real(n, *a)
    )
    cfg = write_config(tmp_path, "wb", max_steps=1)
    r = CliRunner().invoke(
        cli, ["train", "sft", "--config", str(cfg), "--set", "report_to=[wandb]"]
    )
    assert r.exit_code == 1 and "pip install wandb" in r.output


def test_no_trainable_tokens_names_the_cause(tmp_path):
    cfg = write_config(tmp_path, "empty", max_steps=1)
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "sft",
            "--config",
            str(cfg),
            "--set",
            "max_seq_len=16",
            "--set",
            "skip_invalid=true",
        ],
    )
    assert r.exit_code == 1
    assert "max_seq_len=16" in r.output or "no example" in r.output


def test_bundled_recipes_are_valid_configs():
    from instructkit.config import load_config
    from instructkit.train.sft import SFTConfig

    recipes = sorted(Path(__file__).parents[2].joinpath("recipes").glob("sft_*.yaml"))
    assert recipes
    for recipe in recipes:
        cfg = load_config(SFTConfig, recipe)
        assert cfg.datasets, recipe
