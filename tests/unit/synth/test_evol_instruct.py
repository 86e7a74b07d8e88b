import json
from collections import Counter

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from instructkit.data.formats import load_records
from instructkit.errors import ConfigError, DataFormatError, LMError
from instructkit.lm.base import Completion
from instructkit.lm.scripted import ScriptedLM
from instructkit.synth import evol_instruct as ev
from instructkit.synth.evol_instruct import (
    EVOL_PROMPTS,
    OPERATIONS,
    Candidate,
    EvolConfig,
    choose_operation,
    load_instructions,
    render_evol_prompt,
    run_evol,
)

RESPONSE = (
    "Gravity pulls masses toward each other because mass curves spacetime; objects follow those "
    "curves, so apples fall, planets orbit stars, tides rise, and astronauts float while "
    "falling freely around Earth."
)
assert len(RESPONSE.split()) == 30
SEEDS = [
    {"id": "a", "instruction": "Explain gravity."},
    {"id": "b", "instruction": "Name three primary colors."},
    {"id": "c", "instruction": "Write a LEAK haiku."},
    {"id": "d", "instruction": "Describe REFUSE tactics."},
]
CFG = EvolConfig()


def given_prompt(text: str) -> str:
    return text.split("#Given Prompt#:\n", 1)[1].rsplit("\n\n#", 1)[0]


def script(tail: str = " Also explain why."):
    """Rewrites append ``tail``; items marked LEAK leak the template, REFUSE get a refusal."""

    def answer(request):
        text = request.messages[-1][1]
        if "#Given Prompt#:" in text:
            given = given_prompt(text)
            if "LEAK" in given:
                return "#Rewritten Prompt#: " + given + " in spring"
            return given + tail.format(n=len(given.split()))
        if "REFUSE" in text:
            return "I'm sorry, but I cannot help with that request."
        return RESPONSE

    return answer


class BatchLM(ScriptedLM):
    """ScriptedLM that also records the size of every complete() batch."""

    def __init__(self, answer):
        super().__init__(answer)
        self.batches = []

    def complete(self, requests, *, progress=False):
        self.batches.append(len(requests))
        return super().complete(requests, progress=progress)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ---------------------------------------------------------------------------- operations


def test_choose_operation_is_deterministic_and_roughly_uniform():
    weights = CFG.operations
    first = [choose_operation(weights, 7, 1, f"id{i}") for i in range(600)]
    assert first == [choose_operation(weights, 7, 1, f"id{i}") for i in range(600)]
    counts = Counter(first)
    assert set(counts) == set(OPERATIONS)
    assert all(60 <= n <= 140 for n in counts.values())  # 100 expected per operation
    assert first != [choose_operation(weights, 7, 2, f"id{i}") for i in range(600)]
    assert first != [choose_operation(weights, 8, 1, f"id{i}") for i in range(600)]


def test_choose_operation_honors_weights():
    only = [choose_operation({"deepen": 1.0}, 0, 1, f"x{i}") for i in range(50)]
    assert set(only) == {"deepen"}
    no_breadth = dict(CFG.operations, breadth=0.0)
    assert "breadth" not in {choose_operation(no_breadth, 0, 1, f"x{i}") for i in range(300)}


@pytest.mark.parametrize(
    "ops", [{"deepen": 1, "mutate": 1}, {"deepen": -1.0}, {"deepen": 0.0, "breadth": 0.0}]
)
def test_config_rejects_bad_operation_weights(ops):
    with pytest.raises(ValidationError):
        EvolConfig(operations=ops)


def test_prompts_cover_every_operation_and_keep_the_instruction_verbatim():
    assert set(EVOL_PROMPTS) == set(OPERATIONS)
    instruction = 'Format {name} as JSON: {"a": 1}'
    for op in OPERATIONS:
        prompt = render_evol_prompt(op, instruction)
        assert given_prompt(prompt) == instruction
        assert "{method}" not in prompt and "{instruction}" not in prompt
    assert "10 to 20 words" in render_evol_prompt("deepen", "x")
    assert "rarer" in render_evol_prompt("breadth", "x")
    assert len({EVOL_PROMPTS[op] for op in OPERATIONS}) == len(OPERATIONS)


