import json
import re
from collections import Counter
from importlib import resources

import pytest
from pydantic import ValidationError

from instructkit.data.tasks import (
    MODES,
    MixConfig,
    TaskTemplate,
    build_task_mixture,
    load_task_templates,
    render_task_example,
)
from instructkit.errors import DataFormatError, TemplateError
from instructkit.evaluate.checks import normalize_answer, score_answer

REQUIRED_TASKS = {"sentiment", "summarization", "qa", "translation", "topic", "arithmetic"}


@pytest.fixture(scope="module")
def templates():
    return load_task_templates()


@pytest.fixture(scope="module")
def demo_items():
    text = resources.files("instructkit.resources").joinpath("demo/items.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def add_item(i, a=2, b=3, rationale=True):
    item = {
        "id": f"add-{i}",
        "task": "arithmetic",
        "question": f"What is {a} plus {b}?",
        "answer": str(a + b),
    }
    if rationale:
        item["rationale"] = f"{a} + {b} = {a + b}."
    return item


def write_yaml(tmp_path, text):
    path = tmp_path / "t.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------- loading


def test_bundled_templates_cover_tasks_with_four_phrasings(templates, demo_items):
    tasks = REQUIRED_TASKS | {it["task"] for it in demo_items}
    assert tasks <= set(templates)
    for task in tasks:
        phrasings = templates[task]
        assert len(phrasings) >= 4, task
        assert len({t.instruction for t in phrasings}) == len(phrasings), task
        assert all(t.task == task for t in phrasings)
    assert templates["sentiment"][0].options == ("positive", "negative")
    assert templates["summarization"][0].answer_field == "summary"


def test_render_zero_shot_by_hand(templates):
    item = {"id": "s1", "task": "sentiment", "text": "Great film.", "answer": "positive"}
    conv = render_task_example(item, templates, mode="zero", template_index=1)
    assert conv.to_chat() == [
        {
            "role": "user",
            "content": "Great film.\n\nWhat is the sentiment of the sentence above?\n"
            "Options: positive, negative",
        },
        {"role": "assistant", "content": "positive"},
    ]
    assert conv.metadata == {
        "id": "s1",
        "task": "sentiment",
        "template_index": 1,
        "mode": "zero",
        "shot_ids": [],
    }


def test_render_few_shot_cot_by_hand(templates):
    item, shot = add_item(1, 2, 3), add_item(2, 4, 4)
    conv = render_task_example(item, templates, mode="few_cot", template_index=2, shots=[shot])
    assert conv.messages[0].content == (
        "Question: What is 4 plus 4?\nAnswer with a number.\nLet's think step by step.\n"
        "4 + 4 = 8. So the answer is 8.\n\n"
        "Question: What is 2 plus 3?\nAnswer with a number.\nLet's think step by step."
    )
    assert conv.messages[1].content == "2 + 3 = 5. So the answer is 5."
    assert conv.metadata["mode"] == "few_cot" and conv.metadata["shot_ids"] == ["add-2"]


def test_summary_and_translation_use_their_answer_fields(templates):
    doc = {"id": "d", "task": "summarization", "text": "Long text.", "summary": "Short."}
    assert render_task_example(doc, templates, mode="zero", template_index=0).messages[
        1
    ].content == ("Short.")
    tr = {
        "id": "t",
        "task": "translation",
        "text": "Hola",
        "source_language": "Spanish",
        "target_language": "English",
        "translation": "Hello",
    }
    conv = render_task_example(tr, templates, mode="zero", template_index=0)
    assert conv.messages[0].content == "Translate from Spanish to English: Hola"
    assert conv.messages[1].content == "Hello"


def test_every_template_renders_every_demo_item_in_every_mode(templates, demo_items):
    by_task = {}
    for it in demo_items:
        by_task.setdefault(it["task"], []).append(it)
    for it in demo_items:
        other = next(o for o in by_task[it["task"]] if o["id"] != it["id"])
        for i, _ in enumerate(templates[it["task"]]):
            modes = MODES if it.get("rationale") else ("zero", "few")
            for mode in modes:
                shots = [other] if mode.startswith("few") else []
                conv = render_task_example(it, templates, mode=mode, template_index=i, shots=shots)
                assert conv.messages[0].content and conv.messages[1].content
                assert "{" not in conv.messages[0].content, (it["id"], i)
            zero = render_task_example(it, templates, mode="zero", template_index=i)
            assert zero.messages[1].content == it["answer"]
            assert len(zero.messages[0].content.split()) < 60, (it["id"], i)


def test_cot_answer_is_scored_correct(templates):
    item = add_item(1, 6, 7)
    conv = render_task_example(item, templates, mode="cot", template_index=0)
    assert score_answer(conv.messages[1].content, item["answer"]) == 1.0


# ---------------------------------------------------------------------------------- mixture


def arithmetic_items(n):
    return [add_item(i, i % 7, i % 5, rationale=i % 2 == 0) for i in range(n)]


def test_mixture_is_deterministic_given_seed(templates):
    items = arithmetic_items(40)
    cfg = MixConfig(zero_shot=0.5, few_shot=0.5, cot_ratio=0.5, seed=3)
    first = build_task_mixture(items, templates, cfg)
    again = build_task_mixture(items, templates, cfg)
    other = build_task_mixture(items, templates, cfg.model_copy(update={"seed": 4}))
    assert [c.to_chat() for c in first] == [c.to_chat() for c in again]
    assert [c.metadata for c in first] == [c.metadata for c in again]
    assert [c.metadata for c in first] != [c.metadata for c in other]
    assert [c.metadata["id"] for c in first] == [it["id"] for it in items]


def test_mixture_ratios_roughly_respected(templates):
    items = arithmetic_items(1000)  # half have a rationale
    cfg = MixConfig(zero_shot=0.6, few_shot=0.2, cot_ratio=0.4, n_shots=2, seed=0)
    convs = build_task_mixture(items, templates, cfg)
    few = sum(c.metadata["mode"].startswith("few") for c in convs)
    assert abs(few / 1000 - 0.25) < 0.05  # 0.2 / (0.6 + 0.2)
    cot = sum(c.metadata["mode"].endswith("cot") for c in convs)
    assert abs(cot / 500 - 0.4) < 0.07
    used = Counter(c.metadata["template_index"] for c in convs)
    assert set(used) == set(range(len(templates["arithmetic"])))
    assert min(used.values()) > 150  # ~200 each of 5 phrasings


def test_mixture_few_shot_never_uses_the_item_itself(templates, demo_items):
    train = [it for it in demo_items if it["split"] == "train"]
    cfg = MixConfig(zero_shot=0.0, few_shot=1.0, cot_ratio=1.0, n_shots=3, seed=1)
    convs = build_task_mixture(train, templates, cfg)
    task_of = {it["id"]: it["task"] for it in train}
    for conv in convs:
        meta = conv.metadata
        assert meta["mode"].startswith("few") and len(meta["shot_ids"]) == 3
        assert meta["id"] not in meta["shot_ids"]
        assert len(set(meta["shot_ids"])) == 3
        assert {task_of[s] for s in meta["shot_ids"]} == {meta["task"]}


def test_mixture_cot_only_with_rationale(templates):
    items = arithmetic_items(60)
    convs = build_task_mixture(
        items, templates, MixConfig(zero_shot=1, few_shot=1, cot_ratio=1.0, seed=2)
    )
    by_id = {it["id"]: it for it in items}
    for conv in convs:
        item = by_id[conv.metadata["id"]]
        cot = conv.metadata["mode"].endswith("cot")
        assert cot == ("rationale" in item)
        assert ("Let's think step by step." in conv.messages[0].content) == cot
        if cot:  # CoT exemplars carry rationales too
            assert all("rationale" in by_id[s] for s in conv.metadata["shot_ids"])


def test_single_item_task_falls_back_to_zero_shot(templates):
    convs = build_task_mixture([add_item(0)], templates, MixConfig(zero_shot=0, few_shot=1))
    assert convs[0].metadata["mode"] == "zero" and convs[0].metadata["shot_ids"] == []


@pytest.mark.parametrize(
    "values",
    [
        {"zero_shot": 1.5},
        {"cot_ratio": -0.1},
        {"zero_shot": 0.0, "few_shot": 0.0},
        {"few_shot": 0.5, "n_shots": 0},
        {"zero_shots": 1.0},
    ],
)
def test_mix_config_rejects_bad_values(values):
    with pytest.raises(ValidationError):
        MixConfig(**values)


# ----------------------------------------------------------------------------------- errors


def test_missing_item_field_names_item_and_field(templates):
    item = {"id": "s9", "task": "sentiment", "answer": "positive"}
    with pytest.raises(DataFormatError) as e:
        render_task_example(item, templates, mode="zero", template_index=0)
    assert e.value.field == "text" and "'s9'" in str(e.value)
    no_answer = {"id": "s8", "task": "sentiment", "text": "Fine."}
    with pytest.raises(DataFormatError, match="'s8'.*'answer'"):
        render_task_example(no_answer, templates, mode="zero", template_index=0)


def test_cot_without_rationale_names_item(templates):
    with pytest.raises(DataFormatError, match="'add-0'.*'rationale'"):
        render_task_example(add_item(0, rationale=False), templates, mode="cot", template_index=0)


def test_unknown_task_and_bad_arguments(templates):
    with pytest.raises(DataFormatError, match="'x1' has task 'poetry'"):
        render_task_example(
            {"id": "x1", "task": "poetry"}, templates, mode="zero", template_index=0
        )
    item = add_item(0)
    with pytest.raises(TemplateError, match="template_index 9"):
        render_task_example(item, templates, mode="zero", template_index=9)
    with pytest.raises(TemplateError, match="unknown mode"):
        render_task_example(item, templates, mode="five", template_index=0)
    with pytest.raises(TemplateError, match="0 shots"):
        render_task_example(item, templates, mode="few", template_index=0)
    with pytest.raises(TemplateError, match="its own"):
        render_task_example(item, templates, mode="few", template_index=0, shots=[dict(item)])


def test_item_without_id_is_rejected(templates):
    item = {"task": "capital", "country": "Peru", "answer": "Lima"}
    with pytest.raises(DataFormatError, match="'id'"):
        render_task_example(item, templates, mode="zero", template_index=0)


def test_template_built_in_code_with_unknown_field_raises_template_error():
    tpl = TaskTemplate("greet", "Hi {nmae}", inputs=("name",))
    item = {"id": "g1", "task": "greet", "name": "Ann", "answer": "hello"}
    with pytest.raises(TemplateError, match="greet"):
        render_task_example(item, {"greet": [tpl]}, mode="zero", template_index=0)


def test_mixture_reports_item_without_task(templates):
    with pytest.raises(DataFormatError, match="'q1'") as e:
        build_task_mixture([{"id": "q1", "question": "?"}], templates, MixConfig())
    assert e.value.field == "task"


GOOD = """
tasks:
  greet:
    inputs: [name, place]
    templates:
      - instruction: "Hi {name} from {place}"
      - instruction: "{place}: hello {name}"
"""


def test_load_custom_yaml(tmp_path):
    loaded = load_task_templates(write_yaml(tmp_path, GOOD))
    assert loaded == {
        "greet": [
            TaskTemplate("greet", "Hi {name} from {place}", inputs=("name", "place")),
            TaskTemplate("greet", "{place}: hello {name}", inputs=("name", "place")),
        ]
    }


@pytest.mark.parametrize(
    ("bad", "field", "message"),
    [
        (
            '"{place}: hello"',
            "tasks.greet.templates[1].instruction",
            "missing placeholder '{name}'",
        ),
        (
            '"{place} {name} {nmae}"',
            "tasks.greet.templates[1].instruction",
            "unknown placeholder '{nmae}'",
        ),
        ('"{place} {name} {options}"', "tasks.greet.templates[1].instruction", "'{options}'"),
        ('"{place} {name!r}"', "tasks.greet.templates[1].instruction", "not a plain"),
        ('"{place} {name"', "tasks.greet.templates[1].instruction", "greet"),
    ],
)
def test_bad_template_error_names_file_task_index_and_placeholder(tmp_path, bad, field, message):
    path = write_yaml(tmp_path, GOOD.replace('"{place}: hello {name}"', bad))
    with pytest.raises(DataFormatError) as e:
        load_task_templates(path)
    assert e.value.path == path and e.value.field == field
    assert message in str(e.value) and str(path) in str(e.value)


def test_bad_answer_and_cot_formats_are_rejected(tmp_path):
    no_answer = GOOD.replace('"{place}: hello {name}"', '"{place} {name}"\n        answer: "ok"')
    with pytest.raises(DataFormatError, match="missing placeholder '{answer}'") as e:
        load_task_templates(write_yaml(tmp_path, no_answer))
    assert e.value.field == "tasks.greet.templates[1].answer"
    no_rationale = GOOD.replace("    templates:", '    cot_answer: "{answer}"\n    templates:')
    with pytest.raises(DataFormatError, match="'{rationale}'") as e:
        load_task_templates(write_yaml(tmp_path, no_rationale))
    assert e.value.field == "tasks.greet.cot_answer"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("tasks: [1, 2]", "no 'tasks' mapping"),
        ("tasks:\n  greet:\n    inputs: [name]\n", "'templates' list"),
        ("tasks:\n  greet:\n    inputs: [name]\n    templates: []\n", "no templates"),
        ("tasks:\n  greet:\n    templates:\n      - instruction: hi\n", "'inputs'"),
        ("tasks:\n  greet:\n    inputs: [x]\n    option: [a]\n    templates: []\n", "option"),
        ("tasks: {greet: [", "not valid YAML"),
        ("tasks:\n  g:\n    inputs: [q]\n    options: [yes, no]\n    templates: []\n", "True"),
        ("defaults: {cot: x}\ntasks:\n  g:\n    inputs: [q]\n    templates: []\n", "defaults"),
        (
            "tasks:\n  g:\n    inputs: [q]\n    templates:\n      - {instruction: '{q}', ans: x}\n",
            "ans",
        ),
        ("tasks:\n  g:\n    inputs: [q]\n    answer_field: 3\n    templates: []\n", "answer_field"),
    ],
)
def test_bad_yaml_structure(tmp_path, text, match):
    with pytest.raises(DataFormatError, match=re.escape(match)):
        load_task_templates(write_yaml(tmp_path, text))


