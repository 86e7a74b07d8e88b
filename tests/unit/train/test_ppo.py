"""``run_ppo`` on the tiny random model with a scripted reward: the loop runs, the KL to the
reference starts at 0 and grows, every metric is logged, a resumed run repeats an
uninterrupted one, bad input is one clear error."""

import json
import math
from pathlib import Path

import pytest
from pydantic import BaseModel

from instructkit.data.prompt_rows import load_prompt_rows
from instructkit.errors import ConfigError, DataFormatError, TrainingError
from instructkit.rl.workflows import PPOJobConfig
from instructkit.train.ppo import TIMING_KEYS, PPOConfig, run_ppo, step_prompts
from instructkit.train.rewards import RewardFn

KEYS = {
    "step", "reward_mean", "reward_std", "kl", "kl_coef", "entropy", "clip_fraction",
    "value_clip_fraction", "value_loss", "policy_loss", "loss", "approx_kl", "response_length",
    "truncated_frac", "value_mean", "return_mean", "rollout_tokens_per_s", "step_seconds",
}  # fmt: skip


class Lowercase:
    """Reward: the share of lowercase characters in the response; fails on call ``fail_at``."""

    name = "lowercase"

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls, self.fail_at, self.rows = 0, fail_at, []

    def __call__(self, items):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("interrupted")
        self.rows += [i.row for i in items]
        return [sum(c.islower() for c in i.response) / max(1, len(i.response)) for i in items]

    def check(self, row, *, path=None, row_no=None):
        if "bad" in row:
            raise DataFormatError("no good", path=path, row=row_no, field="bad", fix="drop it.")


def _prompts(path, n=6):
    path.write_text(
        "".join(json.dumps({"prompt": f"Say hello {i}", "id": i}) + "\n" for i in range(n))
    )
    return path


def _cfg(tmp_path, out="run", **over):
    cfg = {
        "model": "tiny-random-llama", "output_dir": str(tmp_path / out),
        "prompts": str(tmp_path / "p.jsonl"), "max_seq_len": 64,
        "rollout": {"batch_size": 4, "max_new_tokens": 6},
        "kl": {"coef": 0.05},
        "train": {"steps": 4, "minibatch_size": 2, "epochs": 2, "lr": 0.02, "save_every": 2},
    }  # fmt: skip
    for key, value in over.items():
        section, _, name = key.partition("__")
        if name:
            cfg[section] = {**cfg[section], name: value}
        else:
            cfg[section] = value
    return PPOConfig.model_validate(cfg)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ppo")
    _prompts(tmp / "p.jsonl")
    reward = Lowercase()
    result = run_ppo(_cfg(tmp), reward, progress=False)
    rows = [json.loads(x) for x in (tmp / "run" / "metrics.jsonl").read_text().splitlines()]
    return tmp, result, rows, reward


def test_reward_fn_is_the_contract():
    assert isinstance(Lowercase(), RewardFn)


def test_loop_runs_logs_every_key_and_finite_losses(run):
    tmp, result, rows, reward = run
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    for r in rows:
        assert set(r) == KEYS
        assert all(math.isfinite(v) for v in r.values())
    assert result.steps == 4 and result.n_prompts == 6 and result.rejected == 0
    assert all("id" in row for row in reward.rows)  # the reward sees the source rows
    for name in ("adapter", "value_head.safetensors", "reward.png", "kl.png", "summary.json"):
        assert (tmp / "run" / name).exists(), name


def test_summary_records_the_run_cost(run):
    tmp, result, rows, _ = run
    summary = json.loads((tmp / "run" / "summary.json").read_text())
    assert summary["wall_s"] >= result.seconds > 0 and summary["peak_rss_mb"] > 0
    assert summary["peak_cuda_mb"] is None or summary["peak_cuda_mb"] > 0
    rates = [r["rollout_tokens_per_s"] for r in rows]  # the run's rate lies among the steps'
    assert min(rates) <= summary["rollout_tokens_per_s"] <= max(rates)


def test_kl_to_the_reference_is_zero_at_step_zero_and_grows(run):
    _, _, rows, _ = run
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # LoRA starts as the reference
    assert rows[-1]["kl"] > 1e-3
    assert rows[0]["approx_kl"] > 0  # the update moved the policy off the rollout policy