# ---------------------------------------------------------------------------- elimination rules


def cand(instruction="Explain gravity with two examples.", response=RESPONSE):
    """A candidate whose parent is "Explain gravity."."""
    return Candidate("Explain gravity.", instruction, response)


def test_template_leak():
    assert ev.template_leak(cand("#Rewritten Prompt#: Explain gravity."), CFG) is not None
    assert "given prompt" in ev.template_leak(cand("Rewrite the given prompt."), CFG)
    assert ev.template_leak(cand("Explain gravity with an example."), CFG) is None
    # a phrase the parent already had is the topic, not a leak
    bio = Candidate("Explain evolution.", "Explain evolution in finches and moths.")
    assert ev.template_leak(bio, CFG) is None
    assert ev.template_leak(cand("Explain the evolution of gravity theory."), CFG) is not None


def test_too_long():
    cfg = EvolConfig(max_instruction_words=5)
    assert ev.too_long(cand("one two three four five"), cfg) is None
    assert ev.too_long(cand("one two three four five six"), cfg) == "6 words > 5"


def test_identical_to_parent():
    assert ev.identical_to_parent(cand("  explain GRAVITY! "), CFG) == "same text as the parent"
    assert ev.identical_to_parent(cand("Explain gravity to a child."), CFG) is None


def test_no_new_information():
    assert ev.no_new_information(cand(""), CFG) == "empty rewrite"
    assert ev.no_new_information(cand("Gravity: explain."), CFG) == "no word that the parent lacks"
    parent = " ".join(f"w{i}" for i in range(20))
    near = Candidate(parent, parent + " extra")  # LCS 20 of 20 and 21 tokens: F = 40/41
    assert ev.no_new_information(near, CFG) == "ROUGE-L 0.98 with the parent"
    # F = 2*2/(2+9) = 0.36
    richer = cand("Explain gravity using two everyday examples and one equation.")
    assert ev.no_new_information(richer, CFG) is None


def test_too_short():
    cfg = EvolConfig(min_response_words=5)
    assert ev.too_short(cand(response="   "), cfg) == "empty response"
    assert ev.too_short(cand(response="Yes it is."), cfg) == "3 words < 5"
    assert ev.too_short(cand(response="It pulls masses together strongly."), cfg) is None


def test_only_stop_words():
    assert ev.only_stop_words(cand(response="The, and... of it!"), CFG) is not None
    assert ev.only_stop_words(cand(response="?! ..."), CFG) is not None
    assert ev.only_stop_words(cand(response="The cat sat."), CFG) is None


def test_refusal():
    assert "sorry" in ev.refusal(cand(response="Sorry, that is not possible."), CFG)
    assert ev.refusal(cand(response="I\u2019m unable to do that. " + RESPONSE * 3), CFG) == (
        'opens with "i\'m unable"'
    )
    assert ev.refusal(cand(response="As an AI, I think " + RESPONSE * 3), CFG) is not None
    long_sorry = RESPONSE * 3 + " Sorry for the long answer."  # over 80 words: the paper keeps it
    assert ev.refusal(cand(response=long_sorry), CFG) is None
    late = RESPONSE * 2 + " I cannot stress this enough."  # a refusal phrase late in prose
    assert ev.refusal(cand(response=late), CFG) is None
    assert ev.refusal(cand(), CFG) is None


def test_copies_response():
    assert ev.copies_response(cand("Explain gravity now.", "Explain gravity now!"), CFG)
    assert ev.copies_response(cand(), CFG) is None


def test_first_failure_reports_the_first_rule_in_order():
    cfg = EvolConfig(max_instruction_words=3)
    c = cand("#Rewritten Prompt#: explain gravity in detail")
    assert ev.first_failure(ev.INSTRUCTION_RULES, c, cfg)[0] == "template_leak"
    assert ev.first_failure(ev.INSTRUCTION_RULES, cand("Explain gravity to kids"), cfg)[0] == (
        "too_long"
    )
    assert ev.first_failure(ev.RESPONSE_RULES, cand(response=""), cfg)[0] == "too_short"
    assert ev.first_failure(ev.RESPONSE_RULES, cand(), cfg) is None