# ----------------------------------------------------------------------- bundled demo items


def test_demo_items_satisfy_constraints(templates, demo_items):
    assert len(demo_items) >= 180
    ids = [it["id"] for it in demo_items]
    assert len(ids) == len(set(ids))
    splits = {}
    for it in demo_items:
        assert it["split"] in ("train", "test"), it["id"]
        assert isinstance(it["answer"], str) and it["answer"], it["id"]
        assert len(it["answer"].split()) <= 2 and len(it["answer"]) <= 16, it["id"]
        assert normalize_answer(it["answer"]), it["id"]
        splits.setdefault(it["task"], Counter())[it["split"]] += 1
    assert len(splits) >= 7
    unseen = [t for t, c in splits.items() if c["train"] == 0]
    assert unseen and all(splits[t]["test"] >= 20 for t in unseen)
    for task, c in splits.items():
        if task not in unseen:
            assert c["test"] > 0 and 0.6 <= c["train"] / (c["train"] + c["test"]) <= 0.8, task


def test_demo_items_answers_are_consistent(templates, demo_items):
    for it in demo_items:
        options = templates[it["task"]][0].options
        if options:
            assert it["answer"] in options, it["id"]
        if it["task"] == "qa":
            assert it["answer"] in it["context"], it["id"]
        if it["task"] == "arithmetic":  # the rationale's sum is right and gives the answer
            a, op, b, result = re.search(r"(\d+) ([-+x]) (\d+) = (\d+)", it["rationale"]).groups()
            ops = {"+": int.__add__, "-": int.__sub__, "x": int.__mul__}
            assert str(ops[op](int(a), int(b))) == result == it["answer"], it["id"]
            assert a in it["question"] and b in it["question"], it["id"]
            assert score_answer(f"{it['rationale']} So the answer is {it['answer']}.", it["answer"])
    texts = Counter(
        json.dumps({k: v for k, v in it.items() if k not in ("id", "split")}, sort_keys=True)
        for it in demo_items
    )
    assert max(texts.values()) == 1  # no item repeated (no train/test leak)
