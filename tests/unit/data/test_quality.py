import json

import pytest

from instructkit.config import load_config
from instructkit.data.quality import (
    HEURISTICS,
    DedupConfig,
    QualityConfig,
    check_copy,
    check_format,
    check_garbage,
    check_instruction_length,
    check_refusal,
    check_repetition,
    check_response_length,
    check_unsafe,
    dedup_records,
    dedup_text,
    exchanges,
    filter_records,
    judge_request,
    parse_score,
)
from instructkit.data.records import Conversation, Message, PreferencePair
from instructkit.data.text_measures import (
    contains_json,
    count_list_items,
    garbage_ratio,
    repetition_ratio,
    strip_code_blocks,
    truncation,
)
from instructkit.errors import ConfigError, LMError
from instructkit.lm.scripted import ScriptedLM

CFG = QualityConfig()


def conv(instruction, response, input=None):
    return Conversation([Message("user", instruction, input=input), Message("assistant", response)])


def reasons(check, instruction, response, cfg=CFG, **kw):
    return [name for name, _ in check(conv(instruction, response, **kw), cfg)]


# --- heuristics -----------------------------------------------------------------------------


def test_instruction_length_bounds():
    assert reasons(check_instruction_length, "Name a fruit.", "Apple.") == []
    assert reasons(check_instruction_length, "Fruit?", "Apple.") == ["instruction_length"]
    cfg = QualityConfig(max_instruction_words=5)
    assert reasons(check_instruction_length, "Sort these numbers", "1 2", input="3 1 2") == []
    long = "Please name one fruit that is red."
    assert reasons(check_instruction_length, long, "Apple.", cfg) == ["instruction_length"]
    [(_, detail)] = check_instruction_length(conv("Fruit?", "Apple."), CFG)
    assert detail == "1 instruction words < min_instruction_words=3"


def test_response_length_words_and_chars():
    cfg = QualityConfig(min_response_words=2, max_response_chars=20)
    assert reasons(check_response_length, "Name a fruit.", "An apple.", cfg) == []
    assert reasons(check_response_length, "Name a fruit.", "Apple.", cfg) == ["response_length"]
    too_long = "An apple from the orchard."
    [(_, detail)] = check_response_length(conv("Name a fruit.", too_long), cfg)
    assert detail == "26 response chars > max_response_chars=20"


@pytest.mark.parametrize(
    "response, flagged",
    [
        ("As an AI language model, I do not have opinions.", True),
        ("I\u2019m sorry, but I can\u2019t assist with that.", True),  # curly apostrophes
        ("I cannot    do that.", True),
        ("Paris is the capital of France.", False),
        ("As an aid to memory, use the acronym ROYGBIV.", False),  # word boundary
        ("I can't wait to try this recipe!", False),
    ],
)
def test_refusal_phrases(response, flagged):
    assert reasons(check_refusal, "Tell me something.", response) == (
        ["refusal"] if flagged else []
    )


def test_refusal_phrase_list_is_configurable():
    cfg = QualityConfig(refusal_phrases=["no can do"])
    assert reasons(check_refusal, "Help me.", "No can do, friend.", cfg) == ["refusal"]
    assert reasons(check_refusal, "Help me.", "I'm sorry to hear that.", cfg) == []


def test_copy_rouge_and_verbatim():
    inst = "Write a short poem about the sea at night."
    assert reasons(check_copy, inst, inst) == ["copy"]
    [(_, detail)] = check_copy(conv(inst, inst), CFG)
    assert detail.startswith("ROUGE-L 1.00")
    long_inst = (
        "Read the passage and answer. The committee met on Tuesday to discuss the budget for "
        "the new library building downtown and voted to delay it. Why was it delayed?"
    )
    echo = "The committee met on Tuesday to discuss the budget for the new library"
    [(_, detail)] = check_copy(conv(long_inst, echo), CFG)
    assert "appears verbatim" in detail
    # a short answer quoting the prompt, and an edit that echoes the Alpaca input, are fine
    assert reasons(check_copy, "Which is bigger, the sun or the moon?", "The sun.") == []
    sentence = "The cat sat on the mat and looked out of the window all day long."
    assert reasons(check_copy, "Fix the grammar.", sentence, input=sentence) == []


