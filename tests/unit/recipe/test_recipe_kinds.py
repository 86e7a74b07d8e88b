"""Stage kinds beyond the tiny recipe's: synthesis with a scripted LM (given from Python), DPO
and an evaluation of its adapter, and the run's report over the eval stages without a report
stage; every key and kind is in docs/recipes.md."""

import json
from pathlib import Path

import yaml

from instructkit.lm.scripted import ScriptedLM
from instructkit.recipe import KINDS, RecipeConfig, StageConfig, load_recipe, run_recipe
from instructkit.recipe.kinds import ConvertConfig, IFEvalConfig, ReportConfig

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "recipes" / "data" / "tiny_alpaca.jsonl"
ITEMS = str(ROOT / "src" / "instructkit" / "resources" / "demo" / "items.jsonl")
DOC = (ROOT / "docs" / "recipes.md").read_text("utf-8")


def _write(tmp_path, spec):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"out": str(tmp_path / "run"), **spec}, sort_keys=False))
    return path


def _evolve(request):
    text = request.messages[-1][1]
    if "#Given Prompt#:" in text:
        given = text.split("#Given Prompt#:\n", 1)[1].rsplit("\n\n#", 1)[0]
        return given + " Explain each step."
    return "First, read the question carefully; then answer it in one clear and short sentence."


def test_evol_with_a_given_lm_feeds_a_data_stage_and_is_cached(tmp_path):
    path = _write(tmp_path, {"stages": {
        "evolve": {"kind": "evol", "src": str(DATA), "config": {"rounds": 1}},
        "clean": {"kind": "dedup", "src": "${stages.evolve.data}"},
    }})  # fmt: skip
    lm = ScriptedLM(_evolve)
    first = run_recipe(load_recipe(path), lms={"evolve": lm}, progress=False)
    assert first.ran == ["evolve", "clean"]
    rows = (tmp_path / "run" / "stages" / "clean" / "data.jsonl").read_text().splitlines()
    assert rows and all("Explain each step." in json.loads(r)["instruction"] for r in rows)
    calls = len(lm.calls)
    again = run_recipe(load_recipe(path), lms={"evolve": lm}, progress=False)
    assert again.ran == [] and len(lm.calls) == calls  # cached: the LM was not asked again


def test_dpo_then_eval_of_its_adapter_and_the_run_report(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    words = ["apple", "pear", "plum", "fig"] * 2
    pairs.write_text("".join(
        json.dumps({"prompt": f"Say the word {w}.", "chosen": w, "rejected": w.upper() + "!"})
        + "\n" for w in words
    ))  # fmt: skip
    path = _write(tmp_path, {"model": "tiny-random-llama", "stages": {
        "prefs": {"kind": "dpo", "config": {
            "model": "${model}", "data": str(pairs), "eval_ratio": 0, "max_seq_len": 64,
            "lora": {"r": 4}, "train": {"lr": 1e-2, "max_steps": 1, "batch_size": 4}}},
        "eval": {"kind": "eval", "config": {
            "systems": [{"name": "dpo", "model": "${model}", "adapter": "${stages.prefs.adapter}",
                         "template": "chatml"}],
            "tasks": [{"name": "items", "path": ITEMS, "kind": "tasks", "limit": 4}],
            "max_new_tokens": 2}},
    }})  # fmt: skip
    result = run_recipe(load_recipe(path), progress=False)
    run = tmp_path / "run"
    assert result.ran == ["prefs", "eval"]
    assert (run / "stages" / "prefs" / "adapter" / "adapter_config.json").exists()
    stage = yaml.safe_load((run / "stages" / "eval" / "stage.yaml").read_text())
    assert stage["systems"][0]["adapter"] == str(run / "stages" / "prefs" / "adapter")
    assert stage["out"] == str(run / "stages" / "eval" / "results.json")
    assert result.report == run / "report.html"
    assert "sentiment" in result.report.read_text()  # the eval stage's task, in the run report


def test_every_key_and_kind_is_documented():
    models = (RecipeConfig, StageConfig, ConvertConfig, IFEvalConfig, ReportConfig)
    missing = [f"{m.__name__}.{k}" for m in models for k in m.model_fields if f"`{k}`" not in DOC]
    missing += [f"kind {k}" for k in KINDS if f"| `{k}` |" not in DOC]
    for name, kind in KINDS.items():
        row = next(line for line in DOC.splitlines() if line.startswith(f"| `{name}` |"))
        missing += [f"{name}.{o}" for o in kind.outputs if f"`{o}`" not in row]
    assert not missing, f"docs/recipes.md does not document {missing}"


def _classify(request):
    """Right when the instruction says "Choose"; otherwise always "positive"."""
    instruction, _, rest = request.messages[-1][1].partition("\n\n")
    right = "positive" if "good" in rest else "negative"
    return right if "Choose" in instruction else "positive"


def test_prompt_optimization_stage_and_a_report_of_its_results(tmp_path):
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(
        json.dumps({"text": f"review {i}: it was {'good' if i % 2 else 'bad'}",
                    "label": "positive" if i % 2 else "negative"}) + "\n" for i in range(40)
    ))  # fmt: skip
    path = _write(tmp_path, {"stages": {
        "opt": {"kind": "optimize", "config": {
            "data": str(data), "inputs": ["text"], "target": "label",
            "labels": ["positive", "negative"], "budget": 60}},
        "report": {"kind": "report", "config": {"results": ["${stages.opt.results}"]}},
    }})  # fmt: skip
    result = run_recipe(load_recipe(path), lms={"opt": ScriptedLM(_classify)}, progress=False)
    run = tmp_path / "run"
    assert result.ran == ["opt", "report"]
    best = json.loads((run / "stages" / "opt" / "result.json").read_text())
    assert "best" in best and (run / "stages" / "opt" / "report.html").exists()
    assert (run / "report.html").read_text() == (run / "stages/report/report.html").read_text()
