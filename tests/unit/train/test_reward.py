"""Reward-model pieces: pairs through the data layer with their checks, the prompt split, the
calibration bins, the score head, and the trained model as a RewardFn (tiny model, seconds)."""

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from instructkit.data.templates import get_template
from instructkit.errors import ConfigError, DataFormatError
from instructkit.models import build_tiny_model, build_tiny_tokenizer
from instructkit.train.reward import (
    RewardConfig,
    calibration_bins,
    expected_calibration_error,
    split_by_prompt,
)
from instructkit.train.reward_data import PairOptions, TokenizedPair, load_pairs
from instructkit.train.reward_model import (
    RewardModel,
    pad_rows,
    sequence_rewards,
    with_score_head,
)
from instructkit.train.rewards import RewardFn, RewardItem

ROOT = Path(__file__).parents[3]


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def chatml(tok):
    return get_template("chatml", tok)


def write(tmp: Path, rows: list, name: str = "pairs.jsonl") -> Path:
    path = tmp / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


PROMPT, GOOD, BAD = "Say hi.", "hi there", "HI THERE"
FORMATS = {
    "trl-strings": {"prompt": PROMPT, "chosen": GOOD, "rejected": BAD},
    "trl-messages": {
        "chosen": [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": GOOD}],
        "rejected": [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": BAD}],
    },
    "hh": {
        "chosen": f"\n\nHuman: {PROMPT}\n\nAssistant: {GOOD}",
        "rejected": f"\n\nHuman: {PROMPT}\n\nAssistant: {BAD}",
    },
    "sharegpt": {
        "conversations": [{"from": "human", "value": PROMPT}],
        "chosen": {"from": "gpt", "value": GOOD},
        "rejected": {"from": "gpt", "value": BAD},
    },
    "alpaca": {"instruction": PROMPT, "input": "", "chosen": GOOD, "rejected": BAD},
}


@pytest.mark.parametrize("name", FORMATS)
def test_every_preference_format_renders_to_the_same_tokens(tmp_path, tok, chatml, name):
    reference = load_pairs(
        write(tmp_path, [FORMATS["trl-strings"]], "ref.jsonl"), tok, chatml, PairOptions()
    )
    got = load_pairs(write(tmp_path, [FORMATS[name]]), tok, chatml, PairOptions())
    assert len(got.pairs) == 1 and not got.rejects
    assert got.pairs[0].chosen == reference.pairs[0].chosen
    assert got.pairs[0].rejected == reference.pairs[0].rejected
    assert got.pairs[0].chosen != got.pairs[0].rejected
    text = tok.decode(got.pairs[0].chosen)
    assert text.startswith("<|im_start|>user\nSay hi.<|im_end|>") and GOOD in text


BAD_ROWS = [
    ({"prompt": "q", "chosen": "same", "rejected": " same "}, "rejected", "the same response"),
    ({"prompt": "q", "chosen": "", "rejected": "b"}, "chosen", "non-empty"),
    ({"prompt": "q", "chosen": "a", "rejected": "b", "margin": "big"}, "margin", "number"),
    ({"prompt": "q", "chosen": "a " * 80, "rejected": "b"}, "chosen", "max_seq_len=48"),
]


@pytest.mark.parametrize("row,field,words", BAD_ROWS, ids=lambda x: str(x)[:20])
def test_a_bad_pair_is_one_error_naming_file_row_field_and_fix(
    tmp_path, tok, chatml, row, field, words
):
    good = {"prompt": "q", "chosen": "a", "rejected": "b"}
    path = write(tmp_path, [good, row])
    with pytest.raises(DataFormatError) as info:
        load_pairs(path, tok, chatml, PairOptions(max_seq_len=48))
    e = info.value
    assert (Path(e.path), e.row, e.field) == (path, 2, field)
    assert words in str(e) and e.fix and "skip_invalid: true" in str(e)


def test_skip_invalid_writes_every_bad_pair_to_rejects(tmp_path, tok, chatml):
    good = {"prompt": "q", "chosen": "a", "rejected": "b"}
    path = write(tmp_path, [good] + [r for r, _, _ in BAD_ROWS] + ["not an object"])
    got = load_pairs(path, tok, chatml, PairOptions(max_seq_len=48, skip_invalid=True))
    assert len(got.pairs) == 1
    assert sorted((r.row, r.field) for r in got.rejects) == [
        (2, "rejected"),
        (3, "chosen"),
        (4, "margin"),
        (5, "chosen"),
        (6, None),
    ]
    assert all(r.path == str(path) and r.reason for r in got.rejects)


def test_a_conversation_in_a_pair_file_is_rejected(tmp_path, tok, chatml):
    rows = [
        {"instruction": "q", "chosen": "a", "rejected": "b"},
        {"instruction": "q", "output": "a"},
    ]
    with pytest.raises(DataFormatError, match="not a preference pair") as info:
        load_pairs(write(tmp_path, rows), tok, chatml, PairOptions())
    assert info.value.row == 2


def test_too_long_truncate_cuts_the_response_and_counts_it(tmp_path, tok, chatml):
    rows = [{"prompt": "q", "chosen": "a " * 80, "rejected": "b " * 80, "margin": 0.5}]
    got = load_pairs(
        write(tmp_path, rows), tok, chatml, PairOptions(max_seq_len=48, too_long="truncate")
    )
    assert got.truncated == 1 and len(got.pairs[0].chosen) == 48
    assert got.pairs[0].margin == 0.5 and got.has_margin
    same = [{"prompt": "q", "chosen": "a " * 80 + "x", "rejected": "a " * 80 + "y"}]
    with pytest.raises(DataFormatError, match="identical within max_seq_len"):
        load_pairs(
            write(tmp_path, same), tok, chatml, PairOptions(max_seq_len=48, too_long="truncate")
        )


def test_split_by_prompt_keeps_each_prompt_on_one_side():
    pairs = [TokenizedPair([1], [2], prompt=f"p{i % 10}") for i in range(40)]
    train, held = split_by_prompt(pairs, 0.2, seed=1)
    assert len(train) + len(held) == 40
    assert {p.prompt for p in held} & {p.prompt for p in train} == set()
    assert len({p.prompt for p in held}) == 2


def test_calibration_bins_by_hand():
    # each pair counts in both orders: d = 0 -> p 0.5 (outcome 1) and 0.5 (outcome 0);
    # d = ln 3 -> p 0.75 (outcome 1) and 0.25 (outcome 0)
    bins = calibration_bins([0.0, math.log(3)], n_bins=2)
    low, high = bins
    assert (low["count"], high["count"]) == (1, 3)
    assert low["predicted"] == pytest.approx(0.25) and low["observed"] == 0.0
    assert high["predicted"] == pytest.approx((0.5 + 0.5 + 0.75) / 3)
    assert high["observed"] == pytest.approx(2 / 3)
    # ECE = (1 * 0.25 + 3 * |2/3 - 7/12|) / 4 = 0.125
    assert expected_calibration_error(bins) == pytest.approx(0.125)


def test_score_head_reads_the_last_real_token_whatever_the_padding(tok):
    model = with_score_head(build_tiny_model(tok), pad_token_id=tok.pad_token_id, seed=1)
    assert model.score.weight.shape == (1, 64) and model.score.weight.abs().sum() > 0
    rows = [[5, 6, 7, 8, 9], [5, 6]]
    ids, mask = pad_rows(rows, tok.pad_token_id)
    batched = sequence_rewards(model, ids, mask)
    for i, r in enumerate(rows):
        alone = sequence_rewards(model, torch.tensor([r]), torch.ones(1, len(r), dtype=torch.long))
        assert torch.allclose(batched[i], alone[0], atol=1e-5)


def test_reward_model_is_a_reward_fn_scoring_in_batches(tok, chatml):
    model = with_score_head(build_tiny_model(tok), pad_token_id=tok.pad_token_id, seed=1)
    rm = RewardModel(model, tok, chatml, max_seq_len=32, name="model:x", batch_size=2)
    assert isinstance(rm, RewardFn)
    items = [RewardItem("Say hi.", t) for t in ("hi", "HELLO THERE", "", "a " * 100)]
    items.append(RewardItem("long " * 100, "ok"))
    scores = rm(items)
    assert len(scores) == 5 and all(math.isfinite(s) for s in scores)
    assert rm(items[1:2]) == pytest.approx(scores[1:2], abs=1e-5)  # batch-independent
    assert len(set(scores[:2])) == 2
    rm.check({"anything": 1}, path="x", row_no=1)  # reads no field: never raises


def _keys(model, prefix=""):
    out = []
    for name, field in model.model_fields.items():
        out.append(prefix + name)
        ann = field.annotation
        for t in getattr(ann, "__args__", (ann,)):
            if isinstance(t, type) and hasattr(t, "model_fields"):
                out += _keys(t, f"{prefix}{name}.")
    return out


@pytest.mark.parametrize("key", _keys(RewardConfig))
def test_every_config_key_is_documented(key):
    doc = (ROOT / "docs" / "reward.md").read_text("utf-8")
    rows = [line for line in doc.splitlines() if line.startswith("|")]
    name = key.rsplit(".", 1)[-1]
    assert any(f"`{name}`" in row or f"`{key}`" in row for row in rows), key


def test_train_keys_a_pair_loop_does_not_use_are_a_config_error(tmp_path):
    from instructkit.train.reward import run_reward

    path = write(tmp_path, [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    cfg = RewardConfig.model_validate(
        {
            "data": str(path),
            "output_dir": str(tmp_path / "out"),
            "train": {"packing": False, "early_stopping_patience": 2},
            "max_seq_len": 4096,
        }
    )
    with pytest.raises(ConfigError) as info:
        run_reward(cfg)
    msg = str(info.value)
    assert "train.packing" in msg and "train.early_stopping_patience" in msg
    assert re.search(r"2 config problem", msg) and "batch_tokens" in msg
    assert not (tmp_path / "out").exists()


def test_data_takes_dataset_specs_with_a_column_mapping(tmp_path, tok, chatml):
    """`data` entries are paths (as before) or specs: a CSV with other column names reads as
    the same pairs as the JSONL it was made from."""
    from instructkit.train.reward import _check, _pairs

    rows = [{"prompt": f"Say {w}.", "chosen": w, "rejected": w.upper()} for w in "abcdefgh"]
    jsonl = write(tmp_path, rows)
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text(
        "q,good,bad\n" + "".join(f"{r['prompt']},{r['chosen']},{r['rejected']}\n" for r in rows)
    )
    spec = {"path": str(csv_path), "columns": {"prompt": "q", "chosen": "good", "rejected": "bad"}}
    opts = PairOptions(max_seq_len=64)
    from_csv = load_pairs(spec, tok, chatml, opts).pairs
    assert [p.row for p in from_csv] == list(range(2, 10))  # CSV lines (the header is line 1)
    from_jsonl = load_pairs(jsonl, tok, chatml, opts).pairs
    assert [replace(p, row=0) for p in from_csv] == [replace(p, row=0) for p in from_jsonl]
    cfg = RewardConfig.model_validate({"data": [spec, str(jsonl)], "eval_ratio": 0.25})
    assert cfg.data_paths[0].columns == spec["columns"] and cfg.data_paths[1] == str(jsonl)
    train, held, loaded = _pairs(cfg, tok, chatml)
    assert len(train) + len(held) == 16 and [got.n_rows for got in loaded] == [8, 8]
    bad = RewardConfig.model_validate({"data": {"path": str(tmp_path / "no.csv")}})
    with pytest.raises(ConfigError, match=r"data\[0\]: .*no.csv does not exist"):
        _check(bad)