def test_copy_threshold_is_configurable():
    inst, resp = "name three red fruits", "three red fruits: apple"  # LCS 3 of 4+4 tokens
    assert reasons(check_copy, inst, resp) == []  # F = 0.75 < 0.8
    assert reasons(check_copy, inst, resp, QualityConfig(max_copy_rouge=0.75)) == ["copy"]


@pytest.mark.parametrize(
    "instruction, response, problem",
    [
        ("Write a function.", "```python\ndef f():\n    pass\n", "unbalanced code fences"),
        ("Write a function.", "```python\ndef f():\n    pass\n```\nDone.", None),
        ("Show inline fences.", "Use ```x``` to quote.", None),
        ("Return the data as JSON.", "Name: Bob, age: 3.", "asks for JSON"),
        ("Return the data as JSON.", '```json\n{"name": "Bob"}\n```', None),
        ("Return the data in valid JSON.", "Here: [1, 2] and more.", None),
        ("List 3 fruits.", "1. Apple\n2. Pear", "asks for 3 items"),
        ("List three fruits.", "- Apple\n- Pear\n- Plum\n- Fig", "asks for 3 items"),
        ("List 3 fruits.", "1. Apple\n2. Pear\n3. Plum", None),
        ("List 3 fruits.", "**1.** Apple\n   - red\n   - sweet\n**2.** Pear\n**3.** Plum", None),
        ("List 3 fruits.", "Apple, pear and plum.", None),  # not a markdown list: not counted
        ("Write 3 sentences about cats.", "- Cats purr.\n- Cats nap.", None),  # a unit
        ("Summarize it as bullet points.", "It is a long story about a cat.", "bulleted"),
        ("Summarize it as bullet points.", "- A cat.\n- A long story.", None),
        ("Turn these bullet points into prose.", "A cat and a story.", None),
        ("Tell a story.", "Once upon a time there was...", "ends with '...'"),
        (
            "Explain tides.",
            "Tides are caused by the gravity of the moon and the sun acting on the",
            "mid-sentence",
        ),
        ("Capital of France?", "Paris", None),  # short answers need no full stop
        (
            "Give tips.",
            "Tips:\n- Use a sharp knife to cut the vegetables into small even pieces",
            None,  # list items need no full stop
        ),
    ],
)
def test_format_checks(instruction, response, problem):
    found = check_format(conv(instruction, response), CFG)
    if problem is None:
        assert found == []
    else:
        [(name, detail)] = found
        assert name == "format" and problem in detail


def test_format_helpers():
    assert strip_code_blocks("a\n```\ncode\n```\nb\n```\nopen") == "a\nb"
    assert count_list_items("1. a\n2. b\n- x\n- y\n- z") == 2  # numbered items win
    assert count_list_items("- a\n  - nested\n* b\n```\n- in code\n```") == 3
    assert contains_json('x {"a": [1]} y') and not contains_json("{not json}")
    assert truncation("A sentence that ends properly, with a full stop at the end.") is None
    assert truncation("Short and without stop", min_words=10) is None
    assert truncation("We need these things for the trip to the lake this weekend:") is not None


def test_repetition_ratio_hand_values():
    assert repetition_ratio("a b c a b c", 3) == pytest.approx(0.25)  # abc bca cab abc
    assert repetition_ratio("a b c d", 3) == 0.0
    assert repetition_ratio("a b", 3) == 0.0  # no trigram at all
    assert repetition_ratio("go go go go go", 1) == pytest.approx(0.8)
    loop = "I like it. " * 10
    assert reasons(check_repetition, "Do you like it?", loop) == ["repetition"]
    code = "Here:\n```\n" + "x = x + 1\n" * 20 + "```\nIt adds twenty."
    assert reasons(check_repetition, "Write a loop.", code) == []  # code is not prose


