"""`instructkit eval ...` end to end on the tiny model and small files."""

import json
from importlib import resources

import yaml
from click.testing import CliRunner

from instructkit.cli.main import cli

ITEMS = str(resources.files("instructkit.resources").joinpath("demo/items.jsonl"))


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_eval_run_compares_two_systems(tmp_path):
    # system B answers from a file: the reference answers, so it must win every item
    items = [json.loads(x) for x in open(ITEMS) if json.loads(x)["split"] == "test"]
    keep = [it for it in items if it["task"] in ("sentiment", "yes_no")]
    (tmp_path / "gold.jsonl").write_text(
        "".join(json.dumps({"id": it["id"], "response": it["answer"]}) + "\n" for it in keep)
    )
    cfg = {
        "title": "tiny vs gold",
        "systems": [
            {"name": "tiny", "model": "tiny-random-llama", "template": "chatml"},
            {"name": "gold", "responses": str(tmp_path / "gold.jsonl")},
        ],
        "tasks": [
            {
                "name": "demo",
                "path": ITEMS,
                "metrics": ["exact_match", "f1"],
                "seen_tasks": ["sentiment"],
            }
        ],
        "out": str(tmp_path / "res" / "results.json"),
        "max_new_tokens": 4,
    }
    # keep only two task types by pointing at a filtered items file
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(it) + "\n" for it in keep))
    cfg["tasks"][0]["path"] = str(tmp_path / "items.jsonl")
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(cfg))
    r = run("eval", "run", "--config", tmp_path / "eval.yaml")
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "res" / "results.json").read_text())
    assert res["tasks"]["sentiment"]["scores"]["gold"] == 1.0
    assert res["tasks"]["yes_no"]["seen"] is False
    assert res["overall"]["comparison"]["wins"] > 0 and res["groups"]["unseen"]["n"] == 24
    r = run("eval", "report", tmp_path / "res" / "results.json", "-o", tmp_path / "r.html")
    assert r.exit_code == 0, r.output
    html = (tmp_path / "r.html").read_text()
    assert "tiny vs gold" in html and "data:image/png;base64" in html
    per_item = (tmp_path / "res" / "results.per_item.jsonl").read_text().splitlines()
    assert len(per_item) == 2 * len(keep)


def test_eval_compare_and_errors(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"id": i, "score": 0}) + "\n" for i in range(6)))
    b.write_text("".join(json.dumps({"id": i, "score": 1}) + "\n" for i in range(6)))
    r = run("eval", "compare", a, b, "--json")
    assert r.exit_code == 0, r.output
    c = json.loads(r.output)["comparisons"]["all"]
    assert c["diff"] == 1.0 and c["p_permutation"] == 2 / 64 and c["wins"] == 6
    b.write_text(b.read_text() + json.dumps({"id": 99, "score": "high"}) + "\n")
    r = run("eval", "compare", a, b)
    assert r.exit_code == 1 and f"{b}:7: field 'score': item 99" in r.output
    r = run("eval", "compare", a, b, "--skip-invalid", "--rejects", tmp_path / "rej.jsonl")
    assert r.exit_code == 0 and "rejected: 1 rows" in r.output


def test_eval_compare_unmatched_items(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"id": i, "score": 0}) + "\n" for i in range(3)))
    b.write_text("".join(json.dumps({"id": i, "score": 1}) + "\n" for i in range(1, 4)))
    r = run("eval", "compare", a, b)
    assert r.exit_code == 1 and "no match" in r.output and "first: '0'" in r.output


