"""`train grpo`: prompts read and rendered by our template, rows reach the reward, TRL trains."""

import json
import math
from pathlib import Path

import pytest

from instructkit.data.templates import get_template
from instructkit.errors import ConfigError, DataFormatError, TrainingError
from instructkit.train.grpo import GRPORunConfig, reward_function, run_grpo
from instructkit.train.prompts import PromptFit, checked_prompt_rows, encode_prompts
from instructkit.train.rewards import RewardItem

WORDS = ["apple", "pear", "plum", "fig"]


class ShortReward:
    """Rewards short completions; records what it was given."""

    name = "short"

    def __init__(self) -> None:
        self.items: list[RewardItem] = []
        self.checked: list[int | None] = []

    def __call__(self, items):
        self.items.extend(items)
        return [-len(i.response) / 10 for i in items]

    def check(self, row, *, path=None, row_no=None):
        self.checked.append(row_no)
        if "target" not in row:
            raise DataFormatError("the reward reads 'target'", path=path, row=row_no,
                                  field="target", fix="add it.")  # fmt: skip


def write_prompts(path: Path) -> Path:
    rows = [{"prompt": f"Say the word {w}.", "target": w, "kwargs": [{"n": i}]}
            for i, w in enumerate(WORDS)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prompts_render_with_our_template_and_keep_their_rows(tmp_path, tiny_tokenizer):
    path = tmp_path / "p.jsonl"
    rows = [
        {"prompt": "Hi.", "target": "a"},
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Yo."}],
         "target": "b"},
        {"messages": [{"role": "user", "content": "One."}, {"role": "assistant", "content": "1"},
                      {"role": "user", "content": "Two."}, {"role": "assistant", "content": "2"}],
         "target": "c"},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    template = get_template("chatml", tiny_tokenizer)
    reward = ShortReward()
    prompts, rejects = checked_prompt_rows(str(path), reward, skip_invalid=False)
    assert reward.checked == [1, 2, 3] and not rejects
    assert [p.text for p in prompts] == ["Hi.", "Yo.", "Two."]
    fit = PromptFit(str(path), 512, 16, "max_completion_length", False)
    rendered = [q.text for q in encode_prompts(prompts, template, tiny_tokenizer, fit)[0]]
    assert rendered[0] == template.render([{"role": "user", "content": "Hi."}], True)
    assert rendered[2].endswith("<|im_start|>assistant\n")
    assert "One." in rendered[2] and "2" not in rendered[2]  # the last answer is dropped ...
    assert [p.dropped for p in prompts] == [0, 0, 1]  # ... and counted
    assert prompts[1].row["target"] == "b"


@pytest.mark.parametrize(
    "row, field",
    [
        ({"question": "Hi.", "target": "a"}, "prompt"),
        ({"prompt": "  ", "target": "a"}, "prompt"),
        ({"prompt": "Hi."}, "target"),  # the reward's own check
        ({"messages": [{"role": "assistant", "content": "Hi."}], "target": "a"}, "messages[0]"),
    ],
)
def test_bad_prompt_row_names_file_row_field(tmp_path, row, field):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "Fine.", "target": "x"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataFormatError) as e:
        checked_prompt_rows(str(path), ShortReward(), skip_invalid=False)
    msg = str(e.value)
    assert "\n" not in msg and f"{path}:2: field '{field}" in msg, msg


def test_reward_function_hands_each_completion_its_row(tmp_path):
    reward = ShortReward()
    prompts, _ = checked_prompt_rows(
        str(write_prompts(tmp_path / "p.jsonl")), reward, skip_invalid=False
    )
    fn = reward_function(reward, prompts)
    scores = fn(
        prompts=["x", "y"], completions=["ab", "abcd"], row_index=[2, 0], trainer_state=None
    )
    assert scores == [-0.2, -0.4] and fn.__name__ == "short"
    assert [(i.prompt, i.row["target"], i.row["kwargs"]) for i in reward.items] == [
        ("Say the word plum.", "plum", [{"n": 2}]),
        ("Say the word apple.", "apple", [{"n": 0}]),
    ]


def test_batch_must_hold_whole_groups(tmp_path):
    cfg = GRPORunConfig(data=str(write_prompts(tmp_path / "p.jsonl")), num_generations=3,
                        train={"batch_size": 4})  # fmt: skip
    with pytest.raises(ConfigError, match="multiple of num_generations"):
        run_grpo(cfg, ShortReward(), progress=False)


def test_checkpoints_fall_between_generations(tmp_path):
    """A checkpoint inside the num_iterations passes over one generation would resume with
    fresh rollouts (TRL regenerates after a resume), so such a save_every is refused."""
    cfg = GRPORunConfig(data=str(write_prompts(tmp_path / "p.jsonl")), num_generations=2,
                        num_iterations=2, train={"batch_size": 4, "save_every": 3})  # fmt: skip
    with pytest.raises(ConfigError, match=r"save_every \(3\) must be a multiple of num_iter"):
        run_grpo(cfg, ShortReward(), progress=False)


