"""The page of a `train ppo|grpo|dpo|reward` run, from hand-written run folders: the workflow
is recognised, each logged metric gets one plot (and nothing else does), the summary holds
the config essentials and the final numbers, samples are escaped, bad folders are one error."""

import base64
import io
import json
import re

import pytest
import yaml

from instructkit.errors import DataFormatError
from instructkit.report.rl import (
    PLOTS,
    final_metrics,
    plot_uri,
    read_rl_run,
    render_rl_report,
    run_method,
    write_rl_report,
)


def _folder(tmp_path, config, events, summary=None, samples=None, name="run"):
    run = tmp_path / name
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    if summary is not None:
        file = "metrics.json" if "center_rewards_coefficient" in config else "summary.json"
        (run / file).write_text(json.dumps(summary))
    if samples is not None:
        (run / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    return run


PPO_CONFIG = {"model": "tiny", "prompts": "p.jsonl", "rollout": {"batch_size": 4},
              "kl": {"coef": 0.05}, "train": {"steps": 3, "lr": 1e-4},
              "reward": {"kind": "ifeval"}, "lora": {"enabled": True, "r": 8}}  # fmt: skip
PPO_EVENTS = [
    {"step": s, "reward_mean": 0.1 * s, "reward_std": 0.05, "kl": 0.01 * s, "entropy": 2.0,
     "clip_fraction": 0.1, "value_loss": 0.3, "response_length": 12.0, "loss": 0.5,
     "kl_coef": 0.05}
    for s in range(3)
]  # fmt: skip
DPO_CONFIG = {"model": "tiny", "data": "pairs.jsonl", "loss_type": "sigmoid", "beta": 0.1,
              "train": {"max_steps": 2}}  # fmt: skip
DPO_EVENTS = [
    {"step": 0, "eval_loss": 0.69, "eval_accuracy": 0.0, "eval_margin": 0.0},
    {"step": 1, "loss": 0.69, "accuracy": 0.5, "margin": 0.01, "reward_chosen": 0.01,
     "reward_rejected": 0.0, "entropy": 3.0, "rewards/margins": 0.01},
    {"step": 2, "loss": 0.6, "accuracy": 1.0, "margin": 0.2, "reward_chosen": 0.1,
     "reward_rejected": -0.1, "entropy": 3.0, "rewards/margins": 0.2},
    {"step": 2, "eval_loss": 0.5, "eval_accuracy": 1.0, "eval_margin": 0.3},
    {"step": 2, "train_runtime": 1.5, "train_loss": 0.64},
]  # fmt: skip


def _titles(page):
    return re.findall(r"<h3>([^<]+)</h3><figure>", page)


@pytest.mark.parametrize(
    "config, method",
    [
        (PPO_CONFIG, "ppo"),
        ({"num_generations": 4, "beta": 0.04, "loss_type": "dapo"}, "grpo"),
        (DPO_CONFIG, "dpo"),
        ({"center_rewards_coefficient": 0.0, "train": {}}, "reward"),
        ({"model": "x", "train": {}}, None),  # an SFT run
    ],
)
def test_the_workflow_is_recognised_from_its_config(config, method):
    assert run_method(config) == method


def test_ppo_page_plots_every_logged_metric_with_the_summary_and_samples(tmp_path):
    samples = [
        {"step": 0, "prompt": "Say <hi>", "response": "x" * 600, "reward": 0.0},
        {"step": 2, "prompt": "Say & go", "response": "<script>alert(1)</script>", "reward": 1},
        {"step": 1, "prompt": "middle", "response": "not shown", "reward": 0.5},
    ]
    run = _folder(tmp_path, PPO_CONFIG, PPO_EVENTS, {"steps": 3, "seconds": 12.34}, samples)
    page = write_rl_report(run).read_text()
    assert "<h1>PPO run: tiny</h1>" in page
    assert _titles(page) == ["Reward", "KL to the reference", "Entropy", "Clip fraction",
                             "Value loss", "Response length", "Loss"]  # fmt: skip
    assert page.count('src="data:image/png;base64,') == 7
    for text in ("12.3 s", "kl.coef", "reward.kind", "ifeval", "lora.r"):
        assert text in page, text
    assert "<th>reward_mean</th><td>0.2</td>" in page  # the last step's value
    assert "Say &lt;hi&gt;" in page and "&lt;script&gt;" in page and "<script>" not in page
    assert "x" * 500 + " …" in page and "x" * 501 not in page
    assert "not shown" not in page  # only the first and the last sampled steps
    assert "<script" not in page


def test_dpo_page_plots_pairs_and_held_out_numbers_only(tmp_path):
    summary = {"steps": 2, "seconds": 3.0, "held_out_before": {"accuracy": 0.0, "margin": 0.0},
               "held_out_after": {"accuracy": 1.0, "margin": 0.3}}  # fmt: skip
    page = render_rl_report(_folder(tmp_path, DPO_CONFIG, DPO_EVENTS, summary))
    assert _titles(page) == ["Entropy", "Loss", "Pair accuracy", "Pair margin",
                             "Chosen and rejected rewards"]  # fmt: skip
    assert "held_out_after.accuracy" in page and "Sample rollouts" not in page
    assert ("eval_margin", 0.3) in final_metrics(DPO_EVENTS)


def test_reward_page_embeds_the_calibration_plot(tmp_path):
    from matplotlib.figure import Figure

    config = {"model": "tiny", "center_rewards_coefficient": 0.0, "data": ["a.jsonl"]}
    events = [{"step": 1, "loss": 0.6, "accuracy": 1.0, "margin": 0.2, "reward_mean": 0.1,
               "reward_std": 0.3, "reward_chosen": 0.2, "reward_rejected": 0.0}]  # fmt: skip
    run = _folder(tmp_path, config, events, {"seconds": 1.0, "calibration": [{"lo": 0}]})
    buf = io.BytesIO()
    Figure(figsize=(1, 1)).savefig(buf, format="png")
    (run / "calibration.png").write_bytes(buf.getvalue())
    page = render_rl_report(run)
    assert "<h2>Calibration</h2>" in page
    assert base64.b64encode(buf.getvalue()).decode() in page
    assert "calibration.lo" not in page  # lists are not summary rows


def test_an_unfinished_run_renders_from_its_metrics(tmp_path):
    run = _folder(tmp_path, PPO_CONFIG, PPO_EVENTS[:2])
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 2, "rew')  # the torn last line of a killed run
    page = render_rl_report(run)
    assert "unfinished (no summary)" in page and len(_titles(page)) == 7


def test_reward_band_and_missing_keys():
    reward, kl = PLOTS[0], PLOTS[1]
    assert reward.band == "reward_std"
    assert plot_uri([{"step": 0, "loss": 1.0}], kl) is None
    assert plot_uri([{"step": 0, "kl": None}, {"step": 1, "kl": float("nan")}], kl) is None
    assert plot_uri([{"step": 0, "reward_mean": 1.0}], reward).startswith("data:image/png;base64,")


def test_a_folder_that_is_no_rl_run_is_one_error_naming_the_file(tmp_path):
    with pytest.raises(DataFormatError, match="config.yaml"):
        read_rl_run(tmp_path)
    run = _folder(tmp_path, {"model": "x", "train": {}}, [])
    with pytest.raises(DataFormatError, match="not one of a PPO, GRPO, DPO or reward") as e:
        read_rl_run(run)
    assert "\n" not in str(e.value)
    (run / "config.yaml").write_text(yaml.safe_dump(DPO_CONFIG))
    (run / "metrics.jsonl").unlink()
    with pytest.raises(DataFormatError, match="metrics.jsonl"):
        read_rl_run(run)
