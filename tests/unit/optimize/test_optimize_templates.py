"""Candidate instructions from component templates (instructkit.optimize.templates)."""

from importlib import resources
from itertools import combinations

import pytest
import yaml

from instructkit.data.similarity import normalize_for_exact, rouge_l_f, rouge_tokens
from instructkit.errors import ConfigError, DataFormatError
from instructkit.optimize.templates import (
    KINDS,
    TaskSpec,
    describe_data,
    generate_candidates,
    infer_format,
    instruction_problems,
    load_components,
    propose_candidates,
    render_candidate,
)

SENTIMENT = TaskSpec(
    description="Classify the sentiment of a movie review.",
    inputs=["text"],
    output="label",
    labels=["positive", "negative"],
    examples=[
        {"text": "A joy from start to finish.", "label": "positive"},
        {"text": "Dull, and far too long.", "label": "negative"},
        {"text": "I loved every minute of it", "label": "positive"},
    ],
)


def bundled_doc():
    text = resources.files("instructkit.resources").joinpath("instruction_components.yaml")
    return yaml.safe_load(text.read_text("utf-8"))


def write_library(tmp_path, doc, name="components.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc), "utf-8")
    return path


def tiny_library(tmp_path, task_texts):
    """One alternative per kind except ``task``; nothing optional."""
    doc = {
        "components": {
            "role": {"alternatives": [{"id": "r", "text": "You are careful."}]},
            "task": {
                "alternatives": [{"id": f"t{i}", "text": t} for i, t in enumerate(task_texts)]
            },
            "inputs": {"alternatives": [{"id": "i", "text": "You are given {inputs}."}]},
            "output": {
                "alternatives": [
                    {"id": "o-label", "formats": ["label"], "text": "Pick {output}: {labels}."},
                    {"id": "o-rest", "formats": ["number", "text", "json"], "text": "{output}"},
                ]
            },
            "constraints": {"alternatives": [{"id": "c", "text": "Be brief."}]},
            "reasoning": {"alternatives": [{"id": "s", "text": "Think."}]},
        }
    }
    return load_components(write_library(tmp_path, doc))


# --------------------------------------------------------------------------------- rendering


def test_one_combination_renders_as_hand_written():
    cand = render_candidate(
        SENTIMENT,
        {
            "role": "role-analyst",
            "task": "task-your-task",
            "inputs": "inputs-given",
            "output": "output-label-one-of",
            "constraints": "constraint-concise",
            "reasoning": "none",
        },
    )
    assert cand.text == (
        "You are a careful analyst. Your task is to classify the sentiment of a movie review. "
        "You are given `text`. Set `label` to exactly one of these labels: positive, negative. "
        "Be concise."
    )
    assert cand.components["reasoning"] == "none"
    assert cand.components["output"] == "output-label-one-of"


def test_several_inputs_are_listed_and_acronyms_keep_their_case():
    spec = TaskSpec("SQL: write the query", ["question", "schema", "dialect"], "query")
    cand = render_candidate(
        spec,
        {"task": "task-goal", "inputs": "inputs-found-in", "output": "output-text-plain"},
    )
    assert cand.text == (
        "The goal: SQL: write the query. The input is in `question`, `schema` and `dialect`. "
        "Write `query` as plain text."
    )


def test_a_component_for_another_format_is_refused():
    with pytest.raises(ConfigError, match="output-number-write"):
        render_candidate(
            SENTIMENT,
            {"task": "task-goal", "inputs": "inputs-read", "output": "output-number-write"},
        )
    with pytest.raises(ConfigError, match="no task component 'nope'"):
        render_candidate(SENTIMENT, {"task": "nope", "inputs": "x", "output": "y"})


# -------------------------------------------------------------------------------- generation


def test_candidates_are_valid_distinct_and_not_near_duplicates():
    cands = generate_candidates(SENTIMENT, 12, seed=0)
    assert len(cands) == 12
    for cand in cands:
        assert instruction_problems(cand.text, SENTIMENT) == []
        assert "positive" in cand.text and "negative" in cand.text and "`text`" in cand.text
        assert set(cand.components) == set(KINDS)
    assert len({normalize_for_exact(c.text) for c in cands}) == 12
    for a, b in combinations(cands, 2):
        assert rouge_l_f(rouge_tokens(a.text), rouge_tokens(b.text)) < 0.7


def test_first_picks_differ_in_every_component():
    cands = generate_candidates(SENTIMENT, 3, seed=5)
    for a, b in combinations(cands, 2):
        assert all(a.components[k] != b.components[k] for k in KINDS), (a, b)


def test_excluded_pairs_never_meet():
    cands = generate_candidates(SENTIMENT, 40, seed=0)
    steps = [c for c in cands if c.components["reasoning"] == "reasoning-step-by-step"]
    assert steps, "the test needs candidates that think step by step"
    assert all(c.components["constraints"] != "constraint-only-label" for c in steps)


def test_same_seed_same_candidates_other_seed_other_order():
    first = generate_candidates(SENTIMENT, 8, seed=3)
    assert generate_candidates(SENTIMENT, 8, seed=3) == first
    assert generate_candidates(SENTIMENT, 8, seed=4) != first


def test_near_and_exact_duplicates_are_rejected_with_reasons(tmp_path):
    library = tiny_library(
        tmp_path,
        ["Your task is to {task}.", "YOUR TASK is to -- {task}!", "Now {task} please."],
    )
    spec = TaskSpec("tell the sentiment", ["text"], "label", labels=["good", "bad"])
    out = propose_candidates(spec, 3, seed=0, components=library, near_dup_threshold=0.7)
    assert [c.components["task"] for c in out.candidates] == ["t1"]
    assert [(r.components["task"], r.reason) for r in out.rejected] == [
        ("t2", "near duplicate of candidate 0 (ROUGE-L 0.85)"),  # one sentence of six differs
        ("t0", "exact duplicate of candidate 0"),  # differs only in case and punctuation
    ]
    exact = propose_candidates(spec, 3, seed=0, components=library, near_dup_threshold=1.0)
    assert [c.components["task"] for c in exact.candidates] == ["t1", "t2"]
    assert [r.reason for r in exact.rejected] == ["exact duplicate of candidate 0"]


def test_invalid_combinations_are_rejected_not_returned(tmp_path):
    doc = bundled_doc()
    vague = {"id": "output-number-vague", "formats": ["number"], "text": "Write {output}."}
    doc["components"]["output"]["alternatives"].append(vague)
    library = load_components(write_library(tmp_path, doc))
    spec = TaskSpec("add them up", ["question"], "answer", output_format="number")
    out = propose_candidates(spec, 200, seed=0, components=library)
    assert len(out.candidates) > 10
    for cand in out.candidates:  # kept with the vague output only where a constraint says it
        assert instruction_problems(cand.text, spec) == []
        if cand.components["output"] == "output-number-vague":
            assert cand.components["constraints"] == "constraint-number-only"
    invalid = [r for r in out.rejected if "does not say that the output is a number" in r.reason]
    assert invalid
    assert all(r.components["output"] == "output-number-vague" for r in invalid)
    assert all(r.components["constraints"] != "constraint-number-only" for r in invalid)


def test_every_format_gets_valid_candidates():
    specs = {
        "number": TaskSpec("add the two numbers", ["a", "b"], "total", output_format="number"),
        "json": TaskSpec("extract the entities", ["text"], "entities", output_format="json"),
        "text": TaskSpec("summarize the article", ["article"], "summary"),
    }
    for fmt, spec in specs.items():
        cands = generate_candidates(spec, 6, seed=0)
        assert len(cands) == 6, fmt
        assert all(instruction_problems(c.text, spec) == [] for c in cands), fmt
        assert all(f"`{spec.output}`" in c.text for c in cands), fmt


def test_instruction_problems_name_what_is_missing():
    assert instruction_problems("Label `text` as positive.", SENTIMENT) == [
        "does not list the label(s) ['negative']"
    ]
    number = TaskSpec("add", ["a"], "total", output_format="number")
    assert instruction_problems("Add `a` and write `total`.", number) == [
        "does not say that the output is a number"
    ]


def test_bad_n_or_threshold_is_a_config_error():
    with pytest.raises(ConfigError):
        generate_candidates(SENTIMENT, 0, seed=0)
    with pytest.raises(ConfigError):
        generate_candidates(SENTIMENT, 3, seed=0, near_dup_threshold=0.0)


# ----------------------------------------------------------------------------------- the spec


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(output=""), "no output field"),
        (dict(inputs=[]), "no input fields"),
        (dict(inputs="text"), "'inputs' must be a list"),
        (dict(output="text"), "repeats"),
        (dict(labels=["positive"]), "2 or more distinct"),
        (dict(output_format="label", labels=[]), "output_format 'label' goes with labels"),
        (dict(examples=[{"text": "fine"}]), "examples\\[0\\] has no 'label'"),
        (dict(examples=[{"text": "ok", "label": "meh"}]), "'meh', not a label"),
        (dict(description=" "), "description is empty"),
    ],
)
def test_impossible_specs_are_config_errors(kwargs, message):
    args = dict(
        description="classify it", inputs=["text"], output="label", labels=["positive", "negative"]
    )
    with pytest.raises(ConfigError, match=message):
        TaskSpec(**{**args, **kwargs})


