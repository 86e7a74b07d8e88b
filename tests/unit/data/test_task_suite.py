"""The bundled task suite: shape of the split, determinism, answers that check out, templates
that render every task in every mode."""

import json
import random
import re
from collections import Counter
from importlib import resources

import pytest

from instructkit.data.suite_tasks import GENERATORS, LABELS
from instructkit.data.task_suite import (
    CLUSTERS,
    SUITE_RESOURCE,
    UNSEEN_CLUSTERS,
    build_suite,
    load_suite,
    main,
    seen_tasks,
    suite_counts,
    task_cluster,
    write_suite,
)
from instructkit.data.tasks import MODES, load_task_templates, render_task_example
from instructkit.errors import DataFormatError
from instructkit.evaluate.checks import FORMATS, score_item

KEYS = ("id", "task", "cluster", "split", "format", "answer")


@pytest.fixture(scope="module")
def items():
    return load_suite()


@pytest.fixture(scope="module")
def templates():
    return load_task_templates()


def by_task(items):
    out = {}
    for it in items:
        out.setdefault(it["task"], []).append(it)
    return out


# --- the split --------------------------------------------------------------------------------


def test_suite_has_enough_tasks_and_clusters(items):
    tasks = suite_counts(items)
    clusters = {it["cluster"] for it in items}
    assert len(tasks) >= 24 and len(clusters) >= 8
    assert clusters == set(CLUSTERS)
    for it in items:
        assert it["cluster"] == task_cluster(it["task"]), it["id"]


def test_split_leaves_whole_clusters_out(items):
    unseen = [it for it in items if it["cluster"] in UNSEEN_CLUSTERS]
    assert len(unseen) >= 300  # a 5-point paired gain is detectable
    assert {it["split"] for it in unseen} == {"test"}
    assert len(UNSEEN_CLUSTERS) >= 3 and len(set(CLUSTERS) - set(UNSEEN_CLUSTERS)) >= 5
    counts = suite_counts(items)
    for task, c in counts.items():
        if task_cluster(task) in UNSEEN_CLUSTERS:
            assert c["train"] == 0 and c["test"] >= 20, task
        else:
            assert c["train"] >= 20 and c["test"] >= 5, task
            assert 0.6 <= c["train"] / (c["train"] + c["test"]) <= 0.85, task
    assert set(seen_tasks(items)) == {
        t for c, ts in CLUSTERS.items() if c not in UNSEEN_CLUSTERS for t in ts
    }


def test_items_are_unique_so_no_test_item_leaks_into_train(items):
    ids = [it["id"] for it in items]
    assert len(ids) == len(set(ids))
    inputs = Counter(
        json.dumps({k: v for k, v in it.items() if k not in ("id", "split", "rationale")})
        for it in items
    )
    assert max(inputs.values()) == 1


def test_every_item_says_how_to_score_it(items, templates):
    for it in items:
        assert all(it.get(k) for k in KEYS), it["id"]
        assert it["split"] in ("train", "test") and it["format"] in FORMATS, it["id"]
        assert isinstance(it["answer"], str) and len(it["answer"]) <= 80, it["id"]
        options = templates[it["task"]][0].options
        if options:  # the options the templates show are the options scored against
            assert it["options"] == list(options), it["id"]
        if it["format"] == "label":
            assert it["answer"] in it["options"], it["id"]
        else:
            assert "options" not in it, it["id"]
        if it["split"] == "train":
            assert it.get("rationale"), it["id"]


def test_reference_answers_score_full_marks(items):
    for it in items:
        assert score_item(it, it["answer"]) == {"strict": 1.0, "lenient": 1.0, "format": 1.0}


def test_demo_items_are_reused_unchanged(items):
    text = resources.files("instructkit.resources").joinpath("demo/items.jsonl").read_text("utf-8")
    suite = {it["id"]: it for it in items}
    for line in text.splitlines():
        row = json.loads(line)
        kept = suite[row["id"]]
        assert {k: kept[k] for k in row} == row


# --- determinism ------------------------------------------------------------------------------


def test_shipped_file_is_the_generator_output(items):
    assert build_suite() == items
    shipped = resources.files("instructkit.resources").joinpath(SUITE_RESOURCE)
    assert len(shipped.read_bytes()) < 2_000_000


def test_another_seed_gives_other_items_but_the_same_split_shape(items):
    other = build_suite(seed=1)
    assert other != items
    assert {t: c["train"] + c["test"] for t, c in suite_counts(other).items()}.keys() == (
        suite_counts(items).keys()
    )
    assert sum(it["split"] == "test" and it["cluster"] in UNSEEN_CLUSTERS for it in other) >= 300


def test_main_writes_the_suite(tmp_path, capsys, items):
    out = tmp_path / "suite.jsonl"
    main([str(out)])
    assert load_suite(out) == items
    assert (
        f"wrote {len(items)} items of {len(suite_counts(items))} tasks" in capsys.readouterr().out
    )
    assert write_suite(tmp_path / "s1.jsonl", seed=1) == tmp_path / "s1.jsonl"


def test_docs_list_every_task_and_held_out_cluster(items):
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "demo.md").read_text("utf-8")
    section = doc[doc.index("## The task suite") :]
    for task, c in suite_counts(items).items():
        cluster = task_cluster(task)
        held = "yes" if cluster in UNSEEN_CLUSTERS else ""
        assert f"| {cluster} | {held} | `{task}` |" in section, task
        assert f"| {c['train']} | {c['test']} |" in section.split(f"`{task}`")[1].split("\n")[0]


