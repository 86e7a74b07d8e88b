"""The recipe engine on data-only stages (no model, fast): the plan and its reasons, the cache,
--from/--only, resuming an interrupted stage, and every config problem at once."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from instructkit.cli.main import cli
from instructkit.errors import ConfigError
from instructkit.recipe import engine, load_recipe, plan_recipe, run_recipe

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "recipes" / "data" / "tiny_alpaca.jsonl"


@pytest.fixture()
def recipe(tmp_path):
    """A three-stage data recipe (dedup -> filter -> convert) over a copy of the tiny data."""
    src = tmp_path / "raw.jsonl"
    shutil.copy(DATA, src)
    spec = {
        "out": str(tmp_path / "run"),
        "vars": {"words": 3},
        "stages": {
            "clean": {"kind": "dedup", "src": str(src), "config": {"threshold": 0.7}},
            "filter": {"kind": "filter", "src": "${stages.clean.data}",
                       "config": {"min_instruction_words": "${vars.words}"}},
            "conv": {"kind": "convert", "src": "${stages.filter.data}",
                     "config": {"to": "sharegpt"}},
        },
    }  # fmt: skip
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _plan(path, *overrides, **kw):
    return {s.stage: (s.action, s.reason) for s in plan_recipe(load_recipe(path, overrides), **kw)}


def _run(path, *overrides, **kw):
    return run_recipe(load_recipe(path, overrides), progress=False, **kw)


def test_a_first_run_runs_everything_and_a_second_skips_everything(recipe, tmp_path):
    assert set(_plan(recipe).values()) == {("run", "no cached output")}
    first = _run(recipe)
    assert first.ran == ["clean", "filter", "conv"] and first.skipped == []
    run = tmp_path / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    assert {n: s["status"] for n, s in manifest["stages"].items()} == dict.fromkeys(
        ["clean", "filter", "conv"], "done"
    )
    converted = (run / "stages" / "conv" / "data.jsonl").read_text()
    rows = [json.loads(x) for x in converted.splitlines()]
    assert rows and all("conversations" in r for r in rows)  # converted from the filtered rows
    assert len(rows) < len(DATA.read_text().splitlines())  # dedup and filter dropped rows
    for stage in ("clean", "filter", "conv"):
        assert (run / "stages" / stage / "log.txt").exists()
        assert (run / "stages" / stage / "stage.yaml").exists()
    assert yaml.safe_load((run / "config.yaml").read_text())["vars"] == {"words": 3}
    mtime = (run / "stages" / "clean" / "data.jsonl").stat().st_mtime_ns

    second = _run(recipe)
    assert second.ran == [] and second.skipped == ["clean", "filter", "conv"]
    assert {r for _, r in _plan(recipe).values()} == {"cached"}
    assert (run / "stages" / "clean" / "data.jsonl").stat().st_mtime_ns == mtime


def test_a_changed_value_reruns_its_stage_and_downstream_only(recipe):
    _run(recipe)
    changed = ["vars.words=5"]
    assert _plan(recipe, *changed) == {
        "clean": ("skip", "cached"),
        "filter": ("run", "config changed: min_instruction_words 3 -> 5"),
        "conv": ("run", "input changed: filter"),
    }
    assert _run(recipe, *changed).ran == ["filter", "conv"]
    assert _run(recipe, *changed).ran == []
    assert _plan(recipe, *changed, "stages.conv.config.to=messages")["conv"] == (
        "run", "config changed: to sharegpt -> messages"
    )  # fmt: skip


def test_an_edited_input_file_or_new_code_reruns(recipe, tmp_path, monkeypatch):
    _run(recipe)
    with (tmp_path / "raw.jsonl").open("a") as f:
        f.write(json.dumps({"instruction": "Name a large ocean.", "output": "Pacific."}) + "\n")
    plan = _plan(recipe)
    assert plan["clean"] == ("run", f"file changed: {tmp_path / 'raw.jsonl'}")
    assert plan["filter"] == ("run", "input changed: clean")
    _run(recipe)
    monkeypatch.setattr(engine, "code_version", lambda: "9.9.9+other")
    plan = _plan(recipe)
    assert plan["clean"] == ("run", "code changed")
    assert plan["filter"] == ("run", "input changed: clean; code changed")


def test_from_forces_a_stage_and_what_depends_on_it(recipe):
    _run(recipe)
    assert _plan(recipe, from_stage="filter") == {
        "clean": ("skip", "cached"),
        "filter": ("run", "forced (--from filter)"),
        "conv": ("run", "input reruns: filter"),
    }
    assert _run(recipe, from_stage="filter").ran == ["filter", "conv"]


def test_only_runs_one_stage_whose_inputs_are_cached(recipe):
    with pytest.raises(ConfigError, match="--only filter: its input stage.s. clean have no"):
        _run(recipe, only="filter")
    _run(recipe)
    result = _run(recipe, only="filter")
    assert result.ran == ["filter"] and result.skipped == ["clean", "conv"]
    assert result.plan[2].reason == "not selected (--only filter)"
    with pytest.raises(ConfigError, match="--only conv: its input stage.s. filter"):
        _run(recipe, "vars.words=4", only="conv")
    with pytest.raises(ConfigError, match="--only nope: no such stage"):
        _run(recipe, only="nope")
    with pytest.raises(ConfigError, match="exclude each other"):
        _run(recipe, only="conv", from_stage="clean")


def test_an_interrupted_stage_resumes_in_its_folder_and_a_missing_one_reruns(recipe, tmp_path):
    _run(recipe)
    run = tmp_path / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["stages"]["filter"]["status"] = "running"  # as a kill mid-stage leaves it
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "stages" / "filter" / "journal.marker").write_text("kept")
    assert _plan(recipe)["filter"] == ("run", "resuming an interrupted run")
    assert _plan(recipe)["conv"] == ("run", "input reruns: filter")
    assert _run(recipe).ran == ["filter", "conv"]
    assert (run / "stages" / "filter" / "journal.marker").exists()  # not wiped: a resume

    shutil.rmtree(run / "stages" / "conv")
    assert _plan(recipe)["conv"] == ("run", "cached output missing")
    _run(recipe, "vars.words=4")  # a changed key starts the stage in an empty folder
    assert not (run / "stages" / "filter" / "journal.marker").exists()


def test_dry_run_prints_the_plan_and_json(recipe):
    runner = CliRunner()
    r = runner.invoke(cli, ["run", str(recipe), "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == [
        {"stage": s, "action": "run", "reason": "no cached output"}
        for s in ("clean", "filter", "conv")
    ]
    assert not (Path(load_recipe(recipe).out)).exists()  # a dry run writes nothing
    r = runner.invoke(cli, ["run", str(recipe), "--no-progress"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["run", str(recipe), "--dry-run", "--set", "vars.words=6"])
    assert r.exit_code == 0, r.output
    lines = [line.split(maxsplit=2) for line in r.output.splitlines()]
    assert lines == [
        ["clean", "skip", "cached"],
        ["filter", "run", "config changed: min_instruction_words 3 -> 6"],
        ["conv", "run", "input changed: filter"],
    ]


def test_every_problem_of_every_stage_is_reported_at_once(tmp_path):
    bad = {
        "out": str(tmp_path / "run"),
        "model": "tiny-random-llama",
        "stagez": 1,
        "stages": {
            "clean": {"kind": "dedupe", "src": "x.jsonl"},
            "filter": {"kind": "filter", "src": "${stages.clean.data}",
                       "config": {"max_repetiton": 0.2}},
            "train": {"kind": "sft", "config": {"output_dir": "x", "model": "${model}",
                      "datasets": [{"path": "${stages.filter.dta}"}], "train": {"lr": -1}}},
            "eval": {"kind": "eval", "config": {"systems": [{"name": "a", "model": "${vars.no}"}],
                     "tasks": [], "max_new_tokens": 0}},
            "early": {"kind": "report", "config": {"results": ["${stages.later.results}"]}},
            "conv": {"kind": "convert", "config": {"to": "sharegpt"}},
            "rep": {"kind": "report", "confg": {}},
            "tune": {"kind": "sft", "config": {  # the workflow's own checks run too
                "datasets": [{"path": "${stages.clean.data}"}, {"path": "nowhere.jsonl"}],
                "max_seq_len": 2048, "train": {"batch_tokens": 1024}}},
            "score": {"kind": "eval", "config": {
                "systems": [{"name": "a", "model": "m"}, {"name": "a", "model": "m"}],
                "tasks": [{"name": "t", "path": "${stages.clean.data}", "kind": "sft",
                           "metrics": ["exact_mtach"]}]}},
        },
    }  # fmt: skip
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad, sort_keys=False))
    r = CliRunner().invoke(cli, ["run", str(path), "--dry-run"])
    assert r.exit_code == 1
    expected = [
        "unknown key 'stagez' (did you mean 'stages'?)",
        "unknown key 'stages.rep.confg' (did you mean 'config'?)",
        "stages.clean.kind: unknown kind 'dedupe' (did you mean 'dedup'?)",
        "stages.filter.config: unknown key 'max_repetiton' (did you mean 'max_repetition'?)",
        "stages.train: ${stages.filter.dta}: a filter stage's outputs are data, rejects, report",
        "stages.train.config.output_dir: set by the recipe",
        "stages.train.config: key 'train.lr': Input should be greater than 0",
        "stages.eval: ${vars.no}: no such key in vars",
        "stages.eval.config: key 'max_new_tokens': Input should be greater than 0",
        "stages.early: ${stages.later.results}: 'later' is no stage",
        "stages.conv.src: a convert stage needs its input data (src)",
        "stages.tune.config: datasets[1].path: nowhere.jsonl does not exist",
        "stages.tune.config: train.batch_tokens (1024) < max_seq_len (2048)",
        "stages.score.config: systems: give each system its own name",
        "stages.score.config: tasks[0].metrics: unknown metric 'exact_mtach'",
    ]
    assert f"error: {len(expected)} config problem(s)" in r.output
    missing = [e for e in expected if e not in r.output]
    assert not missing, r.output
    assert "datasets[0]" not in r.output  # an earlier stage's output counts as there
    assert not (tmp_path / "run").exists()  # nothing ran, nothing was written


def test_a_reference_keeps_its_type_whole_and_is_text_inside_a_string(recipe, tmp_path):
    cfg = load_recipe(recipe, ["vars.name=x"])
    from instructkit.recipe.spec import lookup_in, resolve

    lookup = lookup_in(cfg)
    assert resolve({"a": "${vars.words}", "b": "n=${vars.words}"}, lookup) == {"a": 3, "b": "n=3"}
    assert resolve("${stages.clean.data}", lookup) == str(tmp_path / "run/stages/clean/data.jsonl")


def test_a_failed_stage_is_marked_logged_and_resumed(recipe, tmp_path, monkeypatch):
    from instructkit.recipe import kinds

    def boom(stage_run):
        print("working")
        raise RuntimeError("the disk is full")

    monkeypatch.setitem(kinds.KINDS, "filter", kinds.KINDS["filter"].__class__(
        **{**kinds.KINDS["filter"].__dict__, "run": boom}))  # fmt: skip
    with pytest.raises(RuntimeError, match="the disk is full"):
        _run(recipe)
    run = tmp_path / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    assert [s["status"] for s in manifest["stages"].values()] == ["done", "failed"]
    log = (run / "stages" / "filter" / "log.txt").read_text()
    assert "working" in log and "the disk is full" in log
    monkeypatch.undo()
    assert _plan(recipe)["filter"] == ("run", "resuming after a failure")
    assert _run(recipe).ran == ["filter", "conv"]


def test_an_lm_for_a_stage_that_takes_none_is_refused(recipe):
    with pytest.raises(ConfigError, match="lms names clean, which is no synthesis"):
        _run(recipe, lms={"clean": object()})