def test_eval_ifeval_scores_a_file(tmp_path):
    rows = [
        {
            "key": 1,
            "prompt": "Answer in lowercase.",
            "instruction_id_list": ["change_case:english_lowercase"],
            "kwargs": [{}],
            "response": "all lowercase here",
        },
        {
            "key": 2,
            "prompt": "No commas.",
            "instruction_id_list": ["punctuation:no_comma"],
            "kwargs": [{}],
            "response": "a, b",
        },
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = run("eval", "ifeval", src, "-o", tmp_path / "out.jsonl", "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert json.dumps(rep).count("0.5") >= 1


def test_human_sheet_round_trip_through_cli(tmp_path):
    import csv

    rows = [
        {
            "task": "t",
            "id": str(i),
            "system": s,
            "prompt": f"Question {i}, please?",
            "response": f"{s} answer {i}",
        }
        for i in range(4)
        for s in ("base", "tuned")
    ]
    per_item = tmp_path / "per_item.jsonl"
    per_item.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = run("eval", "human", "export", per_item, "-o", tmp_path / "sheet.csv")
    assert r.exit_code == 0, r.output
    key = json.loads((tmp_path / "sheet.key.json").read_text())
    text = (tmp_path / "sheet.csv").read_text(encoding="utf-8-sig")
    assert "base" not in text.replace("base answer", "").replace("tuned answer", "")
    for rater in ("ann", "bob"):  # raters prefer the tuned answer: 5 vs 2 on every criterion
        with open(tmp_path / "sheet.csv", encoding="utf-8-sig", newline="") as f:
            sheet = list(csv.DictReader(f))
        for row in sheet:
            for pos, system in key["items"][row["item_id"]].items():
                for crit in ("helpfulness", "accuracy", "harmlessness", "coherence"):
                    row[f"response_{pos}_{crit}"] = "5" if system == "tuned" else "2"
        with open(tmp_path / f"{rater}.csv", "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(sheet[0]))
            w.writeheader()
            w.writerows(sheet)
    r = run(
        "eval",
        "human",
        "import",
        tmp_path / "ann.csv",
        tmp_path / "bob.csv",
        "--key",
        tmp_path / "sheet.key.json",
        "--json",
    )
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["scores"]["tuned"]["helpfulness"]["mean"] == 5.0
    assert res["scores"]["base"]["accuracy"]["mean"] == 2.0


def test_eval_run_judge_takes_the_shared_lm_options(tmp_path, monkeypatch):
    """--judge, --judge-model, --judge-base-url, --judge-api-key-env, --judge-cache and
    --judge-concurrency set the config's judge: section (the LMOptions keys)."""
    import instructkit.lm
    from instructkit.lm.scripted import ScriptedLM

    built = []

    def build_lm(spec, **kw):
        built.append({"spec": spec, **{k: v for k, v in kw.items() if v is not None}})
        return ScriptedLM(lambda r: "Fine. Rating: [[7]]", name=spec)

    monkeypatch.setattr(instructkit.lm, "build_lm", build_lm)
    monkeypatch.setenv("JUDGE_KEY", "k")
    items = [json.loads(x) for x in open(ITEMS)][:3]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    (tmp_path / "gold.jsonl").write_text(
        "".join(json.dumps({"id": it["id"], "response": it["answer"]}) + "\n" for it in items)
    )
    cfg = {
        "systems": [{"name": "gold", "responses": str(tmp_path / "gold.jsonl")}],
        "tasks": [{"name": "demo", "path": str(tmp_path / "items.jsonl")}],
        "judge": {"lm": "local", "max_tokens": 64},
        "out": str(tmp_path / "res.json"),
    }
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(cfg))
    r = run("eval", "run", "--config", tmp_path / "eval.yaml", "--judge", "openai",
            "--judge-model", "m", "--judge-base-url", "http://h/v1", "--judge-api-key-env",
            "JUDGE_KEY", "--judge-cache", tmp_path / "c.sqlite",
            "--judge-concurrency", 3)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert built == [{"spec": "openai:m", "base_url": "http://h/v1", "api_key_env": "JUDGE_KEY",
                      "cache": str(tmp_path / "c.sqlite"), "concurrency": 3, "timeout": 600.0,
                      "max_retries": 6, "retry_window": 60.0}]  # fmt: skip
    res = json.loads((tmp_path / "res.json").read_text())
    assert res["judge"]["mode"] == "grade" and res["judge"]["n"] >= 1
    built.clear()  # a flag alone merges into the file's judge: section (judge.lm stays local)
    r = run("eval", "run", "--config", tmp_path / "eval.yaml", "--judge-model", "tiny", "--fresh")
    assert r.exit_code == 0, r.output
    assert built == [{"spec": "local:tiny"}]  # no served keys for a local judge
