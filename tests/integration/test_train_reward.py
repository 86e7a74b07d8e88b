"""`instructkit train reward` end to end on the tiny model: a verifiable preference is learned,
outputs and metrics, the model as a reward source, bad rows, kill + resume."""

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from killing import kill_when
from safetensors.torch import load_file

from instructkit.cli.main import cli
from instructkit.rl.rewards import RewardSpec, build_reward
from instructkit.train.reward_model import load_reward_model
from instructkit.train.rewards import RewardFn, RewardItem

TOPICS = (
    "tea rain cats maps bread music trees boats snow clocks "
    "bees stars roads paper salt wind lamps fish hills books"
).split()
FAST = [
    "--model",
    "tiny-random-llama",
    "--set",
    "max_seq_len=64",
    "--set",
    "lora.r=4",
    "--set",
    "train.batch_tokens=512",
    "--set",
    "train.lr=5e-3",
]


def pair(topic: str, k: int) -> dict:
    """The chosen response is all lowercase, the rejected one the same text in uppercase."""
    text = f"{topic} are nice and {['calm', 'bright'][k]} today."
    return {"prompt": f"Tell me about {topic}.", "chosen": text.lower(), "rejected": text.upper()}


def write_pairs(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rm")
    data = write_pairs(tmp / "pairs.jsonl", [pair(t, k) for t in TOPICS for k in (0, 1)])
    out = tmp / "rm"
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "reward",
            str(data),
            "-o",
            str(out),
            *FAST,
            "--set",
            "eval_ratio=0.25",
            "--set",
            "train.epochs=4",
        ],
    )
    assert r.exit_code == 0, r.output
    return out, r.output


def test_training_learns_the_preference_on_held_out_prompts(run):
    out, printed = run
    m = json.loads((out / "metrics.json").read_text())
    assert (m["n_train"], m["n_eval"], m["rejected"], m["truncated"]) == (30, 10, 0, 0)
    assert m["loss_end"] < m["loss_start"] * 0.5
    assert m["eval_accuracy"] > 0.5 and m["eval_margin"] > 0
    assert 0 <= m["ece"] <= 1 and sum(b["count"] for b in m["calibration"]) == 20
    assert m["wall_s"] >= m["seconds"] > 0 and m["peak_rss_mb"] > 0 and "peak_cuda_mb" in m
    assert "held-out pair accuracy" in printed and "pairs: train 30, eval 10" in printed


def test_outputs_and_metrics_log(run):
    out, _ = run
    for name in (
        "adapter/adapter_model.safetensors",
        "config.yaml",
        "reward_model.json",
        "metrics.jsonl",
        "calibration.png",
        "loss_curve.png",
    ):
        assert (out / name).exists(), name
    assert any(
        k.endswith("score.weight")
        for k in load_file(str(out / "adapter" / "adapter_model.safetensors"))
    )
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [e["step"] for e in events if "loss" in e]
    assert steps == list(range(1, len(steps) + 1))
    evals = [e for e in events if "eval_accuracy" in e]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == steps[-1]


def test_the_trained_model_is_a_reward_source(run):
    out, _ = run
    reward = build_reward(RewardSpec(kind="model", path=str(out)))
    assert isinstance(reward, RewardFn) and reward.name == f"model:{out}"
    prompt = "Tell me about owls."  # a prompt never seen in training
    scores = reward(
        [
            RewardItem(prompt, "owls are quiet at night."),
            RewardItem(prompt, "OWLS ARE QUIET AT NIGHT."),
        ]
    )
    assert scores[0] > scores[1]
    again = load_reward_model(out, batch_size=1)
    assert again([RewardItem(prompt, "owls are quiet at night.")]) == pytest.approx(
        scores[:1], abs=1e-4
    )


def test_model_kind_without_path_is_a_config_error():
    from instructkit.errors import ConfigError

    with pytest.raises(ConfigError, match="reward.path"):
        build_reward(RewardSpec(kind="model"))


def test_a_bad_row_is_one_line_naming_file_row_and_field(tmp_path):
    rows = [pair("tea", 0), {"prompt": "q", "chosen": "same", "rejected": "same"}]
    data = write_pairs(tmp_path / "bad.jsonl", rows)
    r = CliRunner().invoke(cli, ["train", "reward", str(data), "-o", str(tmp_path / "o"), *FAST])
    assert r.exit_code == 1
    line = r.output.strip()
    assert (
        "\n" not in line and "bad.jsonl" in line and "bad.jsonl:2:" in line and "rejected" in line
    )
    assert not (tmp_path / "o").exists()


def test_skip_invalid_writes_rejects_and_counts_them(tmp_path):
    rows = [pair(t, 0) for t in TOPICS[:6]] + [{"prompt": "q", "chosen": "", "rejected": "b"}]
    data = write_pairs(tmp_path / "p.jsonl", rows)
    out = tmp_path / "o"
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "reward",
            str(data),
            "-o",
            str(out),
            *FAST,
            "--set",
            "skip_invalid=true",
            "--set",
            "train.max_steps=1",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "rejected 1" in r.output
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(x["row"], x["field"]) for x in rejects] == [(7, "chosen")]


def test_full_weights_write_a_standard_classification_model(tmp_path):
    data = write_pairs(tmp_path / "p.jsonl", [pair(t, 0) for t in TOPICS[:6]])
    out = tmp_path / "full"
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "reward",
            str(data),
            "-o",
            str(out),
            *FAST,
            "--set",
            "lora.enabled=false",
            "--set",
            "train.max_steps=2",
        ],
    )
    assert r.exit_code == 0, r.output
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(out / "model"))
    assert model.config.num_labels == 1
    scores = load_reward_model(out)([RewardItem("q", "a"), RewardItem("q", "B")])
    assert len(scores) == 2


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", [pair(t, k) for t in TOPICS for k in (0, 1)])
    steps = [
        "--set",
        "train.max_steps=12",
        "--set",
        "train.save_every=3",
        "--set",
        "train.batch_tokens=200",
    ]
    ref = tmp_path / "ref"
    r = CliRunner().invoke(cli, ["train", "reward", str(data), "-o", str(ref), *FAST, *steps])
    assert r.exit_code == 0, r.output

    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "instructkit",
        "train",
        "reward",
        str(data),
        "-o",
        str(out),
        *FAST,
        *steps,
    ]
    kill_when(cmd, lambda: any((out / "checkpoints").glob("checkpoint-*/state.json")))
    assert not (out / "adapter").exists(), "run finished before it was killed"
    r = CliRunner().invoke(cli, ["train", "reward", str(data), "-o", str(out), *FAST, *steps])
    assert r.exit_code == 0, r.output
    assert "resuming from" in r.output
    a = load_file(str(ref / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    for k in a:
        assert (a[k] - b[k]).abs().max() < 1e-5, k
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if "loss" in e] == list(range(1, 13))
    ref_m, got_m = (json.loads((d / "metrics.json").read_text()) for d in (ref, out))
    assert got_m["eval_accuracy"] == ref_m["eval_accuracy"]
    assert got_m["resumed_from"] is not None
