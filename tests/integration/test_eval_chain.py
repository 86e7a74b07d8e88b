"""Evaluation outputs chain through the CLI: every results file feeds `eval report`, every
per-item file feeds `eval compare`; `eval run` with a judge, end to end on the tiny model."""

import csv
import json
from importlib import resources

import yaml
from click.testing import CliRunner

from instructkit.cli.main import cli
from instructkit.evaluate.results import load_eval_results

ITEMS = resources.files("instructkit.resources").joinpath("demo/items.jsonl")
IFEVAL_ROWS = [
    {
        "key": k,
        "prompt": f"Prompt {k}: answer in lowercase without commas.",
        "instruction_id_list": ["change_case:english_lowercase", "punctuation:no_comma"],
        "kwargs": [{}, {}],
        "response": response,
    }
    for k, response in enumerate(["all fine here", "Has, Commas", "ok then", "nope, No"])
]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _eval_config(tmp_path, n=6, **extra):
    rows = [json.loads(x) for x in ITEMS.read_text().splitlines()]
    items = [r for r in rows if r["split"] == "test" and r["task"] == "sentiment"][:n]
    _jsonl(tmp_path / "items.jsonl", items)
    _jsonl(tmp_path / "gold.jsonl", [{"id": r["id"], "response": r["answer"]} for r in items])
    cfg = {
        "title": "tiny vs gold",
        "systems": [
            {"name": "tiny", "model": "tiny-random-llama", "template": "chatml"},
            {"name": "gold", "responses": str(tmp_path / "gold.jsonl")},
        ],
        "tasks": [
            {
                "name": "demo",
                "path": str(tmp_path / "items.jsonl"),
                "metrics": ["exact_match", "f1"],
            }
        ],
        "out": str(tmp_path / "res" / "results.json"),
        "max_new_tokens": 3,
        **extra,
    }
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "eval.yaml", items


def test_eval_run_with_a_local_judge_then_eval_report(tmp_path):
    config, items = _eval_config(tmp_path, judge={"lm": "local:tiny-random-llama", "max_tokens": 4})
    r = run("eval", "run", "--config", config)
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "res" / "results.json").read_text())
    judge = res["judge"]  # a random model's verdicts are unparseable; they must still load
    assert judge["mode"] == "pairwise" and judge["a"] == "tiny" and judge["n"] == len(items)
    assert judge["unparseable"] == len(judge["unparseable_ids"]) == len(items)
    assert f"ties 0, unparseable {len(items)}" in r.output
    r = run("eval", "report", tmp_path / "res" / "results.json", "-o", tmp_path / "r.html")
    assert r.exit_code == 0, r.output
    html = (tmp_path / "r.html").read_text()
    assert "LLM judge" in html and "tiny vs gold" in html


def test_eval_run_flags_responses_cut_at_max_new_tokens(tmp_path):
    config, items = _eval_config(tmp_path)
    r = run("eval", "run", "--config", config)
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "res" / "results.per_item.jsonl").open()]
    tiny = [row for row in rows if row["system"] == "tiny"]
    assert {row["finish_reason"] for row in tiny} <= {"length", "stop"}
    cut = sum(row["finish_reason"] == "length" for row in tiny)
    assert cut > 0  # a random model rarely stops within 3 tokens
    res = load_eval_results(tmp_path / "res" / "results.json")
    assert res.tasks["sentiment"].truncated == {"tiny": cut, "gold": 0}
    assert f"warning: {cut} of {len(items)} responses of 'tiny'" in r.output


def test_every_output_feeds_compare_and_report(tmp_path):
    config, items = _eval_config(tmp_path)
    assert run("eval", "run", "--config", config).exit_code == 0
    per_item = tmp_path / "res" / "results.per_item.jsonl"
    # eval run's per-item rows -> eval compare -> results JSON
    r = run(
        "eval", "compare", per_item, per_item, "--a-system", "tiny", "--b-system", "gold",
        "--field", "scores.exact_match", "-o", tmp_path / "cmp.json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    cmp = load_eval_results(tmp_path / "cmp.json")
    assert cmp.systems == ["tiny", "gold"] and cmp.tasks["sentiment"].scores["gold"] == 1.0
    # eval ifeval -> rows (compare) + results JSON (report)
    src = _jsonl(tmp_path / "if.jsonl", IFEVAL_ROWS)
    r = run("eval", "ifeval", src, "-o", tmp_path / "if_scored.jsonl", "--system", "m")
    assert r.exit_code == 0, r.output
    r = run(
        "eval", "compare", tmp_path / "if_scored.jsonl", tmp_path / "if_scored.jsonl",
        "--key", "key", "--field", "strict.follow_all_instructions", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["comparisons"]["all"]["mean_a"] == 0.5
    # eval human export (from eval run's rows) and import -o -> results JSON
    assert run("eval", "human", "export", per_item, "-o", tmp_path / "sheet.csv").exit_code == 0
    _fill(tmp_path / "sheet.csv", tmp_path / "sheet.key.json", tmp_path / "ann.csv")
    _fill(tmp_path / "sheet.csv", tmp_path / "sheet.key.json", tmp_path / "bob.csv")
    r = run(
        "eval", "human", "import", tmp_path / "ann.csv", tmp_path / "bob.csv",
        "--key", tmp_path / "sheet.key.json", "-o", tmp_path / "human.json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert load_eval_results(tmp_path / "human.json").human.n_raters == 2
    for results in ("res/results.json", "cmp.json", "if_scored.results.json", "human.json"):
        r = run("eval", "report", tmp_path / results, "-o", tmp_path / "page.html")
        assert r.exit_code == 0, (results, r.output)


def _fill(sheet, key_path, out):
    """A rater who gives "gold" 5 and "tiny" 2 on every criterion."""
    key = json.loads(key_path.read_text())
    with open(sheet, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for pos, system in key["items"][row["item_id"]].items():
            for crit in key["criteria"]:
                row[f"response_{pos}_{crit}"] = "5" if system == "gold" else "2"
    with open(out, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_compare_names_a_missing_field_and_the_fields_present(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [{"id": i, "scores": {"f1": 0.5}} for i in range(3)])
    r = run("eval", "compare", a, a, "--field", "scores.exact_match")
    assert r.exit_code == 1
    assert f"{a}:1: field 'scores.exact_match'" in r.output
    assert "row 1 has no field 'scores.exact_match' (fields present: id, scores.f1)" in r.output
    assert "not a finite number" not in r.output and "Fix: pass --field scores.f1." in r.output


def test_compare_asks_which_system_of_a_two_system_file(tmp_path):
    rows = [{"id": i, "system": s, "score": 1} for i in range(3) for s in ("x", "y")]
    a = _jsonl(tmp_path / "a.jsonl", rows)
    r = run("eval", "compare", a, a)
    assert r.exit_code == 1 and "holds the rows of 2 systems (x, y)" in r.output


def test_ifeval_skip_invalid_writes_the_rejects_file(tmp_path):
    bad = {**IFEVAL_ROWS[0], "key": 99, "response": 3}
    src = _jsonl(tmp_path / "in.jsonl", [*IFEVAL_ROWS, bad])
    r = run("eval", "ifeval", src, "-o", tmp_path / "out.jsonl", "--skip-invalid")
    assert r.exit_code == 0, r.output
    rejects = [json.loads(x) for x in (tmp_path / "out.rejects.jsonl").open()]
    assert len(rejects) == 1 and rejects[0]["field"] == "response" and rejects[0]["row"] == 5
    assert "rejected: 1 rows" in r.output
    assert load_eval_results(tmp_path / "out.results.json").ifeval["in"].n_rejected == 1