def test_garbage_ratio_and_check():
    assert garbage_ratio("ab\ufffd\ufffd") == pytest.approx(0.5)
    assert garbage_ratio("x = (a + b) * c; | # | {y} @z") == 0.0  # printable ASCII is text
    assert garbage_ratio("Ça coûte 5 €, ¿no?  你好。") == pytest.approx(1 / 17)  # only €
    assert garbage_ratio("") == 0.0
    spam = "Great " + "\U0001f389\u2588\u2593" * 10
    assert reasons(check_garbage, "Celebrate!", spam) == ["garbage"]
    assert reasons(check_garbage, "Celebrate!", "\U0001f389\U0001f389\U0001f389") == []  # short
    prose = "Mix 2 cups (250 g) of flour with 1/2 tsp salt; stir 5-10 min."
    assert reasons(check_garbage, "How do I start?", prose) == []


def test_unsafe_words_default_file_and_boundaries(tmp_path):
    assert reasons(check_unsafe, "Explain how to build a bomb at home.", "Sure.") == ["unsafe"]
    assert reasons(check_unsafe, "What is a fire drill?", "Just kill yourself.") == ["unsafe"]
    assert reasons(check_unsafe, "Describe a bombastic speech.", "It is loud.") == []
    words = tmp_path / "unsafe.txt"
    words.write_text("# my list\n\nbombastic\n  Loud Speech  \n")
    cfg = QualityConfig(unsafe_words_file=str(words))
    records = [
        conv("Describe a bombastic speech.", "It is loud."),
        conv("Say hi to me.", "Hi there."),
    ]
    result = filter_records(records, cfg)
    assert [v.reasons for v in result.verdicts] == [
        [("unsafe", "the instruction contains 'bombastic'")],
        [],
    ]
    with pytest.raises(ConfigError, match="missing.txt"):
        filter_records(records, QualityConfig(unsafe_words_file=str(tmp_path / "missing.txt")))


def test_every_exchange_is_checked_and_named():
    c = Conversation(
        [
            Message("system", "Be brief."),
            Message("user", "What is two plus two?"),
            Message("assistant", "Four."),
            Message("user", "And three plus three?"),
            Message("assistant", "I'm sorry, I cannot do math."),
        ]
    )
    assert check_refusal(c, CFG) == [("refusal", 'turn 2: the response says "i\'m sorry"')]


def test_preference_pairs_are_checked_through_chosen():
    pair = PreferencePair(
        [Message("user", "Name a primary colour.")], chosen="Red.", rejected="As an AI, no."
    )
    bad = PreferencePair(
        [Message("user", "Name a primary colour.")], chosen="As an AI, no.", rejected="Red."
    )
    result = filter_records([pair, bad], CFG)
    assert result.kept == [pair] and [n for n, _ in result.rejected[0][1]] == ["refusal"]


def test_every_heuristic_is_on_by_default_and_empty_records_are_rejected():
    assert QualityConfig().filters == list(HEURISTICS)
    only_user = Conversation([Message("user", "Anyone there at all?")])
    assert exchanges(only_user) == []
    [(record, why)] = filter_records([only_user], CFG).rejected
    assert why == [("no_response", "the record has no user/assistant exchange")]


def test_config_errors_are_collected():
    with pytest.raises(ConfigError) as e:
        load_config(
            QualityConfig,
            overrides=["filters=[refusal,typo]", "min_response_words=9", "max_response_words=3"],
        )
    assert "unknown filter(s) ['typo']" in str(e.value)
    with pytest.raises(ConfigError, match="min_response_words=9 > max_response_words=3"):
        load_config(QualityConfig, overrides=["min_response_words=9", "max_response_words=3"])
    cfg = load_config(QualityConfig, overrides=["filters=[refusal]"])
    assert filter_records([conv("Hi", "x")], cfg).kept != []  # length checks are off


# --- filter_records and the report ----------------------------------------------------------


def test_filter_records_report_counts_distributions_examples():
    records = [conv("Say one word please.", "word " * n) for n in (1, 2, 3, 4, 10)]
    records += [conv("Tell me a fact.", "As an AI, I cannot.")] * 4
    result = filter_records(records, QualityConfig(filters=["refusal"]), rows=range(11, 20))
    report = result.report
    assert (report.n_records, report.n_kept, report.n_rejected) == (9, 5, 4)
    assert report.counts == {"refusal": 4}
    assert [e["row"] for e in report.examples["refusal"]] == [16, 17, 18]  # three examples
    words = report.distributions["response_words"]  # 1 2 3 4 5 5 5 5 10: p90 at 7.2 -> 5 + 0.2*5
    assert words == {"min": 1, "p50": 5, "p90": 6.0, "max": 10}
    d = report.to_dict()
    assert json.loads(json.dumps(d))["counts"] == {"refusal": 4} and d["judge"] is None
    text = report.format()
    assert "9 records: 5 kept, 4 rejected" in text and "refusal" in text and "p90" in text
    assert len(result.kept) + len(result.rejected) == len(records)