def test_output_format_is_inferred_from_labels_and_examples():
    def spec(*outputs):
        return TaskSpec("do it", ["x"], "y", examples=[{"x": "in", "y": o} for o in outputs])

    assert infer_format(SENTIMENT) == ("label", ("positive", "negative"))
    assert infer_format(spec("4", 7, "-2.5")) == ("number", ())
    assert infer_format(spec('{"a": 1}', [1, 2])) == ("json", ())
    assert infer_format(spec("yes", "no", "yes")) == ("label", ("yes", "no"))
    assert infer_format(spec("yes", "no")) == ("text", ())  # nothing repeats: no evidence
    assert infer_format(spec("A long answer here.", "A long answer here.")) == ("text", ())
    assert infer_format(spec()) == ("text", ())
    assert infer_format(spec(True, False, True)) == ("label", ("True", "False"))


def test_describe_data_summarizes_the_examples():
    assert describe_data(SENTIMENT) == (
        "Task: classify the sentiment of a movie review.\n"
        "Inputs: text. Output: label (one of: positive, negative).\n"
        "3 examples.\n"
        "Labels: positive 2 (67%), negative 1 (33%).\n"
        "Input text length in words: 5 to 6, median 6.\n"
        "Example: text: A joy from start to finish.; label: positive"
    )
    numbers = TaskSpec("add", ["q"], "a", examples=[{"q": "1 + 2", "a": 3}, {"q": "2+2", "a": 4}])
    assert "Output values: 3 to 4, median 3.5." in describe_data(numbers)
    assert describe_data(TaskSpec("add", ["q"], "a")).endswith("No examples were given.")


