"""Self-Instruct: prompts, parsers, filters, routing, counts, resume, and the seed loader."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from instructkit.errors import ConfigError, DataFormatError
from instructkit.lm.base import ChatRequest, Completion
from instructkit.lm.scripted import ScriptedLM
from instructkit.synth.seeds import Instance, SeedTask, load_seed_tasks
from instructkit.synth.self_instruct import (
    SelfInstructConfig,
    build_classification_prompt,
    build_instance_prompt,
    build_instruction_prompt,
    instruction_rejection,
    parse_classification,
    parse_instances,
    parse_numbered_instructions,
    run_self_instruct,
    to_alpaca_rows,
    validate_instances,
)

CFG = SelfInstructConfig()

# --- a deterministic fake LM that writes plausible tasks ----------------------------------

WORDS = (
    "apple river garden engine winter market letter poem budget station recipe museum planet "
    "bridge lesson ticket harbor forest teacher doctor village castle island ocean mountain "
    "library kitchen bicycle lantern violin sugar marathon election volcano desert bakery "
    "festival robot puzzle candle"
).split()
OPENERS = ["Write a story about the", "Explain the", "Classify whether the", "Describe the"]


def _rng(request: ChatRequest) -> random.Random:
    text = request.messages[-1][1] + str(request.seed)
    return random.Random(hashlib.sha256(text.encode()).hexdigest())


def _last_task(prompt: str) -> str:
    return prompt.rsplit("Task: ", 1)[1].split("\n", 1)[0]


def plausible(request: ChatRequest) -> str:
    """Numbered tasks (plus one blacklisted), Yes/No, and instances in the asked-for order."""
    prompt, rng = request.messages[-1][1], _rng(request)
    if prompt.startswith("Come up with a series"):
        items = [f"{rng.choice(OPENERS)} {' '.join(rng.sample(WORDS, 6))}." for _ in range(4)]
        items.append("Draw a picture of the harbor at night.")
        return "\n".join(f"{9 + i}. {t}" if i else t for i, t in enumerate(items))
    if prompt.startswith("Can the following"):
        return "Yes" if _last_task(prompt).startswith("Classify") else "No"
    a, b = " ".join(rng.sample(WORDS, 4)), " ".join(rng.sample(WORDS, 4))
    if prompt.startswith("Given a classification"):
        return f"Class label: Yes\nInput: {a}\nClass label: No\nInput: {b}"
    return f"Example 1\nInput: {a}\nOutput: {b}\n\nExample 2\nOutput: {a} {b}"


@pytest.fixture(scope="module")
def seeds():
    return load_seed_tasks().tasks


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


# --- 1. the instruction prompt and its parser ---------------------------------------------


def test_instruction_prompt_is_a_numbered_list_left_open():
    prompt = build_instruction_prompt([f"Task  number\n{i}:" for i in range(1, 9)])
    body = prompt.split("\n\n", 1)[1].split("\n")
    assert body == [f"{i}. Task number {i}" for i in range(1, 9)] + ["9."]
    assert prompt.startswith("Come up with a series of new tasks.")


MESSY = """Sure! Here are some more tasks:

9. Write a letter to your landlord about a broken heater.
10) Summarize the plot-free news article
   in three sentences.
**11.** Translate the sentence into German.
Task 12: Instruction: suggest a name for a bakery.
13. 1.5 cups of flour is how many grams? Convert it.
- 14. Give three tips for public speaking.

