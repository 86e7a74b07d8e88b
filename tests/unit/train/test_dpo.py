"""`train dpo`: pairs tokenized with SFT's masks, bad rows named, TRL runs each loss type."""

import json
import math
from pathlib import Path

import pytest

from instructkit.data.records import Message, PreferencePair
from instructkit.data.templates import get_template
from instructkit.data.tokenize import IGNORE_INDEX, tokenize_conversation
from instructkit.errors import ConfigError, DataFormatError
from instructkit.train.dpo import DPORunConfig, load_pairs, run_dpo, tokenize_pair

WORDS = ["apple", "pear", "plum", "fig", "kiwi", "lime", "date", "melon"]


def write_pairs(path: Path, n: int = 16) -> Path:
    rows = [
        {"prompt": f"Say the word {w}.", "chosen": w, "rejected": w.upper() + "!"}
        for w in (WORDS * 4)[:n]
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(tmp_path: Path, **kw) -> DPORunConfig:
    values = {
        "model": "tiny-random-llama",
        "output_dir": str(tmp_path / "run"),
        "data": str(write_pairs(tmp_path / "pairs.jsonl")),
        "eval_ratio": 0.25,
        "max_seq_len": 64,
        "lora": {"r": 4},
        "train": {"lr": 1e-2, "max_steps": 1, "batch_size": 4},
    }
    return DPORunConfig.model_validate({**values, **kw})


PAIR = PreferencePair(
    [Message("system", "Be brief."), Message("user", "Name a fruit.")], "A pear.", "No."
)


@pytest.mark.parametrize("template_name", ["tokenizer", "alpaca", "chatml", "vicuna"])
def test_pair_tokens_are_sft_tokens_and_masks(tiny_tokenizer, template_name):
    template = get_template(template_name, tiny_tokenizer)
    pair = tokenize_pair(PAIR, template, tiny_tokenizer, max_seq_len=512)
    for response, ids in ((PAIR.chosen, pair.chosen_ids), (PAIR.rejected, pair.rejected_ids)):
        conv = PreferencePair(PAIR.prompt, response, "x").chosen_conversation()
        sft = tokenize_conversation(conv, template, tiny_tokenizer)
        trained = [i for i, lab in enumerate(sft.labels) if lab != IGNORE_INDEX]
        assert pair.prompt_ids == sft.input_ids[: trained[0]]
        assert ids == [sft.input_ids[i] for i in trained]  # exactly SFT's trained tokens
        assert response in tiny_tokenizer.decode(ids)


def test_trl_completion_mask_equals_our_response_only_mask(tiny_tokenizer):
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    template = get_template("chatml", tiny_tokenizer)
    pair = tokenize_pair(PAIR, template, tiny_tokenizer, max_seq_len=512)
    batch = DataCollatorForPreference(pad_token_id=0)([pair.to_row()])
    for k, response in enumerate((PAIR.chosen, PAIR.rejected)):
        conv = PreferencePair(PAIR.prompt, response, "x").chosen_conversation()
        sft = tokenize_conversation(conv, template, tiny_tokenizer)
        ours = [int(lab != IGNORE_INDEX) for lab in sft.labels]
        end = max(i for i, m in enumerate(ours) if m) + 1  # TRL's sequence stops after the EOT
        n = len(pair.prompt_ids) + len(pair.chosen_ids if k == 0 else pair.rejected_ids)
        assert batch["completion_mask"][k, :n].tolist() == ours[:end]
        assert batch["input_ids"][k, :n].tolist() == sft.input_ids[:end]


@pytest.mark.parametrize(
    "row",
    [
        {"prompt": "Name a fruit.", "chosen": "A pear.", "rejected": "No."},
        {
            "prompt": [{"role": "user", "content": "Name a fruit."}],
            "chosen": [{"role": "assistant", "content": "A pear."}],
            "rejected": [{"role": "assistant", "content": "No."}],
        },
        {
            "conversations": [{"from": "human", "value": "Name a fruit."}],
            "chosen": {"from": "gpt", "value": "A pear."},
            "rejected": {"from": "gpt", "value": "No."},
        },
        {"instruction": "Name a fruit.", "chosen": "A pear.", "rejected": "No."},
        {"chosen": "\n\nHuman: Name a fruit.\n\nAssistant: A pear.",
         "rejected": "\n\nHuman: Name a fruit.\n\nAssistant: No."},
    ],
    ids=["trl-strings", "trl-messages", "sharegpt", "alpaca", "hh"],
)  # fmt: skip
def test_every_preference_format_gives_the_same_tokens(tmp_path, tiny_tokenizer, row):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(row) + "\n")
    cfg = DPORunConfig(data=str(path), max_seq_len=128)
    template = get_template("chatml", tiny_tokenizer)
    pairs, rejects = load_pairs(str(path), cfg, template, tiny_tokenizer)
    expected = PreferencePair([Message("user", "Name a fruit.")], "A pear.", "No.")
    assert rejects == []
    assert pairs == [tokenize_pair(expected, template, tiny_tokenizer, 128)]