def test_prompts_too_long_for_the_context_are_rejected_and_counted(tmp_path, capsys):
    """A prompt whose tokens plus max_completion_length exceed max_seq_len is a reject (one
    line with file, row and field in rejects.jsonl); a bad row is one with skip_invalid; with
    none left the run stops naming the first reason and the fix."""
    path = write_prompts(tmp_path / "p.jsonl")
    rows = path.read_text().splitlines()
    long = {"prompt": "Say " + "very " * 300 + "long.", "target": "x"}
    path.write_text("\n".join([*rows, json.dumps(long), json.dumps({"prompt": "No target."})]))
    base = {"model": "tiny-random-llama", "data": str(path), "num_generations": 2,
            "max_completion_length": 4, "max_seq_len": 64, "lora": {"r": 4},
            "train": {"max_steps": 1, "batch_size": 2}}  # fmt: skip
    with pytest.raises(DataFormatError, match=r"p\.jsonl:6: field 'target'"):
        run_grpo(GRPORunConfig(**base, output_dir=str(tmp_path / "a")), ShortReward())
    cfg = GRPORunConfig(**base, output_dir=str(tmp_path / "b"), skip_invalid=True)
    run_grpo(cfg, ShortReward(), progress=False)
    assert "prompts: 4 kept, 2 rejected (1 too long)" in capsys.readouterr().out
    rejects = [json.loads(x) for x in (tmp_path / "b" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["row"], r["field"]) for r in rejects] == [(6, "target"), (5, "prompt")]
    assert "max_completion_length=4 it exceeds max_seq_len=64" in rejects[1]["reason"]
    tiny = {**base, "max_seq_len": 12, "skip_invalid": True, "output_dir": str(tmp_path / "c")}
    with pytest.raises(TrainingError, match="no prompt left to train on") as e:
        run_grpo(GRPORunConfig(**tiny), ShortReward(), progress=False)
    assert "max_completion_length" in e.value.fix


def test_grpo_end_to_end_logs_reward_kl_and_length(tmp_path):
    cfg = GRPORunConfig(
        model="tiny-random-llama",
        output_dir=str(tmp_path / "run"),
        data=str(write_prompts(tmp_path / "p.jsonl")),
        num_generations=4,
        max_completion_length=6,
        lora={"r": 4},
        train={"lr": 1e-2, "max_steps": 2, "batch_size": 4},
    )
    reward = ShortReward()
    result = run_grpo(cfg, reward, progress=False)
    assert result.steps == 2 and result.reward == "short"
    assert len(reward.items) == 8  # 2 steps x 1 prompt x 4 generations
    assert {i.row["target"] for i in reward.items} <= set(WORDS)
    assert all(i.prompt.startswith("Say the word") for i in reward.items)
    run = tmp_path / "run"
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [e for e in events if "reward_mean" in e]
    assert [e["step"] for e in steps] == [1, 2]
    for key in ("reward_mean", "reward_std", "kl", "response_length", "entropy", "clip_fraction"):
        assert all(math.isfinite(e[key]) for e in steps), key
    assert steps[0]["kl"] == 0.0  # the policy is the reference before the first update
    assert all(0 < e["response_length"] <= 6 for e in steps)
    assert all(e["reward"] == e["reward_mean"] for e in steps)  # TRL's name is kept too
    assert (run / "adapter" / "adapter_model.safetensors").exists()
    assert (run / "reward_curve.png").stat().st_size > 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["reward_start"] == pytest.approx(steps[0]["reward_mean"])
    assert all(e["rollout_tokens_per_s"] > 0 for e in steps)  # timed around generation
    for key in ("wall_s", "peak_rss_mb", "rollout_tokens_per_s"):
        assert summary[key] > 0, key
    assert summary["wall_s"] >= summary["seconds"] and "peak_cuda_mb" in summary


def test_docs_list_every_config_key():
    from instructkit.rl.grpo_job import GRPOJobConfig
    from instructkit.train.dpo import DPORunConfig
    from instructkit.train.trl_runs import PreferenceTrainConfig

    doc = (Path(__file__).parents[3] / "docs" / "preference.md").read_text("utf-8")
    for model in (DPORunConfig, GRPOJobConfig, PreferenceTrainConfig):
        missing = [k for k in model.model_fields if f"`{k}`" not in doc]
        assert not missing, f"{model.__name__}: {missing} not in docs/preference.md"


def test_data_takes_a_dataset_spec_with_a_column_mapping(tmp_path):
    """`data` is a path (as before) or a spec: a Parquet file whose columns have other names."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"ask": f"Say the word {w}.", "target": w} for w in WORDS]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    spec = {"path": str(tmp_path / "p.parquet"), "columns": {"prompt": "ask"}}
    reward = ShortReward()
    prompts, rejects = checked_prompt_rows(spec, reward, skip_invalid=False)
    assert [p.text for p in prompts] == [r["ask"] for r in rows] and not rejects
    assert reward.checked == [0, 1, 2, 3]  # Parquet rows are 0-based row indexes
    cfg = GRPORunConfig.model_validate(
        {"model": "tiny-random-llama", "data": spec, "num_generations": 2, "beta": 0.0,
         "max_completion_length": 4, "max_seq_len": 64, "lora": {"r": 4},
         "output_dir": str(tmp_path / "run"), "train": {"max_steps": 1, "batch_size": 2}}
    )  # fmt: skip
    result = run_grpo(cfg, ShortReward(), progress=False)
    assert result.n_prompts == 4 and result.steps == 1