# ---------------------------------------------------------------------------------- the YAML


def test_bundled_library_loads_with_alternatives_for_every_kind():
    library = load_components()
    assert set(library.alternatives) == set(KINDS)
    assert all(len(alts) >= 2 for alts in library.alternatives.values())
    assert library.optional == {"role", "constraints", "reasoning"}


def _set(doc, kind, index, **changes):
    doc["components"][kind]["alternatives"][index].update(changes)


@pytest.mark.parametrize(
    "mutate,field,message",
    [
        (
            lambda d: _set(d, "task", 0, text="Do {taks}."),
            "components.task.alternatives[0]",
            "unknown placeholder '{taks}'",
        ),
        (
            lambda d: _set(d, "task", 1, text="Do it."),
            "components.task.alternatives[1]",
            "missing placeholder '{task}'",
        ),
        (
            lambda d: _set(d, "role", 0, text="  "),
            "components.role.alternatives[0]",
            "empty text",
        ),
        (
            lambda d: _set(d, "role", 0, colour="red"),
            "components.role.alternatives[0]",
            "unknown key(s) ['colour']",
        ),
        (
            lambda d: _set(d, "constraints", 0, text="Use {labels}."),
            "components.constraints.alternatives[0]",
            "unknown placeholder '{labels}'",
        ),
        (
            lambda d: _set(d, "output", 0, formats=["label", "text"]),
            "components.output.alternatives[0]",
            "for labels only",
        ),
        (
            lambda d: _set(d, "inputs", 1, id="inputs-given"),
            "components.inputs.alternatives[0]",
            "id 'inputs-given' is used more than once",
        ),
        (
            lambda d: _set(d, "reasoning", 0, excludes=["no-such-id"]),
            "components.reasoning.alternatives[0]",
            "unknown id 'no-such-id'",
        ),
        (
            lambda d: _set(d, "role", 2, text="Use {braces."),
            "components.role.alternatives[2]",
            "alternative 'role-precise': expected '}'",
        ),
        (
            lambda d: _set(d, "task", 0, text="Do {task!r}."),
            "components.task.alternatives[0]",
            "not a plain placeholder",
        ),
        (
            lambda d: _set(d, "role", 0, formats=["poem"]),
            "components.role.alternatives[0]",
            "bad formats",
        ),
        (lambda d: d["components"].pop("task"), "components.task", "missing kind 'task'"),
        (lambda d: d["components"].update(tone={}), "components.tone", "unknown kind 'tone'"),
    ],
)
def test_bad_library_errors_name_the_file_and_the_entry(tmp_path, mutate, field, message):
    doc = bundled_doc()
    mutate(doc)
    path = write_library(tmp_path, doc)
    with pytest.raises(DataFormatError) as info:
        load_components(path)
    assert info.value.path == str(path)
    assert info.value.field == field
    assert message in str(info.value)
    assert str(path) in str(info.value) and info.value.fix


def test_yaml_syntax_errors_name_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("components: [unclosed\n", "utf-8")
    with pytest.raises(DataFormatError, match="not valid YAML") as info:
        load_components(path)
    assert str(path) in str(info.value)
    with pytest.raises(DataFormatError, match="cannot read"):
        load_components(tmp_path / "missing.yaml")


def test_a_library_without_a_format_cannot_load(tmp_path):
    doc = bundled_doc()
    alts = doc["components"]["output"]["alternatives"]
    doc["components"]["output"]["alternatives"] = [a for a in alts if a["formats"] != ["json"]]
    with pytest.raises(DataFormatError, match="no output alternative for format 'json'"):
        load_components(write_library(tmp_path, doc))