@pytest.mark.parametrize(
    "row, field, words",
    [
        ({"prompt": "Hi.", "chosen": "Same.", "rejected": "Same."}, "rejected", "same response"),
        ({"prompt": "Hi.", "chosen": "  ", "rejected": "No."}, "chosen", "non-empty"),
        ({"prompt": "Hi.", "chosen": "Yes."}, "rejected", "missing"),
        ({"prompt": "word " * 80, "chosen": "Yes.", "rejected": "No."}, "prompt", "no room"),
        ({"messages": [{"role": "user", "content": "Hi."},
                       {"role": "assistant", "content": "Yo."}]}, "chosen", "not a preference"),
    ],
)  # fmt: skip
def test_bad_row_is_one_line_naming_file_row_field(tmp_path, tiny_tokenizer, row, field, words):
    good = {"prompt": "Name a fruit.", "chosen": "A pear.", "rejected": "No."}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    cfg = DPORunConfig(data=str(path), max_seq_len=32, format=None)
    template = get_template("chatml", tiny_tokenizer)
    fmt = "messages" if "messages" in row else "preference"
    with pytest.raises(DataFormatError) as e:
        load_pairs(str(path), cfg.model_copy(update={"format": fmt}), template, tiny_tokenizer)
    msg = str(e.value)
    assert "\n" not in msg and f"{path}:2: field '{field}'" in msg, msg
    assert words in msg, msg
    skipping = cfg.model_copy(update={"format": fmt, "skip_invalid": True})
    pairs, rejects = load_pairs(str(path), skipping, template, tiny_tokenizer)
    assert len(pairs) == 1 and [r["row"] for r in rejects] == [2]


def test_config_problems_are_reported_together(tmp_path):
    cfg = DPORunConfig(data=str(tmp_path / "missing.jsonl"), loss_type="ipo", label_smoothing=0.1)
    with pytest.raises(ConfigError, match="2 config problem"):
        run_dpo(cfg, progress=False)
    assert not (tmp_path / "runs").exists()