# ---------------------------------------------------------------------------- end to end


def test_run_evol_end_to_end_eliminates_scripted_failures(tmp_path, caplog):
    lm = BatchLM(script())
    out = tmp_path / "evol.jsonl"
    with caplog.at_level("INFO", logger="instructkit.synth.evol_instruct"):
        r = run_evol(EvolConfig(rounds=1), lm, SEEDS, out, progress=False)
    assert "round 1: 2 kept, 2 eliminated" in caplog.text
    assert "e.g. refusal ('sorry' in a 9-word response)" in caplog.text
    kept, rejected = read_jsonl(out), read_jsonl(tmp_path / "evol.rejects.jsonl")
    assert [row["id"] for row in kept] == ["a.r1", "b.r1"]
    assert kept[0] == {
        "id": "a.r1",
        "parent_id": "a",
        "root_id": "a",
        "operation": choose_operation(CFG.operations, 0, 1, "a"),
        "round": 1,
        "instruction": "Explain gravity. Also explain why.",
        "output": RESPONSE,
    }
    assert {row["root_id"]: row["reason"] for row in rejected} == {
        "c": "template_leak",
        "d": "refusal",
    }
    assert rejected[0]["output"] is None
    assert rejected[0]["parent_instruction"] == "Write a LEAK haiku."
    # one batch of 4 rewrites, one batch of 3 answers (the leaked rewrite is never answered)
    assert lm.batches == [4, 3]
    assert (r.kept_per_round, r.eliminated_per_round) == ({1: 2}, {1: 2})
    assert r.per_reason == {"template_leak": 1, "refusal": 1}
    assert sum(v["kept"] + v["eliminated"] for v in r.per_operation.values()) == 4
    assert r.examples["refusal"][0]["root_id"] == "d"
    loaded = load_records(out)  # the output is an Alpaca file with lineage as metadata
    assert loaded.format == "alpaca" and loaded.records[1].metadata["parent_id"] == "b"


def test_lineage_across_rounds(tmp_path):
    seen: set[str] = set()

    def flaky(request):  # fails b's first rewrite only: b's round-2 parent is the seed
        text = request.messages[-1][1]
        if "#Given Prompt#:" in text and "colors" in text and "b" not in seen:
            seen.add("b")
            return given_prompt(text)
        return script(" Also explain step {n}.")(request)

    out = tmp_path / "evol.jsonl"
    r = run_evol(EvolConfig(rounds=2), ScriptedLM(flaky), SEEDS[:2], out, progress=False)
    rows = {row["id"]: row for row in read_jsonl(out)}
    assert list(rows) == ["a.r1", "a.r2", "b.r2"]
    assert [rows[i]["parent_id"] for i in rows] == ["a", "a.r1", "b"]
    assert {row["root_id"] for row in rows.values()} == {"a", "b"}
    assert rows["a.r2"]["instruction"] == (
        "Explain gravity. Also explain step 2. Also explain step 6."
    )
    assert rows["b.r2"]["instruction"].startswith(SEEDS[1]["instruction"] + " Also")
    (reject,) = read_jsonl(tmp_path / "evol.rejects.jsonl")
    assert (reject["id"], reject["reason"]) == ("b.r1", "identical_to_parent")
    assert (r.kept_per_round, r.eliminated_per_round) == ({1: 1, 2: 2}, {1: 1, 2: 0})


def test_keep_failed_writes_failures_to_the_output_too(tmp_path):
    out = tmp_path / "evol.jsonl"
    lm = ScriptedLM(script(" Also step {n}."))
    run_evol(EvolConfig(rounds=2, keep_failed=True), lm, SEEDS, out, progress=False)
    rows = read_jsonl(out)
    failed = [row for row in rows if "reason" in row]
    rejected = read_jsonl(tmp_path / "evol.rejects.jsonl")
    assert [row["id"] for row in failed] == [row["id"] for row in rejected]
    assert len(rows) == 8 and len(failed) == 4
    # failed rows never become parents
    assert {row["parent_id"] for row in rows if row["round"] == 2} == {"a.r1", "b.r1", "c", "d"}