def test_distribution_quantiles_interpolate():
    records = [conv("Say one word please.", "word " * n) for n in (1, 2, 3, 4, 10)]
    dist = filter_records(records, CFG).report.distributions["response_words"]
    assert dist == {"min": 1, "p50": 3, "p90": pytest.approx(7.6), "max": 10}


# --- LLM judge ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, score",
    [
        ("Score: 4\nAccurate and clear.", 4.0),
        ("**Score:** 4.5/5", 4.5),
        ("score = 3. The answer misses a step.", 3.0),
        ("Score: 3\nOn reflection the answer is right.\nScore: 5", 5.0),  # the last one
        ("4\nGood answer.", 4.0),
        ("**5**", 5.0),
        ("I would rate this 4/5 overall.", 4.0),
        ("Four out of five? No: 2 out of 5.", 2.0),
        ("Score: 4.5.", 4.5),
        ("Score: 7", None),  # out of range
        ("Score: 10", None),  # not read as 1
        ("Score: N/A", None),
        ("Either 3/5 or 4/5.", None),  # ambiguous
        ("Great answer!", None),
        ("", None),
    ],
)
def test_parse_score(text, score):
    assert parse_score(text) == score


def test_judge_request_holds_the_record():
    c = Conversation(
        [
            Message("system", "Be brief."),
            Message("user", "Hi."),
            Message("assistant", "Hello."),
            Message("user", "Add the numbers.", input="2 and 3"),
            Message("assistant", "5"),
        ]
    )
    request = judge_request(c, CFG)
    prompt = request.messages[1][1]
    assert request.temperature == 0.0 and request.messages[0][0] == "system"
    assert "System: Be brief.\nUser: Hi.\nAssistant: Hello." in prompt
    assert "### Instruction\nAdd the numbers." in prompt and "### Input\n2 and 3" in prompt
    assert prompt.index("### Response\n5") > prompt.index("### Input")


def scored_lm(scores, die_after=None):
    """Judge answering with scores[instruction] (a float, or a raw string); with ``die_after``,
    a connection that fails on every call after that many answers."""
    answered = []

    def answer(request):
        if die_after is not None and len(answered) >= die_after:
            raise LMError("connection lost")
        prompt = request.messages[1][1]
        score = scores[prompt.split("### Instruction\n")[1].split("\n")[0]]
        answered.append(request)
        return score if isinstance(score, str) else f"Score: {score}\nBecause."

    return ScriptedLM(answer, name="judge")


def test_judge_threshold_and_unparsed_flags():
    scores = {"Task a.": 5, "Task b.": 4, "Task c.": 3.5, "Task d.": "Lovely!"}
    records = [conv(f"Task {x}.", f"Answer {x} here.") for x in "abcd"]
    cfg = QualityConfig(min_instruction_words=1)
    result = filter_records(records, cfg, judge_lm=scored_lm(scores))
    assert [v.kept for v in result.verdicts] == [True, True, False, True]
    assert result.verdicts[2].reasons == [("judge", "judge score 3.5 < judge_threshold=4")]
    assert [n for n, _ in result.verdicts[3].flags] == ["judge_unparsed"]
    assert result.verdicts[0].scores["judge"] == 5.0 and "judge" not in result.verdicts[3].scores
    report = result.report
    assert report.counts == {"judge": 1} and report.flags == {"judge_unparsed": 1}
    assert report.judge == {
        "model": "judge",
        "calls": 4,
        "resumed": 0,
        "threshold": 4.0,
        "unparsed": 1,
    }
    assert "judge_unparsed (kept)" in report.format()

    strict = cfg.model_copy(update={"judge_threshold": 4.5, "drop_unparsed": True})
    result = filter_records(records, strict, judge_lm=scored_lm(scores))
    assert [v.kept for v in result.verdicts] == [True, False, False, False]
    assert result.report.counts == {"judge": 2, "judge_unparsed": 1}


