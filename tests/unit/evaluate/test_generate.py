"""`run_generate`: every prompt kind the loader reads, each row's fields kept, resumable."""

import json

import pytest

from instructkit.errors import ConfigError, DataFormatError
from instructkit.evaluate.generate import GenerateConfig, read_prompts, run_generate
from instructkit.lm.scripted import ScriptedLM


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def echo_lm():
    """Answers with the last user message, upper-cased, so each response names its prompt."""
    return ScriptedLM(lambda req: req.chat()[-1]["content"].upper())


ROWS = {
    "alpaca": [{"instruction": "Add.", "input": "2 and 3", "output": "5", "id": "a1"}],
    "alpaca-no-output": [{"instruction": "Say hi.", "source": "x"}],
    "sharegpt": [
        {
            "conversations": [
                {"from": "human", "value": "hi"},
                {"from": "gpt", "value": "hello"},
                {"from": "human", "value": "bye"},
            ]
        }
    ],  # fmt: skip
    "messages": [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "q1"},
                {"role": "assistant", "content": "a1"},
            ]
        }
    ],  # fmt: skip
    "prompt-completion": [{"prompt": "say yes", "completion": "yes"}],
    "ifeval": [
        {
            "key": 7,
            "prompt": "write in lowercase",
            "instruction_id_list": ["change_case:english_lowercase"],
            "kwargs": [{}],
        }
    ],  # fmt: skip
    "task": [
        {
            "id": "s1",
            "task": "sentiment",
            "split": "test",
            "text": "I loved it.",
            "answer": "positive",
        }
    ],  # fmt: skip
}
LAST_USER = {
    "alpaca": "Add.\n\n2 and 3",
    "alpaca-no-output": "Say hi.",
    "sharegpt": "bye",
    "messages": "q1",
    "prompt-completion": "say yes",
    "ifeval": "write in lowercase",
}


@pytest.mark.parametrize("kind", list(ROWS))
def test_every_prompt_kind_gets_a_response_and_keeps_its_fields(tmp_path, kind):
    data = _jsonl(tmp_path / "in.jsonl", ROWS[kind])
    cfg = GenerateConfig(data=str(data), out=str(tmp_path / "out.jsonl"))
    r = run_generate(cfg, lm=echo_lm(), progress=False)
    assert (r.n_prompts, r.n_generated, r.n_resumed) == (1, 1, 0)
    (row,) = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert {k: row[k] for k in ROWS[kind][0]} == ROWS[kind][0]  # every input field kept
    assert row["model"] == "scripted" and "finish_reason" in row
    if kind == "task":
        assert "I LOVED IT." in row["response"]  # rendered with the task's template
    else:
        expected = LAST_USER[kind]
        assert row["response"] in (expected.upper(), expected.upper().strip())


def test_prompts_from_parquet_and_csv_through_the_loader(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"instruction": "Add.", "input": "2 and 3", "id": 7}, {"prompt": "say yes", "id": 8}]
    pq.write_table(pa.Table.from_pylist(rows[:1]), tmp_path / "in.parquet")
    (tmp_path / "in.csv").write_text("prompt,id\nsay yes,8\n", encoding="utf-8")
    for name, want in (("in.parquet", ("ADD.\n\n2 AND 3", 7)), ("in.csv", ("SAY YES", 8))):
        out = tmp_path / f"{name}.out.jsonl"
        run_generate(GenerateConfig(data=str(tmp_path / name), out=str(out)), lm=echo_lm(),
                     progress=False)  # fmt: skip
        (row,) = [json.loads(x) for x in out.read_text().splitlines()]
        assert (row["response"], int(row["id"])) == want


def test_sharegpt_prompt_is_the_conversation_up_to_the_last_user_turn(tmp_path):
    seen = []
    lm = ScriptedLM(lambda req: seen.append(req.chat()) or "ok")
    data = _jsonl(tmp_path / "in.jsonl", ROWS["sharegpt"])
    run_generate(GenerateConfig(data=str(data), out=str(tmp_path / "o.jsonl")), lm=lm,
                 progress=False)  # fmt: skip
    assert [m["content"] for m in seen[0]] == ["hi", "hello", "bye"]