def test_load_suite_names_the_bad_row(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a"}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2: invalid JSON"):
        load_suite(path)
    with pytest.raises(DataFormatError, match="cannot read"):
        load_suite(tmp_path / "missing.jsonl")
    path.write_text('{"id": "a"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2: expected an object"):
        load_suite(path)


def test_load_suite_reads_any_source_with_a_column_mapping(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [it for it in load_suite() if it["task"] == "antonym"][:3]
    table = pa.table({"name": [r["task"] for r in rows], "label": [r["answer"] for r in rows]})
    pq.write_table(table, tmp_path / "items.parquet")
    spec = {"path": str(tmp_path / "items.parquet"), "columns": {"task": "name", "answer": "label"}}
    got = load_suite(spec)
    assert [(g["task"], g["answer"]) for g in got] == [(r["task"], r["answer"]) for r in rows]


# --- templates --------------------------------------------------------------------------------


def test_every_task_renders_in_every_mode_with_every_template(items, templates):
    for task, rows in by_task(items).items():
        item = rows[0]
        plain, reasoned = rows[1:3], [r for r in rows[1:] if r.get("rationale")][:2]
        cot_ok = bool(item.get("rationale")) and len(reasoned) == 2
        assert len(templates[task]) >= 4, task
        for index in range(len(templates[task])):
            for mode in MODES:
                if mode.endswith("cot") and not cot_ok:
                    continue
                shots = {"few": plain, "few_cot": reasoned}.get(mode, [])
                conv = render_task_example(
                    item, templates, mode=mode, template_index=index, shots=shots
                )
                prompt, answer = conv.messages[0].content, conv.messages[1].content
                for field in templates[task][index].inputs:
                    assert str(item[field]) in prompt, (task, index, field)
                assert score_item(item, answer)["strict"] == 1.0, (task, mode, answer)
                assert score_item(item, answer)["lenient"] == 1.0, (task, mode, answer)
    assert sum(bool(it.get("rationale")) for it in items) > 0.9 * len(items)


# --- the generators are right -----------------------------------------------------------------


def test_generated_answers_are_correct(items):
    tasks = by_task(items)
    for it in tasks["add_sub"]:
        a, op, b = it["expression"].split()
        assert int(it["answer"]) == (int(a) + int(b) if op == "+" else int(a) - int(b))
    for it in tasks["multiply"]:
        a, _, b = it["expression"].split()
        assert int(it["answer"]) == int(a) * int(b)
    for it in tasks["even_odd"]:
        assert it["answer"] == ("even" if int(it["number"]) % 2 == 0 else "odd")
    for it in tasks["count_words"]:
        assert int(it["answer"]) == len(it["sentence"].split())
    for it in tasks["count_occurrences"]:
        assert int(it["answer"]) == it["sequence"].split(", ").count(it["target"]) >= 1
    for it in tasks["count_items"]:
        assert int(it["answer"]) == it["text"].count(",") + 2
    for it in tasks["sort_words"]:
        assert it["answer"].split(", ") == sorted(it["words"].split(", "))
    for it in tasks["reverse_word"]:
        assert it["answer"] == it["word"][::-1]
    for it in tasks["first_letter"]:
        assert it["answer"] == it["word"][0] != "a"
    for it in tasks["repeat_word"]:
        assert it["answer"].split(", ") == [it["word"]] * int(it["count"])
    for it in tasks["acronym"]:
        assert it["answer"] == "".join(w[0] for w in it["name"].split())
    for it in tasks["to_json"]:
        obj = json.loads(it["answer"])
        assert (
            obj["name"] in it["text"]
            and str(obj["age"]) in it["text"]
            and obj["city"] in it["text"]
        )
    for it in tasks["extract_list"]:
        things = it["answer"].split(", ")
        assert re.sub(r",| and", "", it["text"]).endswith(" ".join(things) + ".")
    for it in tasks["passage_fact"] + tasks["qa"]:
        assert it["answer"] in it["context"]
    for it in tasks["commonsense_mc"]:
        assert sorted(it["options"]) == sorted(re.findall(r"\(\w\) (.+)", it["choices"]))


def test_nli_and_yes_no_labels_are_balanced(items):
    tasks = by_task(items)
    for task in ("entailment", "compatible", "paraphrase", "can_do", "passage_yes_no"):
        answers = Counter(it["answer"] for it in tasks[task])
        assert min(answers["yes"], answers["no"]) >= 0.25 * len(tasks[task]), (task, answers)


def test_entailment_place_pairs_follow_the_city(items):
    from instructkit.data.suite_tasks import _CITY_COUNTRY

    for it in by_task(items)["entailment"]:
        m = re.match(r"\w+ is in (\w+) today\.", it["premise"])
        if m:
            country = re.match(r"\w+ is in (\w+) today\.", it["hypothesis"]).group(1)
            assert it["answer"] == ("yes" if _CITY_COUNTRY[m.group(1)] == country else "no")


def test_generators_are_deterministic_and_label_tasks_use_their_labels():
    for name, make in GENERATORS.items():
        assert make(random.Random(3)) == make(random.Random(3)), name
        if name in LABELS:
            answers = {make(random.Random(s))["answer"] for s in range(40)}
            assert answers <= set(LABELS[name]) and len(answers) >= 2, name