def test_resume_after_an_interruption_repeats_the_uninterrupted_run(run):
    tmp, _, full, _ = run
    with pytest.raises(KeyboardInterrupt):  # during step 2, after checkpoint 2
        run_ppo(_cfg(tmp, out="resumed"), Lowercase(fail_at=3), progress=False)
    result = run_ppo(_cfg(tmp, out="resumed"), Lowercase(), progress=False)
    assert result.resumed_from == 2
    rows = [json.loads(x) for x in (tmp / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    for a, b in zip(full, rows, strict=True):
        for k in KEYS - set(TIMING_KEYS):
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), (a["step"], k)


def test_a_resumed_run_leaves_tensorboard_one_value_per_step(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _prompts(tmp_path / "p.jsonl")
    cfg = _cfg(tmp_path, report_to=["tensorboard"], train__lr=1e-3)
    with pytest.raises(KeyboardInterrupt):  # during step 3: steps 0-2 logged, checkpoint 2
        run_ppo(cfg, Lowercase(fail_at=4), progress=False)
    run_ppo(cfg, Lowercase(), progress=False)  # resumes at step 2 and logs it again
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    got = [(s.step, s.value) for s in acc.Scalars("reward_mean")]
    assert got == [(r["step"], pytest.approx(r["reward_mean"])) for r in rows]
    assert [s for s, _ in got] == [0, 1, 2, 3]


def test_adaptive_kl_moves_the_coefficient(tmp_path):
    _prompts(tmp_path / "p.jsonl")
    cfg = _cfg(tmp_path, kl__adaptive=True, kl__target=1e-4, kl__horizon=10, train__steps=2)
    run_ppo(cfg, Lowercase(), progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    coefs = [r["kl_coef"] for r in rows]
    # step 0's KL is 0, below the target: the error is clipped to -0.2, batch 4, horizon 10
    assert coefs == [0.05, pytest.approx(0.05 * (1 - 0.2 * 4 / 10))]


def test_full_weights_keep_a_frozen_reference(tmp_path):
    _prompts(tmp_path / "p.jsonl")
    cfg = _cfg(tmp_path, lora={"enabled": False}, train__steps=2, train__lr=1e-3)
    run_ppo(cfg, Lowercase(), progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6) and rows[1]["kl"] != 0.0
    assert (tmp_path / "run" / "model").exists()


def test_step_prompts_cover_every_prompt_each_pass():
    picks = [i for s in range(3) for i in step_prompts(6, 4, seed=1, step=s)]
    assert sorted(picks[:6]) == list(range(6)) and sorted(picks[6:12]) == list(range(6))
    assert step_prompts(6, 4, seed=1, step=1) == step_prompts(6, 4, seed=1, step=1)


def test_prompt_rows_formats_and_errors(tmp_path):
    p = tmp_path / "p.jsonl"
    good = [
        {"prompt": "hi", "answer": "x"},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]},
        {"prompt": [{"role": "user", "content": "u2"}]},
    ]
    p.write_text("".join(json.dumps(r) + "\n" for r in good))
    rows = load_prompt_rows(p).rows
    assert rows[0].messages == [{"role": "user", "content": "hi"}] and rows[0].row["answer"] == "x"
    assert [m["role"] for m in rows[1].messages] == ["system", "user"]
    assert rows[2].messages[-1]["content"] == "u2"
    bad = {"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "u"}]}
    p.write_text(json.dumps(good[0]) + "\n" + json.dumps(bad) + "\n" + '{"prompt": ""}\n{oops\n')
    with pytest.raises(DataFormatError) as e:
        load_prompt_rows(p)
    assert "p.jsonl:2: field 'messages[0].role'" in str(e.value)
    assert "expected a user message here" in str(e.value) and "skip_invalid" in str(e.value)
    loaded = load_prompt_rows(p, skip_invalid=True)
    assert len(loaded.rows) == 1
    assert [(r.row, r.field) for r in loaded.rejects] == [
        (2, "messages[0].role"), (3, "prompt"), (4, None)
    ]  # fmt: skip


def test_a_prompt_ends_at_its_last_user_turn_and_the_cut_is_counted(tmp_path, capsys):
    """SFT-style rows (ending with the reference answer) are prompts up to the last user turn;
    `train ppo` samples after it and says how many rows it cut."""
    from instructkit.data.templates import get_template
    from instructkit.models import build_tiny_tokenizer
    from instructkit.train.ppo import _prompt_fit
    from instructkit.train.prompts import checked_prompt_rows, encode_prompts

    turns = [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "REPLY"}]
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"messages": turns}) + "\n" + json.dumps({"prompt": "Say yo."}) + "\n")
    cfg = _cfg(tmp_path)
    kept, rejects = checked_prompt_rows(cfg.prompts, Lowercase(), skip_invalid=False)
    assert not rejects and [r.dropped for r in kept] == [1, 0]
    assert "prompts: 1 cut after their last user turn" in capsys.readouterr().out
    tok = build_tiny_tokenizer()
    queries, _ = encode_prompts(kept, get_template("chatml", tok), tok, _prompt_fit(cfg))
    assert "Say hi." in queries[0].text and "REPLY" not in queries[0].text
    assert queries[0].text.endswith("<|im_start|>assistant\n")  # the policy answers here
    p.write_text(json.dumps({"prompt": [turns[0], *turns]}) + "\n")
    with pytest.raises(DataFormatError, match=r"p\.jsonl:1: field 'prompt\[1\]\.role'"):
        load_prompt_rows(p)  # the turns kept must still alternate (the data layer's rules)


