import pytest

from instructkit.config import load_config, parse_overrides
from instructkit.errors import ConfigError
from instructkit.train.loop import TrainConfig


def test_parse_overrides_nested_and_typed():
    assert parse_overrides(["a.b=1", "c=x", "d=true", "e=1e-4"]) == {
        "a": {"b": 1},
        "c": "x",
        "d": True,
        "e": 1e-4,
    }


def test_all_problems_reported_together_with_nearest_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("batch_tokenz: 8\nlr: -1\ngrad_accum: many\n")
    with pytest.raises(ConfigError) as e:
        load_config(TrainConfig, p)
    msg = str(e.value)
    assert "3 config problem(s)" in msg
    assert "unknown key 'batch_tokenz' (did you mean 'batch_tokens'?)" in msg
    assert "key 'lr'" in msg and "key 'grad_accum'" in msg


def test_overrides_beat_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lr: 0.1\nepochs: 2\n")
    cfg = load_config(TrainConfig, p, ["lr=0.5"])
    assert cfg.lr == 0.5 and cfg.epochs == 2


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["lr"])
