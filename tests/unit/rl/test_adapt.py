"""eval adapt: curves on unseen tasks from two initializations (tiny model), the curves in the
results schema, and their section in the HTML report."""

import json

import pytest

from instructkit.errors import ConfigError, DataFormatError
from instructkit.evaluate.curves import build_curve, mean_ci
from instructkit.evaluate.results import load_eval_results, parse_eval_results
from instructkit.report.html import write_report
from instructkit.rl.adapt import AdaptConfig, format_adapt_summary, run_adapt_eval


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A LoRA adapter of the tiny model with non-zero B (so it differs from the base)."""
    import torch

    from instructkit.models import load_model, mark_adapter_portable
    from instructkit.train.sft import AdapterConfig, apply_lora

    model, tok = load_model("tiny-random-llama")
    torch.manual_seed(1)
    model = apply_lora(model, AdapterConfig(r=4))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    out = tmp_path_factory.mktemp("adapter") / "adapter"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    mark_adapter_portable(out, "tiny-random-llama")
    return out


@pytest.fixture(scope="module")
def results(adapter, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapt") / "adapt.json"
    cfg = AdaptConfig(
        model="tiny-random-llama",
        inits=[{"name": "base"}, {"name": "tuned", "adapter": str(adapter)}],
        task_names=["count_words", "yes_no"],
        ks=[2, 0],
        query_size=2,
        seeds=[0, 1],
        lr=0.1,
        lora={"r": 4},
        max_new_tokens=4,
        out=str(out),
    )
    return run_adapt_eval(cfg, progress=False), out


def test_curves_have_a_point_per_system_and_k_over_task_seed_units(results):
    res, out = results
    assert load_eval_results(out) == res  # written and valid
    assert set(res.curves) == {"lenient", "strict", "query_loss"}
    for curve in res.curves.values():
        assert list(curve.points) == ["base", "tuned"]
        for points in curve.points.values():
            assert [p.k for p in points] == [0, 2]
            assert all(p.n == 4 for p in points)  # 2 tasks x 2 seeds
            assert all(p.ci_low <= p.mean <= p.ci_high for p in points)
        assert [c.k for c in curve.comparisons["tuned"]] == [0, 2]
    loss = {p.k: p.mean for p in res.curves["query_loss"].points["base"]}
    assert loss[2] < loss[0]  # two SGD steps on support items of the task lower its query loss
    assert not res.curves["query_loss"].higher_is_better
    assert set(res.tasks) == {"count_words", "yes_no"}
    assert "lenient@k=0" in res.overall.metrics
    assert "query_loss by adaptation steps" in format_adapt_summary(res)


def test_k0_of_a_fresh_adapter_is_the_base_model(results):
    """The base's fresh LoRA starts with B = 0: k = 0 differs from the tuned adapter's."""
    res, _ = results
    base = res.curves["query_loss"].points["base"][0].mean
    tuned = res.curves["query_loss"].points["tuned"][0].mean
    assert base != tuned


def test_the_report_draws_the_curves(results, tmp_path):
    _, out = results
    page = write_report([out], tmp_path / "r.html").read_text()
    assert "Adaptation curves" in page
    assert page.count('<table class="curve">') == 3
    assert "data:image/png;base64," in page
    assert "tuned" in page and "vs first (paired)" in page


def test_a_curve_naming_an_unknown_system_is_rejected(results):
    res, _ = results
    obj = json.loads(res.model_dump_json())
    obj["curves"]["lenient"]["points"]["other"] = obj["curves"]["lenient"]["points"]["base"]
    with pytest.raises(DataFormatError, match="other"):
        parse_eval_results(obj)


def test_build_curve_and_mean_ci_by_hand():
    assert mean_ci([0.5]) == (0.5, 0.5)
    lo, hi = mean_ci([0.0, 1.0, 0.0, 1.0])
    assert 0.0 <= lo < 0.5 < hi <= 1.0
    curve = build_curve("lenient", {"a": {0: [0.0, 0.5]}, "b": {0: [1.0, 0.5]}})
    assert curve.points["b"][0].mean == 0.75
    assert curve.comparisons["b"][0].comparison.diff == pytest.approx(0.5)


def test_too_few_items_is_a_config_error(tmp_path):
    cfg = AdaptConfig(model="tiny-random-llama", task_names=["count_words"], ks=[0, 40])
    with pytest.raises(ConfigError, match="max\\(ks\\) \\+ query_size"):
        run_adapt_eval(cfg, progress=False)


def test_cli_eval_adapt(adapter, tmp_path):
    from click.testing import CliRunner

    from instructkit.cli.main import cli

    config = tmp_path / "adapt.yaml"
    config.write_text(
        "model: tiny-random-llama\n"
        f"inits: [{{name: tuned, adapter: {adapter}}}]\n"
        "task_names: [yes_no]\nks: [0, 1]\nquery_size: 2\nseeds: [0]\nmax_new_tokens: 2\n"
        f"out: {tmp_path / 'a.json'}\n",
        "utf-8",
    )
    result = CliRunner().invoke(cli, ["eval", "adapt", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "tuned: k=0:" in result.output and (tmp_path / "a.json").exists()