def test_bad_rows_and_config_are_one_line_errors(tmp_path):
    p = _prompts(tmp_path / "p.jsonl", n=3)
    p.write_text(p.read_text() + json.dumps({"prompt": "x", "bad": 1}) + "\n")
    with pytest.raises(DataFormatError, match=r"p\.jsonl:4: field 'bad'"):
        run_ppo(_cfg(tmp_path), Lowercase(), progress=False)
    assert not (tmp_path / "run").exists()  # a failed fresh run leaves nothing behind
    with pytest.raises(ConfigError, match="minibatch_size"):
        run_ppo(_cfg(tmp_path, train__minibatch_size=8), Lowercase(), progress=False)
    with pytest.raises(ConfigError, match="does not exist"):
        run_ppo(_cfg(tmp_path, prompts=str(tmp_path / "nope.jsonl")), Lowercase())
    with pytest.raises(ConfigError, match="nosuchbackend"):
        run_ppo(_cfg(tmp_path, report_to=["nosuchbackend"]), Lowercase())


def test_prompts_too_long_are_rejected_with_a_count(tmp_path, capsys):
    p = tmp_path / "p.jsonl"
    long = {"prompt": "hello world " * 40}
    p.write_text(json.dumps(long) + "\n" + json.dumps({"prompt": "hi"}) + "\n")
    cfg = _cfg(tmp_path, skip_invalid=True, train__steps=1, rollout__batch_size=2)
    run_ppo(cfg, Lowercase(), progress=False)
    assert "1 kept, 1 rejected (1 too long)" in capsys.readouterr().out
    reject = json.loads((tmp_path / "run" / "rejects.jsonl").read_text())
    assert reject["row"] == 1 and "exceeds max_seq_len=64" in reject["reason"]
    p.write_text(json.dumps(long) + "\n")
    with pytest.raises(TrainingError, match="no prompt left"):
        run_ppo(_cfg(tmp_path, out="run2"), Lowercase(), progress=False)


def _keys(model, prefix=""):
    out = []
    for name, field in model.model_fields.items():
        out.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _keys(ann, f"{prefix}{name}.")
    return out


@pytest.mark.parametrize("key", _keys(PPOJobConfig))
def test_every_config_key_is_documented(key):
    """Each key appears in docs/ppo.md as `name` in a table row."""
    doc = (Path(__file__).parents[3] / "docs" / "ppo.md").read_text("utf-8")
    rows = [line for line in doc.splitlines() if line.startswith("|")]
    name = key.rsplit(".", 1)[-1]
    assert any(f"`{name}`" in row for row in rows), key


def test_every_logged_key_is_documented():
    doc = (Path(__file__).parents[3] / "docs" / "ppo.md").read_text("utf-8")
    assert not [k for k in KEYS if f"`{k}`" not in doc]


def test_prompts_take_a_dataset_spec_with_a_column_mapping(tmp_path):
    """`prompts` is a path (as before) or a spec: a CSV whose prompt column has another name."""
    (tmp_path / "p.csv").write_text(
        "question,id\n" + "".join(f"Say hello {i},{i}\n" for i in range(6))
    )
    spec = {"path": str(tmp_path / "p.csv"), "columns": {"prompt": "question"}}
    reward = Lowercase()
    result = run_ppo(_cfg(tmp_path, prompts=spec, train__steps=1), reward, progress=False)
    assert result.steps == 1 and result.n_prompts == 6
    assert {r["prompt"] for r in reward.rows} <= {f"Say hello {i}" for i in range(6)}
    assert "question" not in reward.rows[0]  # the mapped column is renamed, not copied
    with pytest.raises(ConfigError, match="prompts: .*nope.csv does not exist"):
        run_ppo(_cfg(tmp_path, prompts={"path": str(tmp_path / "nope.csv")}), Lowercase())