That's all, I hope this helps!
15. plan a picnic for four friends."""


def test_numbered_list_parser_on_messy_output():
    got = parse_numbered_instructions(MESSY)
    assert got == [
        "Write a letter to your landlord about a broken heater.",
        "Summarize the plot-free news article in three sentences.",
        "Translate the sentence into German.",
        "Suggest a name for a bakery.",
        "1.5 cups of flour is how many grams? Convert it.",
        "Give three tips for public speaking.",
        "Plan a picnic for four friends.",  # a number after the chatter starts an item again
    ]


def test_parser_continues_the_open_item_and_drops_preambles():
    assert parse_numbered_instructions(" describe a sunset.\n10. List two fruits.") == [
        "Describe a sunset.",
        "List two fruits.",
    ]
    assert parse_numbered_instructions("Here you go:\n9. Name a color.") == ["Name a color."]
    assert parse_numbered_instructions("Write a haiku about tea.") == ["Write a haiku about tea."]
    assert parse_numbered_instructions("I'm sorry, I can't do that.") == []
    assert parse_numbered_instructions("") == []
    assert parse_numbered_instructions("10.\n11. \n") == []


# --- 2. filters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Sort it.", "too_short"),
        ("Sort these numbers.", None),
        ("Write a program that sorts numbers.", None),
        ("Describe the image below.", "blacklisted_word"),
        ("Summarize the attached FILE in a sentence.", "blacklisted_word"),
        ("Tell me how to go  to the station.", "blacklisted_word"),
        ("Compose music for a birthday.", "blacklisted_word"),
        ("Explain the plot twist of the story.", "blacklisted_word"),
        ("Explain the paragraph about profiles.", None),  # word boundaries, not substrings
        ('"Write a haiku about rain."', "starts_with_punctuation"),
        ("(a) Name three birds.", "starts_with_punctuation"),
        ("Écris un poème sur la mer.", "non_english_start"),
        ("写一首关于海的诗 please now", "non_english_start"),
        (" ".join(["word"] * 151), "too_long"),
        (" ".join(["word"] * 150), None),
    ],
)
def test_instruction_filters(text, reason):
    assert instruction_rejection(text, CFG) == reason


def test_write_a_program_is_kept_unless_asked():
    cfg = SelfInstructConfig(drop_write_a_program=True)
    assert instruction_rejection("Write a program that sorts numbers.", cfg) == "write_a_program"


def test_config_checks_prompt_mix_and_word_bounds():
    with pytest.raises(ValueError, match="n_seed_in_prompt"):
        SelfInstructConfig(num_prompt_instructions=4, n_seed_in_prompt=6)
    with pytest.raises(ValueError, match="min_words"):
        SelfInstructConfig(min_words=10, max_words=5)


# --- 3. classification ----------------------------------------------------------------------


def test_classification_prompt_ends_with_the_question():
    prompt = build_classification_prompt("Is the  number\nodd?")
    assert prompt.startswith("Can the following task be regarded as a classification task")
    assert prompt.endswith("Task: Is the number odd?\nIs it classification?")
    assert "Is it classification? Yes" in prompt and "Is it classification? No" in prompt


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Yes", True),
        (" no.", False),
        ("YES, it has labels", True),
        ("Is it classification? No", False),
        ("**Yes**", True),
        ("I think yes, because the labels are finite.", True),
        ("Answer: no", False),
        ("Task: Is it classification? No", False),  # seen from SmolLM2-135M
        ("1. The sentence is not classification.", False),
        ("Maybe", None),
        ("", None),
        ("Either yes or no, hard to say", None),
        ("Nope", None),
    ],
)
def test_parse_classification(text, want):
    assert parse_classification(text) is want


# --- 4. instances -----------------------------------------------------------------------------

CLF_SEED = SeedTask("c", "Is the number even?", (Instance("4", "Even"), Instance("7", "Odd")), True)
GEN_SEED = SeedTask("g", "Write a greeting.", (Instance("", "Hello there!"),), False)


def test_instance_prompts_are_output_first_for_classification():
    clf = build_instance_prompt("Is the fruit ripe?", True, [CLF_SEED])
    assert clf.startswith("Given a classification task")
    assert (
        "Task: Is the number even?\nClass label: Even\nInput: 4\nClass label: Odd\nInput: 7" in clf
    )
    assert clf.endswith("Task: Is the fruit ripe?\n")
    gen = build_instance_prompt("Write a toast.", False, [GEN_SEED])
    assert gen.startswith("Come up with examples")
    assert "Task: Write a greeting.\nExample 1\nOutput: Hello there!" in gen  # no Input line


def test_parse_instances_formats():
    text = "Example 1\nInput: 2 + 2\nOutput: 4\nExample 2:\nInput: None\nOutput: five\nlines"
    assert parse_instances(text) == [("2 + 2", "4"), ("", "five\nlines")]
    clf = "Class label: Positive\nInput: I love it.\nClass label: Negative\nInput: Awful."
    assert parse_instances(clf, output_first=True) == [
        ("I love it.", "Positive"),
        ("Awful.", "Negative"),
    ]
    labels_only = "**Class label:** Yes\n**Class label:** No"
    assert parse_instances(labels_only, output_first=True) == [("", "Yes"), ("", "No")]
    assert parse_instances("no fields at all", output_first=True) == []


def test_parse_instances_stops_at_the_next_task_but_skips_an_echo():
    bare = "Input: a\nOutput: b\nInput: c\nOutput: d\nTask: Write more.\nInput: x\nOutput: y"
    assert parse_instances(bare, "Pair letters.") == [("a", "b"), ("c", "d")]
    echo = "Task: Write a toast.\nOutput: Cheers!"
    assert parse_instances(echo, "Write a toast") == [("", "Cheers!")]
    other = "Task: What does the acronym stand for?\nOutput: NASA"  # seen from SmolLM2-135M
    assert parse_instances(other, "Write a toast.") == []


def test_parse_instances_takes_free_text_as_the_output_like_the_paper():
    assert parse_instances("  Cheers to the happy couple!\n") == [
        ("", "Cheers to the happy couple!")
    ]
    chunks = "Sure, here you go:\nExample 1\nHello!\nExample 2\nInput: Bob\nOutput: Hi Bob!"
    assert parse_instances(chunks) == [("", "Hello!"), ("Bob", "Hi Bob!")]  # preamble dropped


def test_validate_instances_rejects_and_counts():
    kept, rej = validate_instances(
        [("a", ""), ("same", "same"), ("x", "1"), ("x", "1"), ("", "free"), ("y", "2")], 5
    )
    assert kept == [
        {"input": "x", "output": "1"},
        {"input": "", "output": "free"},
        {"input": "y", "output": "2"},
    ]
    assert rej == {"empty_output": 1, "input_equals_output": 1, "duplicate_instance": 1}
    kept, rej = validate_instances([("q", "A"), ("q", "B"), ("r", "C")], 5)
    assert kept == [] and rej == {"conflicting_outputs": 3}
    kept, rej = validate_instances([(str(i), f"o{i}") for i in range(7)], 5)
    assert len(kept) == 5 and rej == {"over_max_instances": 2}


def test_routing_output_first_vs_input_first(tmp_path, seeds):
    lm = ScriptedLM(plausible)
    run_self_instruct(
        SelfInstructConfig(num_instructions=6, prompts_per_round=2), lm, seeds,
        tmp_path / "o.jsonl", progress=False,
    )  # fmt: skip
    rows = [json.loads(x) for x in lines(tmp_path / "o.jsonl")]
    instance_prompts = {
        _last_task(p): p
        for r in lm.calls
        if (p := r.messages[-1][1]).startswith(("Given a classification", "Come up with examples"))
    }
    assert {r["is_classification"] for r in rows} == {True, False}
    for row in rows:
        prompt = instance_prompts[row["instruction"]]
        assert prompt.startswith("Given a" if row["is_classification"] else "Come up with")
        if row["is_classification"]:
            assert [x["output"] for x in row["instances"]] == ["Yes", "No"]
            assert "Class label:" in prompt  # its shots are classification seeds
        else:
            assert "Example 1" in prompt


# --- 5. the job: counts, prompt mix, determinism, resume -------------------------------------


def test_prompt_mixes_six_seeds_with_two_kept_tasks(tmp_path, seeds):
    lm = ScriptedLM(plausible)
    cfg = SelfInstructConfig(num_instructions=12, prompts_per_round=2)
    run_self_instruct(cfg, lm, seeds, tmp_path / "o.jsonl", progress=False)
    rows = [json.loads(x) for x in lines(tmp_path / "o.jsonl")]
    seed_ids = {s.id for s in seeds}
    assert all(len(r["parents"]) == 8 for r in rows)
    assert all(set(r["parents"]) <= seed_ids for r in rows if r["round"] == 0)
    later = [r for r in rows if r["round"] > 0]
    assert later and all(len(set(r["parents"]) - seed_ids) == 2 for r in later)
    gen_prompts = [c for c in lm.calls if c.messages[-1][1].startswith("Come up with a series")]
    assert all(c.temperature == 0.7 and c.top_p == 0.5 for c in gen_prompts)


def test_end_to_end_counts_and_rows(tmp_path, seeds):
    cfg = SelfInstructConfig(num_instructions=20, prompts_per_round=3)
    r = run_self_instruct(cfg, ScriptedLM(plausible), seeds, tmp_path / "o.jsonl", progress=False)
    rows = [json.loads(x) for x in lines(tmp_path / "o.jsonl")]
    assert r.n_kept == r.n_new == len(rows) == 20 and r.reached_target
    assert [x["id"] for x in rows] == [f"si-{i:06d}" for i in range(20)]
    assert len({x["instruction"] for x in rows}) == 20
    assert set(rows[0]) == {
        "id", "instruction", "instances", "is_classification", "round", "source", "parents"
    }  # fmt: skip
    assert all(x["source"] == "self-instruct" and x["instances"] for x in rows)
    assert r.rejected_instructions["blacklisted_word"] == 3 * r.rounds  # one per completion
    assert r.examples["blacklisted_word"] == ["Draw a picture of the harbor at night."]
    assert r.n_classification == sum(x["is_classification"] for x in rows) > 0
    # every parsed instruction is kept, rejected for a reason, or surplus beyond the target
    assert r.n_candidates == r.n_kept + sum(r.rejected_instructions.values()) + r.n_surplus
    alpaca = to_alpaca_rows(rows)
    assert len(alpaca) == r.n_instances and set(alpaca[0]) == {"instruction", "input", "output"}


def test_deterministic_given_seed(tmp_path, seeds):
    cfg = SelfInstructConfig(num_instructions=10, prompts_per_round=2)
    for name in ("a", "b"):
        run_self_instruct(cfg, ScriptedLM(plausible), seeds, tmp_path / name, progress=False)
    other = cfg.model_copy(update={"seed": 1})
    run_self_instruct(other, ScriptedLM(plausible), seeds, tmp_path / "c", progress=False)
    assert lines(tmp_path / "a") == lines(tmp_path / "b") != lines(tmp_path / "c")


def test_near_duplicates_are_rejected_against_pool_and_round(tmp_path, seeds):
    """The LM repeats a seed and, within one completion, itself: both are too similar."""
    seed_text = seeds[0].instruction

    def lm_fn(request):
        prompt, rng = request.messages[-1][1], _rng(request)
        if prompt.startswith("Come up with a series"):
            fresh = f"Describe the {' '.join(rng.sample(WORDS, 7))}."
            return f"{seed_text}\n10. {fresh}\n11. {fresh.replace('Describe', 'Explain')}"
        return plausible(request)

    cfg = SelfInstructConfig(num_instructions=4, prompts_per_round=2)
    r = run_self_instruct(cfg, ScriptedLM(lm_fn), seeds, tmp_path / "o.jsonl", progress=False)
    assert r.rejected_instructions["too_similar"] == 4 * r.rounds
    assert seed_text in r.examples["too_similar"]


def test_malformed_outputs_are_counted_and_the_job_stops_when_stale(tmp_path, seeds):
    answers = {"": 0, "I'm sorry, I can't help with that.": 0}

    def lm_fn(request):
        text = list(answers)[request.seed % 2]
        answers[text] += 1
        return text

    cfg = SelfInstructConfig(num_instructions=5, prompts_per_round=4, max_stale_rounds=3)
    r = run_self_instruct(cfg, ScriptedLM(lm_fn), seeds, tmp_path / "o.jsonl", progress=False)
    assert not r.reached_target and r.n_kept == 0 and r.rounds == 3
    assert r.malformed == {
        "empty_completion": answers[""],
        "no_numbered_list": answers["I'm sorry, I can't help with that."],
    }
    assert sum(r.malformed.values()) == 12 == r.n_requests


def test_unclear_answers_and_missing_instances_are_counted(tmp_path, seeds):
    def lm_fn(request):
        prompt = request.messages[-1][1]
        if prompt.startswith(("Come up with a series", "Can the")):
            return plausible(request) if prompt.startswith("Come") else "Hmm, hard to say."
        return "Here is one: Example 1\nOutput: " if "story" in prompt[-80:] else plausible(request)

    cfg = SelfInstructConfig(num_instructions=6, prompts_per_round=2)
    r = run_self_instruct(cfg, ScriptedLM(lm_fn), seeds, tmp_path / "o.jsonl", progress=False)
    assert (
        r.malformed["unclear_classification"]
        == r.n_candidates - r.rejected_instructions["blacklisted_word"]
    )
    assert r.n_classification == 0  # unclear counts as No
    rows = [json.loads(x) for x in lines(tmp_path / "o.jsonl")]
    assert not any("story" in x["instruction"] for x in rows)
    assert r.rejected_instances["empty_output"] == r.rejected_instructions["no_valid_instances"]


class _TruncatingLM:
    name = "truncating"

    def complete(self, requests, *, progress=False):
        texts = [plausible(r) for r in requests]
        return [Completion([t], finish_reasons=["length"]) for t in texts]


def test_truncated_last_instruction_is_dropped(tmp_path, seeds):
    cfg = SelfInstructConfig(num_instructions=3, prompts_per_round=1)
    r = run_self_instruct(cfg, _TruncatingLM(), seeds, tmp_path / "o.jsonl", progress=False)
    assert r.rejected_instructions["truncated"] == r.rounds
    assert "blacklisted_word" not in r.rejected_instructions  # it was the truncated last item


def _crash_after(k):
    calls = {"n": 0}

    def fn(request):
        calls["n"] += 1
        if calls["n"] > k:
            raise RuntimeError("killed")
        return plausible(request)

    return fn


def test_kill_and_resume_continues_exactly(tmp_path, seeds):
    cfg = SelfInstructConfig(num_instructions=30, prompts_per_round=2)
    ref = run_self_instruct(cfg, ScriptedLM(plausible), seeds, tmp_path / "ref", progress=False)
    out = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match="killed"):
        run_self_instruct(cfg, ScriptedLM(_crash_after(45)), seeds, out, progress=False)
    before = lines(out)
    assert 0 < len(before) < 30
    with out.open("a") as f:
        f.write('{"id": "si-0000')  # a torn line, as a kill during a write leaves it
    r = run_self_instruct(cfg, ScriptedLM(plausible), seeds, out, progress=False)
    after = lines(out)
    assert after[: len(before)] == before
    assert len(after) == 30 and r.n_resumed == len(before) and r.n_new == 30 - len(before)
    rows = [json.loads(x) for x in after]
    assert len({x["id"] for x in rows}) == len({x["instruction"] for x in rows}) == 30
    assert after == lines(tmp_path / "ref")  # the same job as one uninterrupted run
    assert r.rejected_instructions == ref.rejected_instructions and r.rounds == ref.rounds
    assert r.n_candidates == ref.n_candidates and r.n_surplus == ref.n_surplus


def test_resume_with_a_larger_target_and_refusal_without_state_file(tmp_path, seeds):
    cfg = SelfInstructConfig(num_instructions=8, prompts_per_round=2)
    out = tmp_path / "o.jsonl"
    run_self_instruct(cfg, ScriptedLM(plausible), seeds, out, progress=False)
    bigger = cfg.model_copy(update={"num_instructions": 16})
    r = run_self_instruct(bigger, ScriptedLM(plausible), seeds, out, progress=False)
    ref = tmp_path / "ref"  # the same two runs again: the same rows
    run_self_instruct(cfg, ScriptedLM(plausible), seeds, ref, progress=False)
    run_self_instruct(bigger, ScriptedLM(plausible), seeds, ref, progress=False)
    assert r.n_resumed == 8 and len(lines(out)) == 16 and lines(out) == lines(ref)
    again = run_self_instruct(bigger, ScriptedLM(_crash_after(0)), seeds, out, progress=False)
    assert again.n_new == 0 and len(lines(out)) == 16  # target reached: no LM call at all
    (tmp_path / "o.jsonl.state.json").unlink()  # rows whose job cannot be known: refused
    with pytest.raises(ConfigError, match="did not write.*--fresh"):
        run_self_instruct(bigger, ScriptedLM(plausible), seeds, out, progress=False)


def test_resume_refuses_other_settings_and_foreign_files(tmp_path, seeds):
    out = tmp_path / "o.jsonl"
    cfg = SelfInstructConfig(num_instructions=2, prompts_per_round=1)
    run_self_instruct(cfg, ScriptedLM(plausible), seeds, out, progress=False)
    other = cfg.model_copy(update={"temperature": 0.9})
    with pytest.raises(ConfigError, match=r"temperature: 0\.7 -> 0\.9"):
        run_self_instruct(other, ScriptedLM(plausible), seeds, out, progress=False)
    with pytest.raises(ConfigError, match="the seeds differ"):
        run_self_instruct(cfg, ScriptedLM(plausible), seeds[1:], out, progress=False)
    r = run_self_instruct(other, ScriptedLM(plausible), seeds, out, fresh=True, progress=False)
    assert r.n_resumed == 0 and r.n_kept == 2
    alien = tmp_path / "alpaca.jsonl"
    alien.write_text('{"instruction": "a", "output": "b"}\n')
    with pytest.raises(ConfigError, match=r"alpaca.jsonl holds rows that this job did not write"):
        run_self_instruct(cfg, ScriptedLM(plausible), seeds, alien, progress=False)
    with pytest.raises(ConfigError, match="fewer than num_prompt_instructions"):
        run_self_instruct(cfg, ScriptedLM(plausible), seeds[:5], tmp_path / "x", progress=False)


# --- 6. seed tasks -----------------------------------------------------------------------------


def test_bundled_seed_tasks():
    loaded = load_seed_tasks()
    tasks = loaded.tasks
    assert len(tasks) >= 110 and not loaded.rejects
    share = sum(t.is_classification for t in tasks) / len(tasks)
    assert 0.2 <= share <= 0.3
    assert len({t.id for t in tasks}) == len({t.instruction for t in tasks}) == len(tasks)
    assert sum(1 for t in tasks if t.instances[0].input) >= 30  # a mix with and without input
    for t in tasks:  # the seeds pass the filters that machine instructions must pass
        assert instruction_rejection(t.instruction, CFG) is None, t.instruction
        assert all(x.output for x in t.instances)


def test_seed_loader_reads_self_instruct_rows(tmp_path):
    p = tmp_path / "s.jsonl"
    rows = [
        {"id": "t1", "name": "n", "instruction": "Add the numbers.", "is_classification": False,
         "instances": [{"input": "2 3", "output": "5"}]},
        {"instruction": "Is it even?", "is_classification": True,
         "instances": [{"input": "4", "output": "Yes"}, {"output": "No", "input": "3"}]},
    ]  # fmt: skip
    p.write_text("\n".join(json.dumps(r) for r in rows))
    t1, t2 = load_seed_tasks(p).tasks
    assert t1 == SeedTask("t1", "Add the numbers.", (Instance("2 3", "5"),), False, "n")
    assert t2.id == "seed_2" and t2.is_classification and len(t2.instances) == 2


def test_seed_loader_reads_alpaca_rows_and_groups_them(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps([
        {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
        {"instruction": "Say hi.", "output": "Hi!"},
        {"instruction": "Translate to French.", "input": "dog", "output": "chien"},
    ]))  # fmt: skip
    tasks = load_seed_tasks(p).tasks
    assert [t.instruction for t in tasks] == ["Translate to French.", "Say hi."]
    assert tasks[0].instances == (Instance("cat", "chat"), Instance("dog", "chien"))
    assert tasks[1].instances == (Instance("", "Hi!"),) and not tasks[1].is_classification


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ('{"instruction": "x"}', "instances", "neither 'instances'"),
        ('{"instruction": 3, "output": "y"}', "instruction", "expected a string"),
        ('{"instruction": " ", "output": "y"}', "instruction", "empty"),
        ('{"instruction": "x", "instances": []}', "instances", "non-empty list"),
        ('{"instruction": "x", "instances": ["y"]}', "instances[0]", "expected an object"),
        ('{"instruction": "x", "instances": [{"input": "a"}]}', "instances[0].output", "missing"),
        ('{"instruction": "x", "output": ""}', "output", "empty"),
        ('{"instruction": "x", "output": "y", "is_classification": "Yes"}', "is_classification",
         "true or false"),
        ('["x"]', None, "expected a JSON object"),
        ('{"instruction": "x", "output": "y"', None, "invalid JSON"),
    ],
)  # fmt: skip
def test_seed_loader_errors_name_row_field_and_fix(tmp_path, row, field, message):
    p = tmp_path / "s.jsonl"
    p.write_text('{"instruction": "Good one.", "output": "ok"}\n' + row + "\n")
    with pytest.raises(DataFormatError, match=message) as err:
        load_seed_tasks(p)
    assert err.value.row == 2 and err.value.field == field and err.value.fix
    assert str(p) in str(err.value)
    loaded = load_seed_tasks(p, skip_invalid=True)
    assert [t.instruction for t in loaded.tasks] == ["Good one."]
    (rej,) = loaded.rejects
    assert rej.row == 2 and rej.field == field and message in rej.reason


def test_seed_loader_with_no_valid_row(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text('{"instruction": "x"}\n')
    with pytest.raises(DataFormatError, match="no valid seed task"):
        load_seed_tasks(p, skip_invalid=True)
