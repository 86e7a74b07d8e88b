"""docs/eval.md documents every key of the `eval run` config; the example recipe is valid."""

import re
from pathlib import Path

from instructkit.config import load_config
from instructkit.evaluate.runner import EvalConfig, EvalTaskConfig, JudgeConfig, SystemConfig

ROOT = Path(__file__).parents[3]


def test_every_eval_run_key_is_in_a_table_of_the_docs():
    text = (ROOT / "docs" / "eval.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(\w+)` \|", text, flags=re.MULTILINE))
    for model in (EvalConfig, SystemConfig, EvalTaskConfig, JudgeConfig):
        missing = set(model.model_fields) - documented
        assert not missing, f"{model.__name__}: {sorted(missing)} not documented"


def test_the_example_recipe_is_a_valid_config_that_sets_every_key():
    path = ROOT / "recipes" / "eval_example.yaml"
    cfg = load_config(EvalConfig, path)
    assert len(cfg.systems) == 2 and {t.kind for t in cfg.tasks} == {"tasks", "ifeval"}
    assert cfg.model_fields_set == set(EvalConfig.model_fields)
    assert cfg.judge is not None and cfg.judge.model_fields_set == set(JudgeConfig.model_fields)