def test_resume_generates_only_the_missing_rows(tmp_path):
    rows = [{"prompt": f"p{i}", "id": i} for i in range(5)]
    data = _jsonl(tmp_path / "in.jsonl", rows)
    cfg = GenerateConfig(data=str(data), out=str(tmp_path / "o.jsonl"), batch_size=2, limit=3)
    assert run_generate(cfg, lm=echo_lm(), progress=False).n_generated == 3
    calls = []
    lm = ScriptedLM(lambda req: calls.append(1) or req.chat()[-1]["content"].upper())
    r = run_generate(cfg.model_copy(update={"limit": None}), lm=lm, progress=False)
    assert (r.n_resumed, r.n_generated, len(calls)) == (3, 2, 2)
    out = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [o["id"] for o in out] == [0, 1, 2, 3, 4]
    assert [o["response"] for o in out] == ["P0", "P1", "P2", "P3", "P4"]
    # a finished run does nothing (and builds no LM)
    assert run_generate(cfg.model_copy(update={"limit": None}), progress=False).n_generated == 0


def test_resume_with_other_settings_is_refused(tmp_path):
    data = _jsonl(tmp_path / "in.jsonl", [{"prompt": "p"}])
    cfg = GenerateConfig(data=str(data), out=str(tmp_path / "o.jsonl"))
    run_generate(cfg, lm=echo_lm(), progress=False)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        run_generate(cfg.model_copy(update={"max_new_tokens": 3}), lm=echo_lm(), progress=False)
    r = run_generate(cfg.model_copy(update={"max_new_tokens": 3}), lm=echo_lm(), fresh=True,
                     progress=False)  # fmt: skip
    assert r.n_generated == 1


def test_n_responses_per_prompt(tmp_path):
    data = _jsonl(tmp_path / "in.jsonl", [{"prompt": "p"}])
    cfg = GenerateConfig(data=str(data), out=str(tmp_path / "o.jsonl"), n=3, temperature=0.7)
    run_generate(cfg, lm=echo_lm(), progress=False)
    row = json.loads((tmp_path / "o.jsonl").read_text())
    assert len(row["responses"]) == 3 and row["response"] == row["responses"][0]


def test_bad_rows_stop_or_go_to_rejects(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text('{"prompt": "ok"}\n{"nothing": 1}\n{not json\n{"prompt": "ok2"}\n')
    cfg = GenerateConfig(data=str(data), out=str(tmp_path / "o.jsonl"))
    with pytest.raises(DataFormatError) as e:
        run_generate(cfg, lm=echo_lm(), progress=False)
    assert e.value.row == 2 and str(data) in str(e.value)
    r = run_generate(cfg.model_copy(update={"skip_invalid": True}), lm=echo_lm(), progress=False)
    assert r.n_generated == 2 and [x.row for x in r.rejects] == [2, 3]
    rejects = [json.loads(x) for x in (tmp_path / "o.rejects.jsonl").read_text().splitlines()]
    assert [x["row"] for x in rejects] == [2, 3]


def test_read_prompts_rejects_preference_pairs_and_unknown_tasks(tmp_path):
    data = _jsonl(tmp_path / "in.jsonl", [
        {"instruction": "q", "chosen": "a", "rejected": "b"},
        {"id": 1, "task": "no-such-task", "answer": "x"},
    ])  # fmt: skip
    loaded = read_prompts(data, skip_invalid=True)
    assert loaded.rows == [] and [r.row for r in loaded.rejects] == [1, 2]
    assert loaded.rejects[1].field == "task"


def test_adapter_on_a_served_model_is_refused_before_any_call(tmp_path):
    data = _jsonl(tmp_path / "in.jsonl", [{"prompt": "p"}])
    cfg = GenerateConfig(data=str(data), out=str(tmp_path / "o.jsonl"), lm="openai:m",
                         adapter=str(tmp_path))  # fmt: skip
    with pytest.raises(ConfigError, match="adapter and template apply to local models"):
        run_generate(cfg, progress=False)
    assert not (tmp_path / "o.jsonl.state.json").exists()  # fixing the flag needs no --fresh


def test_served_options_on_a_local_model_are_refused_before_the_job_opens(tmp_path):
    data = _jsonl(tmp_path / "in.jsonl", [{"prompt": "p"}])
    cfg = GenerateConfig(data=str(data), out=str(tmp_path / "o.jsonl"), concurrency=4)
    with pytest.raises(ConfigError, match="concurrency apply to openai:MODEL only"):
        run_generate(cfg, progress=False)
    assert not (tmp_path / "o.jsonl.state.json").exists()
