"""`instructkit train sft` end to end on the tiny model: outputs, kill + resume, 2 processes."""

import json
import os
import re
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
    import yaml

    from instructkit.config import load_config
    from instructkit.train.sft import SFTConfig

    recipes = sorted(Path(__file__).parents[2].joinpath("recipes").glob("sft_*.yaml"))
    sft_configs = [r for r in recipes if "stages" not in yaml.safe_load(r.read_text("utf-8"))]
    assert len(sft_configs) >= 2  # the `instructkit run` recipes have stages; tested elsewhere
    for recipe in sft_configs:
        cfg = load_config(SFTConfig, recipe)
        assert cfg.datasets, recipe


def test_lora_run_writes_no_merged_model_by_default(tmp_path):
    cfg = write_config(tmp_path, "lora", max_steps=1)
    r = CliRunner().invoke(cli, ["train", "sft", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").exists()
    assert not (tmp_path / "lora" / "merged").exists()


def test_report_has_epochs_trained_fair_losses_and_step_0_eval(tmp_path):
    cfg = write_config(tmp_path, "report", max_steps=3, eval_every=2)
    r = CliRunner().invoke(cli, ["train", "sft", "--config", str(cfg), "--set", "eval_ratio=0.1"])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())["fit"]
    assert 0 < summary["epochs"] < 1  # 3 steps of 128 tokens: a fraction of the 48 examples
    assert f"trained 3 of 3 steps ({summary['epochs']:.2f} epochs" in r.output
    assert "epochs 1.00" not in r.output and "(1.00 epochs" not in r.output
    assert "(mean of the first and last 1 steps)" in r.output
    assert [s for s, _ in summary["eval_losses"]] == [0, 2, 3]
    assert "at step 0 -> best" in r.output
    events = [
        json.loads(x) for x in (tmp_path / "report" / "metrics.jsonl").read_text().splitlines()
    ]
    assert events[0]["step"] == 0 and "eval_loss" in events[0]
    per_source = json.loads((tmp_path / "report" / "summary.json").read_text())["mixture"]
    assert all(s["epochs_trained"] < 1 for s in per_source["per_source"].values())
    assert re.search(r"epochs trained per source: 0:data 0\.\d\d\n", r.output), r.output


def test_train_sft_prints_no_future_warning(tmp_path):
    cfg = write_config(tmp_path, "quiet", max_steps=1, grad_checkpointing=True)
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    out = subprocess.run(
        cli_cmd("train", "sft", "--config", str(cfg)), capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "FutureWarning" not in out.stdout + out.stderr, out.stderr[-2000:]


def _bad_data(tmp_path: Path) -> Path:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "Echo a.", "output": "a"}) + "\n" + "{oops\n")
    return bad


def test_failed_run_removes_the_folder_it_created(tmp_path):
    cfg = write_config(tmp_path, "failed", max_steps=1)
    bad = _bad_data(tmp_path)
    r = CliRunner().invoke(
        cli, ["train", "sft", "--config", str(cfg), "--set", f"datasets=[{{path: {bad}}}]"]
    )
    assert r.exit_code == 1 and "skip_invalid: true" in r.output, r.output
    assert not (tmp_path / "failed").exists()
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / "mine.txt").write_text("keep")
    r = CliRunner().invoke(
        cli, ["train", "sft", "--config", str(cfg), "--set", f"datasets=[{{path: {bad}}}]"]
    )
    assert r.exit_code == 1
    assert (tmp_path / "failed" / "mine.txt").exists()  # it existed before the run


def test_failed_run_keeps_a_resumable_checkpoint(tmp_path, monkeypatch):
    import instructkit.train.sft as sft

    def disk_full(*a, **k):
        raise OSError("No space left on device")

    monkeypatch.setattr(sft, "plot_losses", disk_full)
    cfg = write_config(tmp_path, "late", max_steps=2, save_every=1)
    r = CliRunner().invoke(cli, ["train", "sft", "--config", str(cfg)])
    assert r.exit_code != 0
    assert (tmp_path / "late" / "checkpoints" / "checkpoint-00000002" / "state.json").exists()


def test_fresh_run_drops_metrics_of_a_run_killed_before_its_first_checkpoint(tmp_path):
    cfg = write_config(tmp_path, "stale", max_steps=2)
    (tmp_path / "stale").mkdir()
    stale = [{"step": 0, "eval_loss": 9.0}, {"step": 1, "loss": 9.9}]
    (tmp_path / "stale" / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in stale))
    r = CliRunner().invoke(cli, ["train", "sft", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "stale" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2]
    assert 9.9 not in [json.loads(x).get("loss") for x in lines]


PLAIN_PEFT = """
import json, sys, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM
base_dir, adapter_dir = sys.argv[1], sys.argv[2]
assert "instructkit" not in sys.modules
base = AutoModelForCausalLM.from_pretrained(base_dir)
model = PeftModel.from_pretrained(base, adapter_dir).eval()
with torch.no_grad():
    logits = model(torch.tensor([[5, 17, 42, 99]])).logits
print(json.dumps(logits[0, -1].tolist()))
"""


def test_saved_adapter_is_portable_and_loads_with_plain_peft(tmp_path):
    import torch

    from instructkit.lm.local import LocalLM
    from instructkit.models import PROVENANCE_FILE, build_tiny_model

    cfg = write_config(tmp_path, "run", max_steps=3)
    r = CliRunner().invoke(cli, ["train", "sft", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    folder = tmp_path / "run" / "adapter"
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny-random-llama"  # not a temp/cache path
    info = json.loads((folder / PROVENANCE_FILE).read_text())
    assert info == {"base_model": "tiny-random-llama", "instructkit_model": "tiny-random-llama"}
    assert str(tmp_path) not in (folder / "README.md").read_text()
    # plain peft + transformers in a fresh process, on the same tiny base saved as files
    build_tiny_model().save_pretrained(tmp_path / "base")
    out = subprocess.run(
        [sys.executable, "-c", PLAIN_PEFT, str(tmp_path / "base"), str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    theirs = torch.tensor(json.loads(out.stdout.strip().splitlines()[-1]))
    # instructkit's own loader reads the same adapter back
    lm = LocalLM.load("tiny-random-llama", folder, device="cpu")
    with torch.no_grad():
        ours = lm.model(torch.tensor([[5, 17, 42, 99]])).logits[0, -1]
        plain = build_tiny_model()(torch.tensor([[5, 17, 42, 99]])).logits[0, -1]
    assert (ours - theirs).abs().max() < 1e-5
    assert (ours - plain).abs().max() > 1e-4  # the adapter changed the model


def test_train_sft_on_tool_calling_sharegpt_and_openai_rows(tmp_path):
    call = json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})
    sharegpt = {
        "conversations": [
            {"from": "human", "value": "Weather in Paris?"},
            {"from": "function_call", "value": call},
            {"from": "observation", "value": "21 C"},
            {"from": "gpt", "value": "It is 21 C."},
        ],
        "tools": json.dumps([{"name": "get_weather", "parameters": {"type": "object"}}]),
    }
    (tmp_path / "tools.jsonl").write_text((json.dumps(sharegpt) + "\n") * 8)
    cfg = yaml.safe_load(write_config(tmp_path, "run", max_steps=2).read_text())
    cfg.update(
        template="chatml", max_seq_len=512, datasets=[{"path": str(tmp_path / "tools.jsonl")}]
    )
    cfg["train"]["batch_tokens"] = 512
    path = tmp_path / "tools.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(cli, ["train", "sft", "--config", str(path)])
    assert r.exit_code == 0, r.output
    assert "trained 2 of 2 steps" in r.output