def test_dpo_end_to_end_writes_metrics_and_held_out_numbers(tmp_path):
    cfg = config(tmp_path, train={"lr": 1e-2, "max_steps": 3, "batch_size": 4, "save_every": 2})
    result = run_dpo(cfg, progress=False)
    run = tmp_path / "run"
    assert result.steps == 3 and result.n_train == 12 and result.n_eval == 4
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train = [e for e in events if "loss" in e]
    assert [e["step"] for e in train] == [1, 2, 3]
    for key in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"):
        assert all(math.isfinite(e[key]) for e in train), key
    summary = json.loads((run / "summary.json").read_text())
    # before training the policy is the reference: every implicit reward is 0, no pair is won
    assert summary["held_out_before"]["accuracy"] == 0.0
    assert summary["held_out_before"]["margin"] == 0.0
    assert summary["held_out_after"]["margin"] > 0  # chosen is a learnable lowercase word
    assert summary["wall_s"] >= summary["seconds"] > 0 and summary["peak_rss_mb"] > 0
    assert "peak_cuda_mb" in summary and "rollout_tokens_per_s" not in summary  # no sampling
    assert (run / "adapter" / "adapter_model.safetensors").exists()
    assert (run / "loss_curve.png").stat().st_size > 0
    assert "loss_type: sigmoid" in (run / "config.yaml").read_text()

    # a second run of the same folder resumes from the last checkpoint (the final step's)
    more = cfg.model_copy(update={"train": cfg.train.model_copy(update={"max_steps": 4})})
    resumed = run_dpo(more, progress=False)
    assert resumed.resumed_from and resumed.resumed_from.endswith("checkpoint-3")
    assert resumed.before == result.before  # kept from the first run, not remeasured
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if "loss" in e] == [1, 2, 3, 4]  # no step logged twice
    assert [e["step"] for e in events if "eval_loss" in e][0] == 0  # the before-evaluation


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge", "robust"])
def test_each_loss_type_trains_one_step(tmp_path, loss_type):
    cfg = config(tmp_path, loss_type=loss_type, eval_ratio=0.0)
    result = run_dpo(cfg, progress=False)
    losses = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    first = [e["loss"] for e in losses if "loss" in e][0]
    assert result.steps == 1 and math.isfinite(first)
    if loss_type == "ipo":  # (margin - 1/(2 beta))^2 with a zero margin at the start
        assert first == pytest.approx((1 / (2 * cfg.beta)) ** 2, rel=1e-4)
    if loss_type == "hinge":  # relu(1 - beta * 0)
        assert first == pytest.approx(1.0, rel=1e-4)
    if loss_type == "sigmoid":
        assert first == pytest.approx(math.log(2), rel=1e-4)


def test_full_fine_tuning_uses_a_frozen_copy_as_reference(tmp_path):
    cfg = config(tmp_path, lora={"enabled": False}, eval_ratio=0.0)
    assert run_dpo(cfg, progress=False).steps == 1
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


@pytest.mark.parametrize("save_every, kept", [(1, True), (None, False)])
def test_failed_run_keeps_its_folder_only_when_it_holds_a_checkpoint(
    tmp_path, monkeypatch, save_every, kept
):
    import instructkit.train.dpo as dpo

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(dpo, "_write_outputs", fail)
    train = {"lr": 1e-2, "max_steps": 1, "batch_size": 4, "save_every": save_every}
    with pytest.raises(RuntimeError, match="disk full"):
        run_dpo(config(tmp_path, eval_ratio=0.0, train=train), progress=False)
    assert (tmp_path / "run").exists() == kept
    if kept:
        assert (tmp_path / "run" / "checkpoints" / "checkpoint-1" / "trainer_state.json").exists()


def test_eval_batches_are_equal_so_the_mean_of_batch_means_is_the_pair_mean():
    from instructkit.train.dpo import _eval_batch

    assert [_eval_batch(n) for n in (20, 7, 11, 16, 1)] == [5, 7, 1, 8, 1]


def test_data_takes_a_dataset_spec_with_a_column_mapping(tmp_path, tiny_tokenizer):
    """`data` is a path (as before) or a spec: a Parquet file with other column names trains."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(x) for x in write_pairs(tmp_path / "p.jsonl").read_text().splitlines()]
    renamed = [{"question": r["prompt"], "good": r["chosen"], "bad": r["rejected"]} for r in rows]
    pq.write_table(pa.Table.from_pylist(renamed), tmp_path / "p.parquet")
    spec = {
        "path": str(tmp_path / "p.parquet"),
        "format": "preference",
        "columns": {"prompt": "question", "chosen": "good", "rejected": "bad"},
    }
    cfg = config(tmp_path, data=spec, eval_ratio=0.0)
    assert cfg.data.columns == spec["columns"]  # a DatasetSpec, not a string
    template = get_template("chatml", tiny_tokenizer)
    from_spec, _ = load_pairs(cfg.data, cfg, template, tiny_tokenizer)
    plain, _ = load_pairs(str(tmp_path / "p.jsonl"), cfg, template, tiny_tokenizer)
    assert from_spec == plain and len(plain) == 16
    assert run_dpo(cfg, progress=False).n_train == 16
    missing = config(tmp_path, data={"path": str(tmp_path / "nope.parquet")})
    with pytest.raises(ConfigError, match="nope.parquet does not exist"):
        run_dpo(missing, progress=False)
