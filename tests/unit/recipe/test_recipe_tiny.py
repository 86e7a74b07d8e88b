"""recipes/tiny.yaml on the tiny random model: the whole lifecycle runs, a second run skips every
stage, and a changed train.lr reruns train, eval and report only."""

import json
from pathlib import Path

import pytest

from instructkit.evaluate.results import load_eval_results
from instructkit.recipe import load_recipe, plan_recipe, run_recipe

ROOT = Path(__file__).resolve().parents[3]
TINY = ROOT / "recipes" / "tiny.yaml"
STAGES = ["clean", "filter", "train", "eval", "report"]


def test_tiny_recipe_runs_then_skips_then_reruns_only_what_a_new_lr_touches(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the recipe's paths are relative to the repository root
    out = str(tmp_path / "run")
    first = run_recipe(load_recipe(TINY, out=out), progress=False)
    assert first.ran == STAGES and first.skipped == []
    run = Path(out)
    assert (run / "stages" / "train" / "adapter" / "adapter_config.json").exists()
    results = load_eval_results(run / "stages" / "eval" / "results.json")
    assert results.systems == ["base", "tuned"]
    assert first.report == run / "report.html"
    html = (run / "report.html").read_text()
    assert html == (run / "stages" / "report" / "report.html").read_text()
    assert 'id="training"' in html  # the train stage's loss, through train_log
    manifest = json.loads((run / "manifest.json").read_text())
    assert list(manifest["stages"]) == STAGES
    assert all(s["status"] == "done" and s["seconds"] >= 0 for s in manifest["stages"].values())
    assert manifest["stages"]["train"]["outputs"]["adapter"] == "stages/train/adapter"
    assert "trained 2 of 2 steps" in (run / "stages" / "train" / "log.txt").read_text()

    second = run_recipe(load_recipe(TINY, out=out), progress=False)
    assert second.ran == [] and second.skipped == STAGES

    lr = ["stages.train.config.train.lr=1e-3"]
    plan = {s.stage: s.reason for s in plan_recipe(load_recipe(TINY, lr, out=out))}
    assert plan["train"] == "config changed: train.lr 0.0003 -> 0.001"
    assert plan["clean"] == plan["filter"] == "cached"
    third = run_recipe(load_recipe(TINY, lr, out=out), progress=False)
    assert third.ran == ["train", "eval", "report"]
    assert third.skipped == ["clean", "filter"]
    stage = (run / "stages" / "train" / "stage.yaml").read_text()
    assert "lr: 0.001" in stage


@pytest.mark.parametrize("name", ["tiny.yaml"])
def test_bundled_recipes_load_and_check(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_recipe(ROOT / "recipes" / name, out="unused")
    assert list(cfg.stages) == STAGES