class FailAfter:
    """A script that raises once it has been asked ``k`` times (a crash mid-run)."""

    def __init__(self, k, answer):
        self.k, self.n, self.answer = k, 0, answer

    def __call__(self, request):
        self.n += 1
        if self.n > self.k:
            raise RuntimeError("backend died")
        return self.answer(request)


# Each round asks 7 requests (4 rewrites, 3 answers): k=9 dies in round 2's rewrite batch,
# k=3 in round 1's; with chunks of 2 (3), round 3's first chunk is journaled before the crash.
@pytest.mark.parametrize(
    ("chunk_size", "k", "n_resumed"), [(None, 9, 4), (None, 3, 0), (2, 18, 10), (3, 20, 11)]
)
def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path, chunk_size, k, n_resumed):
    cfg = EvolConfig(rounds=3, chunk_size=chunk_size, seed=3)
    answer = script(" Also explain step {n}.")
    ref = tmp_path / "ref" / "evol.jsonl"
    full = run_evol(cfg, ScriptedLM(answer), SEEDS, ref, progress=False)

    out = tmp_path / "run" / "evol.jsonl"
    with pytest.raises(RuntimeError, match="backend died"):
        run_evol(cfg, ScriptedLM(FailAfter(k, answer)), SEEDS, out, progress=False)
    lm = ScriptedLM(answer)
    resumed = run_evol(cfg, lm, SEEDS, out, progress=False)

    assert out.read_bytes() == ref.read_bytes()
    rejects = out.with_name("evol.rejects.jsonl")
    assert rejects.read_bytes() == ref.with_name("evol.rejects.jsonl").read_bytes()
    ids = [row["id"] for row in read_jsonl(out) + read_jsonl(rejects)]
    assert len(ids) == len(set(ids)) == 3 * len(SEEDS)
    assert (resumed.kept_per_round, resumed.per_reason) == (full.kept_per_round, full.per_reason)
    assert resumed.per_operation == full.per_operation
    assert resumed.n_resumed == n_resumed
    assert len(lm.calls) == 21 - 7 * (n_resumed // 4) - {0: 0, 2: 4, 3: 5}[n_resumed % 4]


def test_more_rounds_extend_a_finished_run(tmp_path):
    answer = script(" Also explain step {n}.")
    ref, out = tmp_path / "ref.jsonl", tmp_path / "out.jsonl"
    run_evol(EvolConfig(rounds=2), ScriptedLM(answer), SEEDS, ref, progress=False)
    run_evol(EvolConfig(rounds=1), ScriptedLM(answer), SEEDS, out, progress=False)
    lm = ScriptedLM(answer)
    r = run_evol(EvolConfig(rounds=2), lm, SEEDS, out, progress=False)
    assert out.read_bytes() == ref.read_bytes()
    assert r.n_resumed == len(SEEDS) and len(lm.calls) < 2 * len(SEEDS) + 1


def test_resume_refuses_other_settings_and_fresh_starts_over(tmp_path):
    out = tmp_path / "evol.jsonl"
    run_evol(EvolConfig(rounds=1), ScriptedLM(script()), SEEDS, out, progress=False)
    with pytest.raises(ConfigError, match="other settings"):
        run_evol(EvolConfig(rounds=1, seed=1), ScriptedLM(script()), SEEDS, out, progress=False)
    lm = ScriptedLM(script())
    r = run_evol(EvolConfig(rounds=1, seed=1), lm, SEEDS, out, progress=False, fresh=True)
    assert r.n_resumed == 0 and len(read_jsonl(out)) == r.n_kept == 2
    stranger = tmp_path / "other.jsonl"
    stranger.write_text('{"instruction": "x", "output": "y"}\n')
    with pytest.raises(ConfigError, match="did not write"):
        run_evol(EvolConfig(rounds=1), ScriptedLM(script()), SEEDS, stranger, progress=False)


def test_lm_answering_too_few_requests_is_an_lm_error(tmp_path):
    class Short(ScriptedLM):
        def complete(self, requests, *, progress=False):
            return [Completion(["x"])]

    with pytest.raises(LMError, match="answered 1 of 4"):
        run_evol(EvolConfig(rounds=1), Short(script()), SEEDS, tmp_path / "o", progress=False)


# ---------------------------------------------------------------------------- input


def test_load_instructions_reads_plain_alpaca_and_chat_files(tmp_path):
    plain = tmp_path / "plain.jsonl"
    rows = [{"instruction": "A?"}, {"instruction": "B?", "input": "ctx", "id": 7, "output": "b"}]
    plain.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_instructions(plain) == [
        {"instruction": "A?"},
        {"instruction": "B?\n\nctx", "response": "b", "id": 7},
    ]
    chat = tmp_path / "chat.jsonl"
    turns = [
        {"from": "human", "value": "Hi?"},
        {"from": "gpt", "value": "Hello."},
        {"from": "human", "value": "More?"},
        {"from": "gpt", "value": "Sure."},
    ]
    chat.write_text(json.dumps({"conversations": turns, "id": "s1"}) + "\n")
    assert load_instructions(chat) == [{"instruction": "Hi?", "response": "Hello.", "id": "s1"}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "A?"}\n{"instruction": "  "}\n')
    with pytest.raises(DataFormatError, match="bad.jsonl:2: field 'instruction'"):
        load_instructions(bad)


def test_seed_ids_must_be_unique(tmp_path):
    seeds = [{"id": "x", "instruction": "A?"}, {"id": "x", "instruction": "B?"}]
    with pytest.raises(DataFormatError, match="duplicate id 'x'"):
        run_evol(CFG, ScriptedLM(script()), seeds, tmp_path / "o.jsonl", progress=False)


# ---------------------------------------------------------------------------- CLI


def test_cli_prints_the_summary_table(tmp_path, monkeypatch):
    from instructkit.cli import evol as evol_cli

    monkeypatch.setattr(
        "instructkit.lm.build_lm", lambda spec, **kw: ScriptedLM(script(), name=spec)
    )
    src = tmp_path / "seeds.jsonl"
    src.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    out = tmp_path / "evol.jsonl"
    args = [str(src), "-o", str(out), "--rounds", "1", "--lm", "scripted", "--no-progress"]
    r = CliRunner().invoke(evol_cli.evol, args)
    assert r.exit_code == 0, r.output
    assert "    1       2           2" in r.output
    assert "template_leak" in r.output and "refusal" in r.output
    assert len(read_jsonl(out)) == 2


def test_seeds_take_a_dataset_spec_with_a_column_mapping(tmp_path, monkeypatch):
    """Seeds are a path (SRC, as before) or a spec (the config's `seeds:`): a CSV whose
    columns have other names reads as the JSONL rows do, from the command line too."""
    import instructkit.lm
    from instructkit.cli.main import cli

    (tmp_path / "s.csv").write_text("id,question,answer\na,Explain gravity.,It pulls.\n")
    spec = {"path": str(tmp_path / "s.csv"), "columns": {"instruction": "question",
                                                         "output": "answer"}}  # fmt: skip
    expected = [{"instruction": "Explain gravity.", "response": "It pulls.", "id": "a"}]
    assert load_instructions(spec) == expected
    assert EvolConfig(seeds=spec).seeds.columns == spec["columns"]
    monkeypatch.setattr(instructkit.lm, "build_lm", lambda spec, **kw: ScriptedLM(script()))
    (tmp_path / "c.yaml").write_text(json.dumps({"rounds": 1, "seeds": spec}))
    out = tmp_path / "o.jsonl"
    args = ["synth", "evol", "-o", str(out), "--lm", "openai:m", "--no-progress"]
    r = CliRunner().invoke(cli, [*args, "--config", str(tmp_path / "c.yaml")])
    assert r.exit_code == 0, r.output
    assert "1 seeds, 1 rounds" in r.output and read_jsonl(out)[0]["root_id"] == "a"
    r = CliRunner().invoke(cli, args)
    assert r.exit_code != 0 and "give SRC, or seeds:" in r.output
