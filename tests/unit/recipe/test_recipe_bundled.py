"""The bundled recipes (recipes/*.yaml) on the tiny random model: each one runs end to end in
seconds, its LM stages answered by a ScriptedLM and its sizes made tiny with overrides, so that
the shipped YAML keeps the embedded model as its default. Every bundled recipe, the GPU ones
included, loads and validates without loading a model, and docs/recipes.md lists each one."""

import hashlib
import json
import random
from pathlib import Path

import pytest

from instructkit.evaluate.results import load_eval_results
from instructkit.lm.scripted import ScriptedLM
from instructkit.recipe import load_recipe, plan_recipe, run_recipe

ROOT = Path(__file__).resolve().parents[3]
RECIPES = ROOT / "recipes"
TINY_SFT = [  # the tiny tokenizer spends more tokens per word than SmolLM2's
    "model=tiny-random-llama",
    "vars.template=chatml",
    "stages.train.config.max_seq_len=1024",
    "stages.train.config.train.batch_tokens=1024",
    "stages.train.config.lora.r=4",
]
WORDS = (
    "apple river garden engine winter market letter poem budget station recipe museum planet "
    "bridge lesson ticket harbor forest teacher doctor village castle island ocean mountain"
).split()


def _run(name, overrides, tmp_path, monkeypatch, lms=None):
    monkeypatch.chdir(ROOT)  # the recipes' paths are relative to the repository root
    cfg = load_recipe(RECIPES / name, overrides, out=str(tmp_path / "run"))
    return run_recipe(cfg, lms=lms or {}, progress=False), tmp_path / "run"


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _self_instruct_answer(request) -> str:
    """Numbered new tasks, Yes/No for classification, and instances."""
    prompt = request.messages[-1][1]
    rng = random.Random(hashlib.sha256((prompt + str(request.seed)).encode()).hexdigest())
    if prompt.startswith("Come up with a series"):
        opener = ["Describe the", "Classify whether the", "Explain the"]
        items = [f"{rng.choice(opener)} {' '.join(rng.sample(WORDS, 6))}." for _ in range(4)]
        return "\n".join(f"{9 + i}. {t}" for i, t in enumerate(items))
    if prompt.startswith("Can the following"):
        return "Yes" if "Task: Classify" in prompt[-120:] else "No"
    a, b = " ".join(rng.sample(WORDS, 3)), " ".join(rng.sample(WORDS, 3))
    if prompt.startswith("Given a classification"):
        return f"Class label: Yes\nInput: {a}\nClass label: No\nInput: {b}"
    return f"Example 1\nInput: {a}\nOutput: The {b} is near the {a}."


def test_self_instruct_recipe(tmp_path, monkeypatch):
    overrides = [*TINY_SFT, "vars.tasks=4", "vars.steps=2", "vars.limit=4",
                 "stages.eval.config.max_new_tokens=2"]  # fmt: skip
    lm = ScriptedLM(_self_instruct_answer)
    result, run = _run("self_instruct.yaml", overrides, tmp_path, monkeypatch, {"synth": lm})
    assert result.ran == ["synth", "filter", "dedup", "train", "eval", "report"]
    assert len(_rows(run / "stages" / "synth" / "tasks.jsonl")) == 4
    kept = _rows(run / "stages" / "dedup" / "data.jsonl")
    assert kept and all(set(r) >= {"instruction", "output"} for r in kept)
    assert (run / "stages" / "train" / "adapter" / "adapter_config.json").exists()
    assert load_eval_results(run / "stages" / "eval" / "results.json").systems == ["base", "tuned"]
    assert 'id="training"' in (run / "report.html").read_text()
    calls = len(lm.calls)
    again, _ = _run("self_instruct.yaml", overrides, tmp_path, monkeypatch, {"synth": lm})
    assert again.ran == [] and len(lm.calls) == calls


def _evolve_answer(request) -> str:
    """A rewrite that adds a constraint, or a response long enough to be kept."""
    text = request.messages[-1][1]
    if "#Given Prompt#:" in text:
        given = text.split("#Given Prompt#:\n", 1)[1].rsplit("\n\n#", 1)[0]
        return given + " Answer in two short sentences."
    return "First, read the question carefully; then answer it in one clear and short sentence."


def test_evol_ifeval_recipe(tmp_path, monkeypatch):
    overrides = [*TINY_SFT, "vars.rounds=1", "vars.steps=2", "vars.limit=4",
                 "vars.max_new_tokens=4"]  # fmt: skip
    lm = ScriptedLM(_evolve_answer)
    result, run = _run("evol_ifeval.yaml", overrides, tmp_path, monkeypatch, {"evolve": lm})
    assert result.ran == ["evolve", "dedup", "train", "eval", "report"]
    evolved = _rows(run / "stages" / "dedup" / "data.jsonl")
    assert evolved and all("two short sentences" in r["instruction"] for r in evolved)
    results = load_eval_results(run / "stages" / "eval" / "results.json")
    assert results.systems == ["base", "tuned"] and results.ifeval
    assert len(results.per_item) == 4
    assert "ifeval" in (run / "report.html").read_text().lower()