def test_judge_sees_only_heuristic_survivors_and_duplicates_once():
    lm = scored_lm({"Task a.": 5})
    records = [conv("Task a.", "Fine answer.")] * 3 + [conv("Task b.", "As an AI, no.")]
    result = filter_records(records, QualityConfig(min_instruction_words=1), judge_lm=lm)
    assert len(lm.calls) == 1 and len(result.kept) == 3
    assert result.report.judge["calls"] == 1


def test_judging_resumes_from_the_journal(tmp_path):
    scores = {f"Task {i}.": 5 if i % 2 else 3 for i in range(7)}
    records = [conv(f"Task {i}.", f"Answer {i} here.") for i in range(7)]
    cfg = QualityConfig(
        min_instruction_words=1, judge_batch_size=2, judge_journal=str(tmp_path / "j.jsonl")
    )
    with pytest.raises(LMError):
        filter_records(records, cfg, judge_lm=scored_lm(scores, die_after=4))
    journaled = [json.loads(x) for x in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert len(journaled) == 4  # two whole batches; the batch in flight is lost

    again = scored_lm(scores)
    resumed = filter_records(records, cfg, judge_lm=again)
    assert len(again.calls) == 3  # only the records not yet judged
    assert resumed.report.judge["resumed"] == 4 and resumed.report.judge["calls"] == 3
    fresh = filter_records(records, QualityConfig(min_instruction_words=1), scored_lm(scores))
    assert [v.kept for v in resumed.verdicts] == [v.kept for v in fresh.verdicts]
    assert [v.kept for v in fresh.verdicts] == [False, True, False, True, False, True, False]

    other_judge = ScriptedLM(["Score: 5"], name="another-model")
    filter_records(records, cfg, judge_lm=other_judge)
    assert len(other_judge.calls) == 7  # the journal is keyed by model too


# --- dedup ----------------------------------------------------------------------------------


def alpaca(instruction, input=None, output="ok"):
    return conv(instruction, output, input=input)


def test_dedup_exact_and_near_first_kept():
    records = [
        alpaca("Write a poem about the sea."),  # 0 kept
        alpaca("write a poem, about the SEA!"),  # 1 exact dup of 0
        alpaca("Give three tips for staying healthy."),  # 2 kept
        alpaca("Give three good tips for staying healthy."),  # 3 near dup of 2
        alpaca("Explain photosynthesis to a child."),  # 4 kept
        alpaca("Give three good tips for staying healthy!"),  # 5 exact dup of 3 -> matches 2
    ]
    result = dedup_records(records, DedupConfig(), rows=[10, 11, 12, 13, 14, 15])
    assert result.kept == [records[0], records[2], records[4]]
    got = [(d.index, d.match, d.reason) for d in result.duplicates]
    assert got == [(1, 0, "exact_duplicate"), (3, 2, "near_duplicate"), (5, 2, "exact_duplicate")]
    assert result.duplicates[0].similarity == 1.0
    assert result.duplicates[1].similarity == pytest.approx(2 * 6 / (6 + 7))
    assert result.rejected[1][1] == [
        ("near_duplicate", "ROUGE-L 0.923 >= 0.7 on instruction with row 12")
    ]
    assert result.rejected[2][1][0][1] == (
        "same instruction (normalized) as row 13, itself a near duplicate of row 12"
    )


def test_dedup_field_and_threshold():
    records = [
        alpaca("Classify the sentiment.", "I love it."),
        alpaca("Classify the sentiment.", "Awful."),
    ]
    assert len(dedup_records(records, DedupConfig()).kept) == 1
    assert len(dedup_records(records, DedupConfig(field="instruction+input")).kept) == 2
    assert dedup_text(records[0], "instruction+input") == "Classify the sentiment.\n\nI love it."
    near = [
        alpaca("Give three tips for staying healthy."),
        alpaca("Give three good tips for staying healthy."),
    ]
    assert len(dedup_records(near, DedupConfig(threshold=0.95)).kept) == 2
    with pytest.raises(ConfigError):
        load_config(DedupConfig, threshold=1.5)
