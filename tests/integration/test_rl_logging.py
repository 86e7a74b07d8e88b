"""What `train ppo|grpo|dpo|reward` log, end to end on the tiny model from the CLI: the shared
metric names per step (finite), TensorBoard event files with the same scalars at the same
steps (``report_to: [tensorboard]``), samples.jsonl for PPO and GRPO, and report.html with
the plots embedded, also rendered in headless Chromium."""

import json
import math
from pathlib import Path

import pytest
from browser import CHROMIUM, chromium
from click.testing import CliRunner

from instructkit.cli.main import cli
from instructkit.report.rl import render_rl_report

WORDS = ["apple", "pear", "plum", "fig", "kiwi", "lime", "date", "melon"]
TINY = ["--model", "tiny-random-llama", "--set", "report_to=[tensorboard]", "--set", "lora.r=4"]

# per workflow: its command-line arguments after the data file, and the keys every training
# step logs (the names of instructkit.train.tracking.RL_METRICS)
RUNS = {
    "ppo": (
        ["--reward", "exact", "--set", "max_seq_len=64", "--set", "rollout.batch_size=4",
         "--set", "rollout.max_new_tokens=6", "--set", "train.minibatch_size=2",
         "--set", "train.epochs=1", "--set", "train.steps=3", "--set", "samples_every=2"],
        ("reward_mean", "reward_std", "kl", "entropy", "clip_fraction", "value_loss",
         "response_length", "loss"),
    ),
    "grpo": (
        ["--reward", "exact", "--set", "num_generations=2", "--set", "max_completion_length=5",
         "--set", "train.max_steps=3", "--set", "train.batch_size=4", "--set", "samples_every=2"],
        ("reward_mean", "reward_std", "kl", "entropy", "clip_fraction", "response_length", "loss"),
    ),
    "dpo": (
        ["--set", "max_seq_len=64", "--set", "train.max_steps=3", "--set", "train.batch_size=4",
         "--set", "eval_ratio=0.25"],
        ("loss", "accuracy", "margin", "reward_chosen", "reward_rejected", "entropy", "lr"),
    ),
    "reward": (
        ["--set", "max_seq_len=64", "--set", "train.batch_tokens=512", "--set", "train.lr=5e-3",
         "--set", "eval_ratio=0.25", "--set", "train.epochs=3"],
        ("loss", "accuracy", "margin", "reward_chosen", "reward_rejected", "reward_mean",
         "reward_std", "lr"),
    ),
}  # fmt: skip


def _data(tmp: Path, method: str) -> Path:
    if method in ("ppo", "grpo"):
        rows = [{"prompt": f"Say {w}.", "answer": w} for w in WORDS[:4]]
    else:
        rows = [{"prompt": f"Say {w}.", "chosen": w, "rejected": w.upper()} for w in WORDS]
    path = tmp / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module", params=list(RUNS))
def run(request, tmp_path_factory):
    method = request.param
    tmp = tmp_path_factory.mktemp(method)
    out = tmp / "run"
    args = ["train", method, str(_data(tmp, method)), "-o", str(out), *TINY, *RUNS[method][0]]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return method, out, events, r.output


def _steps(events):
    """The events of training steps (TRL's last event has train_loss, not loss)."""
    return [e for e in events if "loss" in e]


def test_every_step_logs_the_shared_names_finite(run):
    method, _, events, _ = run
    steps = _steps(events)
    assert len(steps) >= 2, events
    for key in RUNS[method][1]:
        values = [e.get(key) for e in steps]
        assert all(isinstance(v, float) and math.isfinite(v) for v in values), (key, values)
    if method in ("dpo", "reward"):  # held-out pairs, before and after training
        evals = [e for e in events if "eval_accuracy" in e]
        assert evals[0]["step"] == 0 and evals[-1]["step"] == steps[-1]["step"]
        assert all(math.isfinite(e["eval_margin"]) for e in evals)
    if method in ("grpo", "dpo"):  # TRL's own names are kept beside ours
        trl = {"grpo": ("reward", "reward_mean"), "dpo": ("rewards/margins", "margin")}[method]
        assert all(e[trl[0]] == e[trl[1]] for e in steps)


def test_tensorboard_gets_every_scalar_at_its_step(run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    method, out, events, _ = run
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for key in RUNS[method][1]:
        assert key in tags, (key, sorted(tags))
        logged = [(e["step"], e[key]) for e in events if e.get(key) is not None]
        got = [(s.step, s.value) for s in acc.Scalars(key)]
        assert [s for s, _ in got] == [s for s, _ in logged], key
        assert [v for _, v in got] == pytest.approx([v for _, v in logged], rel=1e-5), key


def test_samples_are_logged_every_n_steps_for_rl_runs(run):
    method, out, events, _ = run
    path = out / "samples.jsonl"
    if method not in ("ppo", "grpo"):
        assert not path.exists()
        return
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    # every 2 steps and the last: PPO's steps are 0, 1, 2; GRPO's (TRL's) 1, 2, 3
    expected = {"ppo": [0, 2], "grpo": [2, 3]}[method]
    assert sorted({r["step"] for r in rows}) == expected
    assert all(r["prompt"].startswith("Say ") for r in rows)
    assert all(isinstance(r["response"], str) and r["reward"] in (0.0, 1.0) for r in rows)


def test_report_html_is_written_with_the_plots(run):
    method, out, _, printed = run
    page = (out / "report.html").read_text()
    assert f"report: {out / 'report.html'}" in printed
    titles = {
        "ppo": ["Reward", "KL to the reference", "Entropy", "Clip fraction", "Value loss",
                "Response length", "Loss"],
        "grpo": ["Reward", "KL to the reference", "Entropy", "Clip fraction", "Response length"],
        "dpo": ["Loss", "Pair accuracy", "Pair margin", "Chosen and rejected rewards"],
        "reward": ["Reward", "Loss", "Pair accuracy", "Pair margin", "Calibration"],
    }[method]  # fmt: skip
    for title in titles:
        assert f"<h3>{title}</h3>" in page or f"<h2>{title}</h2>" in page, title
    assert page.count("data:image/png;base64,") >= len(titles)
    if method not in ("ppo",):
        assert "<h3>Value loss</h3>" not in page  # nothing logged, no empty plot
    assert ("Sample rollouts" in page) == (method in ("ppo", "grpo"))
    assert "wall time" in page and "unfinished" not in page
    assert render_rl_report(out) == page  # re-rendered from the folder: the same page


def test_report_renders_in_headless_chromium(run, tmp_path):
    method, out, _, _ = run
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed")
    if method != "ppo":
        pytest.skip("one workflow is enough for the browser")
    dom = chromium(tmp_path, "--dump-dom", (out / "report.html").as_uri()).stdout
    assert "<h1>PPO run: tiny-random-llama</h1>" in dom
    assert dom.count("data:image/png;base64,") == 7  # reward (with its band) to loss
    assert "<h2>Sample rollouts</h2>" in dom and "Say " in dom


def test_train_report_renders_a_run_folder_again(run, tmp_path):
    _, out, _, _ = run
    page = tmp_path / "again.html"
    r = CliRunner().invoke(cli, ["train", "report", str(out), "-o", str(page)])
    assert r.exit_code == 0, r.output
    assert page.read_text() == (out / "report.html").read_text()


def test_train_report_of_a_folder_that_is_no_run_is_one_line(tmp_path):
    r = CliRunner().invoke(cli, ["train", "report", str(tmp_path)])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
    assert "config.yaml" in r.output and "train ppo, grpo, dpo or reward" in r.output
