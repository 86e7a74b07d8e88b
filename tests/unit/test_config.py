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


def test_nested_unknown_keys_are_matched_against_the_nested_model(tmp_path):
    from instructkit.demo import DemoConfig
    from instructkit.evaluate.runner import EvalConfig

    p = tmp_path / "c.yaml"
    p.write_text("out: o\nsft:\n  train:\n    max_step: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(DemoConfig, p)
    assert "unknown key 'sft.train.max_step' (did you mean 'max_steps'?)" in str(e.value)
    p.write_text("systems:\n- name: a\n  lm: x\ntasks: []\n")
    with pytest.raises(ConfigError) as e:
        load_config(EvalConfig, p)
    msg = str(e.value)
    assert "unknown key 'systems.0.lm' (valid: name, model, " in msg
    assert "title" not in msg.split("systems.0.lm")[1].split(";")[0]


def test_unknown_key_in_an_optional_nested_model(tmp_path):
    from instructkit.evaluate.runner import EvalConfig

    p = tmp_path / "c.yaml"
    p.write_text("systems: [{name: a, model: m}]\ntasks: []\njudge: {lm: local, max_item: 3}\n")
    with pytest.raises(
        ConfigError, match=r"unknown key 'judge.max_item' \(did you mean 'max_items'"
    ):
        load_config(EvalConfig, p)


def test_overrides_reach_into_list_entries(tmp_path):
    from instructkit.evaluate.runner import EvalConfig

    p = tmp_path / "c.yaml"
    p.write_text(
        "systems: [{name: a, model: m}]\ntasks: [{name: t, path: p}, {name: u, path: q}]\n"
    )
    cfg = load_config(EvalConfig, p, ["tasks.1.limit=5", "systems.0.adapter=ad"])
    assert cfg.tasks[1].limit == 5 and cfg.tasks[0].limit is None and cfg.systems[0].adapter == "ad"
    with pytest.raises(ConfigError, match="'tasks' has 2 entries"):
        load_config(EvalConfig, p, ["tasks.2.limit=5"])
