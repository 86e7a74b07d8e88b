"""The demo's wiring: recipe and config, the item sample, and a whole run on the tiny model."""

import json
from pathlib import Path

import pytest
import yaml

from instructkit.config import load_config
from instructkit.data.task_suite import UNSEEN_CLUSTERS, load_suite
from instructkit.demo import DEMO_SFT, DemoConfig, DemoEvalConfig, demo_items, run_demo
from instructkit.errors import ConfigError
from instructkit.evaluate.results import load_eval_results

RECIPE = Path(__file__).parents[2] / "recipes" / "demo.yaml"
TINY = [
    "model=tiny-random-llama",
    "template=chatml",
    "eval.seen_limit=1",
    "eval.unseen_limit=2",
    "eval.max_new_tokens=4",
    "eval.examples=2",
    "sft.train.max_steps=2",
    "sft.lora.r=4",
    "sft.max_seq_len=1024",  # the tiny tokenizer spends more tokens per word than SmolLM2's
    "sft.train.batch_tokens=1024",
]


def test_the_recipe_is_the_defaults():
    from_recipe = load_config(DemoConfig, RECIPE, out="o")
    assert from_recipe.model_dump() == DemoConfig(out="o").model_dump()


def test_sft_overrides_are_merged_over_the_demo_defaults():
    cfg = load_config(DemoConfig, None, ["sft.train.epochs=2"], out="o")
    assert cfg.sft.train.epochs == 2
    assert cfg.sft.train.lr == DEMO_SFT["train"]["lr"] and cfg.sft.train.batch_tokens == 512
    assert cfg.sft.lora.r == 16 and cfg.sft.max_seq_len == 384 and cfg.sft.task_mix.few_shot == 0.2


def test_the_demo_seed_seeds_training_unless_sft_sets_its_own(tmp_path):
    from instructkit.demo import _sft_config

    cfg = load_config(DemoConfig, None, ["seed=3", "sft.task_mix.seed=7"], out="o")
    sft = _sft_config(cfg, tmp_path / "suite.jsonl", tmp_path / "sft")
    assert (sft.train.seed, sft.mixture.seed, sft.task_mix.seed) == (3, 3, 7)
    assert sft.datasets[0].kind == "tasks" and sft.output_dir == str(tmp_path / "sft")


def test_sft_keys_the_demo_sets_are_refused(tmp_path):
    cfg = load_config(DemoConfig, None, ["sft.output_dir=elsewhere"], out=str(tmp_path / "o"))
    with pytest.raises(ConfigError, match="sft.output_dir: set by the demo"):
        run_demo(cfg)
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_demo_items_keep_every_train_item_and_a_seeded_test_sample():
    suite = load_suite()
    items = demo_items(suite, DemoEvalConfig(seen_limit=3, unseen_limit=30), seed=0)
    assert [it for it in items if it["split"] == "train"] == [
        it for it in suite if it["split"] == "train"
    ]
    tests = [it for it in items if it["split"] == "test"]
    counts: dict[str, int] = {}
    for it in tests:
        counts[it["task"]] = counts.get(it["task"], 0) + 1
    unseen = {t for t in counts if any(i["task"] == t and i["cluster"] in UNSEEN_CLUSTERS
                                       for i in suite)}  # fmt: skip
    assert {counts[t] for t in counts if t not in unseen} == {3}
    assert counts["yes_no"] == 24 and counts["entailment"] == 30  # yes_no has 24 only
    assert items == demo_items(suite, DemoEvalConfig(seen_limit=3, unseen_limit=30), seed=0)
    other = demo_items(suite, DemoEvalConfig(seen_limit=3, unseen_limit=30), seed=1)
    assert other != items and len(other) == len(items)
    everything = demo_items(suite, DemoEvalConfig(seen_limit=None, unseen_limit=None), seed=0)
    assert everything == suite


def test_a_whole_demo_on_the_tiny_model(tmp_path):
    out = tmp_path / "demo"
    results = run_demo(load_config(DemoConfig, None, TINY, out=str(out)))

    # one results schema: base vs tuned on strict, lenient and format, seen and unseen
    assert results.systems == ["base", "tuned"]
    assert load_eval_results(out / "results.json").systems == ["base", "tuned"]
    assert {"seen", "unseen", "cluster:nli", "cluster:sentiment"} <= set(results.groups)
    assert results.groups["unseen"].n == 18 and results.groups["seen"].n == 30
    assert set(results.groups["unseen"].comparisons) == {"lenient", "strict", "format"}
    assert results.meta["train_log"] == "sft/metrics.jsonl"
    assert "entailment" in results.meta["unseen_tasks"]

    # the tuned run reused the base run's answers instead of generating them again
    base = [json.loads(x) for x in (out / "base.per_item.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r["response"] for r in base if "response" in r}
    assert len(by_id) == 48
    assert all(it.responses["base"] == by_id[it.id] for it in results.per_item)

    # train sft ran on the suite's train items as a FLAN task mixture
    sft = yaml.safe_load((out / "sft" / "config.yaml").read_text())
    assert sft["datasets"] == [
        {**sft["datasets"][0], "path": str(out / "suite.jsonl"), "kind": "tasks", "split": "train"}
    ]
    assert sft["model"] == "tiny-random-llama" and sft["train_on"] == "all"
    assert (out / "sft" / "adapter" / "adapter_config.json").exists()
    evaluated = yaml.safe_load((out / "eval.yaml").read_text())
    assert evaluated["systems"][1]["adapter"] == str(out / "sft" / "adapter")

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"seen", "unseen", "wall_s"} and summary["wall_s"] > 0
    for split in ("seen", "unseen"):
        assert set(summary[split]) == {"strict", "lenient", "format"}
        for s in summary[split].values():
            assert set(s) == {"n", "before", "after", "delta", "ci", "p"} and len(s["ci"]) == 2
    assert summary["unseen"]["lenient"]["n"] == 18

    html = (out / "report.html").read_text()
    assert 'id="examples"' in html and 'id="training"' in html and 'id="format-content"' in html
