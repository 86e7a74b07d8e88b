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


@pytest.mark.parametrize("name", ["tiny.yaml", "demo_recipe.yaml"])
def test_bundled_recipes_load_and_check(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_recipe(ROOT / "recipes" / name, out="unused")
    assert all(not s.startswith("stages.") for s in map(str, cfg.stages))
    assert plan_recipe(cfg)[0].reason == "no cached output"


DEMO_TINY = [
    "model=tiny-random-llama",
    "vars.template=chatml",
    "vars.limit=12",
    "vars.max_new_tokens=4",
    "stages.train.config.train.max_steps=2",
    "stages.train.config.lora.r=4",
    "stages.train.config.max_seq_len=1024",  # the tiny tokenizer spends more tokens per word
    "stages.train.config.train.batch_tokens=1024",
]


def test_the_demo_as_a_recipe_reuses_the_base_answers_and_keeps_them_cached(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    recipe, out = ROOT / "recipes" / "demo_recipe.yaml", str(tmp_path / "run")
    first = run_recipe(load_recipe(recipe, DEMO_TINY, out=out), progress=False)
    assert first.ran == ["base", "train", "eval", "report"]
    run = Path(out)
    results = load_eval_results(run / "stages" / "eval" / "results.json")
    assert results.systems == ["base", "tuned"] and "seen" in results.groups
    by_id = {}
    for line in (run / "stages" / "base" / "results.per_item.jsonl").read_text().splitlines():
        row = json.loads(line)
        by_id[row["id"]] = row["response"]
    assert all(it.responses["base"] == by_id[it.id] for it in results.per_item)
    assert 'id="training"' in (run / "report.html").read_text()

    epochs = [*DEMO_TINY, "stages.train.config.train.max_steps=3"]
    again = run_recipe(load_recipe(recipe, epochs, out=out), progress=False)
    assert again.ran == ["train", "eval", "report"] and again.skipped == ["base"]
