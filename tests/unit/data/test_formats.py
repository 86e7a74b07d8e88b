import json
import os

import pytest

from instructkit.data.formats import (
    FORMATS,
    LoadResult,
    Reject,
    detect_format,
    load_records,
    parse_row,
    save_records,
    save_rejects,
    to_row,
)
from instructkit.data.records import Conversation, Message, PreferencePair
from instructkit.errors import DataFormatError

HH_CHOSEN = "\n\nHuman: Hi.\n\nAssistant: Hello!\n\nHuman: Capital of France?\n\nAssistant: Paris."
HH_REJECTED = "\n\nHuman: Hi.\n\nAssistant: Hello!\n\nHuman: Capital of France?\n\nAssistant: Rome."


def write_lines(tmp_path, rows, name="data.jsonl"):
    """Write rows (dicts, or raw strings for broken lines) one per line."""
    path = tmp_path / name
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def round_trip(tmp_path, records, fmt, name="out.jsonl"):
    notes = save_records(records, tmp_path / name, fmt)
    loaded = load_records(tmp_path / name)
    return loaded.records, notes


def user(text, **kw):
    return Message("user", text, **kw)


def bot(text, **kw):
    return Message("assistant", text, **kw)


MULTI_TURN = Conversation(
    [Message("system", "Be terse."), user("Hi."), bot("Hello!"), user("2+2?"), bot("4")],
    {"id": "c1", "source": "hand"},
)
MULTI_PAIR = PreferencePair(
    [Message("system", "Be terse."), user("Hi."), bot("Hello!"), user("Capital of France?")],
    "Paris.",
    "Rome.",
    {"id": "p1"},
)
SINGLE_PAIR = PreferencePair([user("Capital of France?")], "Paris.", "Rome.", {"id": "p2"})


# ---------------------------------------------------------------------------- detection

DETECT_CASES = [
    ({"instruction": "a", "input": "", "output": "b"}, "alpaca"),
    ({"instruction": "a", "chosen": "b", "rejected": "c"}, "alpaca"),
    (
        {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},
        "sharegpt",
    ),
    (
        {
            "conversations": [{"from": "human", "value": "a"}],
            "chosen": {"from": "gpt", "value": "b"},
            "rejected": {"from": "gpt", "value": "c"},
        },
        "sharegpt",
    ),
    (
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
        "messages",
    ),
    ({"prompt": "a", "completion": "b"}, "prompt-completion"),
    (
        {
            "prompt": [{"role": "user", "content": "a"}],
            "completion": [{"role": "assistant", "content": "b"}],
        },
        "prompt-completion",
    ),
    ({"prompt": "a", "chosen": "b", "rejected": "c"}, "preference"),
    (
        {
            "chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            "rejected": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "c"}],
        },
        "preference",
    ),
    ({"chosen": HH_CHOSEN, "rejected": HH_REJECTED}, "preference"),
]


@pytest.mark.parametrize("row,fmt", DETECT_CASES)
def test_detect_format_and_auto_load(tmp_path, row, fmt):
    assert detect_format(row) == fmt
    loaded = load_records(write_lines(tmp_path, [row, row]))
    assert loaded.format == fmt and loaded.n_rows == 2 and len(loaded.records) == 2
    assert loaded.rejects == [] and loaded.row_numbers == [1, 2]


def test_detect_format_error_lists_keys_seen_and_expected():
    with pytest.raises(DataFormatError) as e:
        detect_format({"question": "q", "answer": "a"}, path="d.jsonl", row_no=3)
    msg = str(e.value)
    assert msg.startswith("d.jsonl:3: no known format matches the keys 'question', 'answer'")
    for key in ("'instruction'", "'conversations'", "'messages'", "'completion'", "'chosen'"):
        assert key in msg
    assert "Fix:" in msg


def test_detect_format_rejects_non_object():
    with pytest.raises(DataFormatError, match="expected a JSON object, got a list"):
        detect_format([1, 2])


# ---------------------------------------------------------------------------- readers


def test_alpaca_row_with_input_and_metadata():
    row = {"id": 7, "instruction": "Add.", "input": "2 and 3", "output": "5", "task": "math"}
    rec = parse_row(row, "alpaca")
    assert rec == Conversation([user("Add.", input="2 and 3"), bot("5")], {"id": 7, "task": "math"})
    assert (
        parse_row({"instruction": "a", "input": "", "output": "b"}, "alpaca").messages[0].input
        is None
    )


def test_alpaca_system_and_history_build_a_multi_turn_conversation():
    row = {
        "instruction": "2+2?",
        "input": "",
        "output": "4",
        "system": "Be terse.",
        "history": [["Hi.", "Hello!"]],
        "id": "c1",
        "source": "hand",
    }
    assert parse_row(row, "alpaca") == MULTI_TURN


def test_alpaca_preference_variant():
    row = {
        "instruction": "Capital of France?",
        "input": "",
        "chosen": "Paris.",
        "rejected": "Rome.",
        "id": "p2",
    }
    assert parse_row(row, "alpaca") == SINGLE_PAIR


def test_sharegpt_roles_system_key_and_user_assistant_aliases():
    row = {
        "system": "Be terse.",
        "conversations": [
            {"from": "human", "value": "Hi."},
            {"from": "assistant", "value": "Hello!"},
            {"from": "user", "value": "2+2?"},
            {"from": "gpt", "value": "4"},
        ],
        "id": "c1",
        "source": "hand",
    }
    assert parse_row(row, "sharegpt") == MULTI_TURN
    row["conversations"].insert(0, {"from": "system", "value": "Be terse."})
    del row["system"]
    assert parse_row(row, "sharegpt") == MULTI_TURN


def test_sharegpt_null_weight_key_is_accepted():
    row = {
        "conversations": [
            {"from": "human", "value": "a", "weight": None},
            {"from": "gpt", "value": "b"},
        ]
    }
    assert parse_row(row, "sharegpt").messages[0].train is None


def test_sharegpt_preference_variant():
    row = {
        "conversations": [
            {"from": "system", "value": "Be terse."},
            {"from": "human", "value": "Hi."},
            {"from": "gpt", "value": "Hello!"},
            {"from": "human", "value": "Capital of France?"},
        ],
        "chosen": {"from": "gpt", "value": "Paris."},
        "rejected": {"from": "gpt", "value": "Rome."},
        "id": "p1",
    }
    assert parse_row(row, "sharegpt") == MULTI_PAIR


def test_messages_train_weight_and_text_parts():
    row = {
        "messages": [
            {"role": "system", "content": "S", "weight": 0},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}],
            },
            {"role": "assistant", "content": "a", "weight": 0},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "b", "train": True},
        ]
    }
    msgs = parse_row(row, "messages").messages
    assert msgs[1].content == "Hello"
    assert [m.train for m in msgs] == [False, None, False, None, True]


def test_prompt_completion_string_and_conversational():
    assert parse_row(
        {"prompt": "a", "completion": "b", "id": 1}, "prompt-completion"
    ) == Conversation([user("a"), bot("b")], {"id": 1})
    row = {
        "prompt": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Hi."},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "2+2?"},
        ],
        "completion": [{"role": "assistant", "content": "4"}],
        "id": "c1",
        "source": "hand",
    }
    assert parse_row(row, "prompt-completion") == MULTI_TURN


def chat(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


HH_ROME = "\n\nHuman: Capital of France?\n\nAssistant: Rome."
PROMPT_MSGS = chat(
    ("system", "Be terse."),
    ("user", "Hi."),
    ("assistant", "Hello!"),
    ("user", "Capital of France?"),
)

PREFERENCE_VARIANTS = [
    (  # HH copies that drop the leading blank line
        {
            "chosen": "Human: Capital of France?\n\nAssistant: Paris.",
            "rejected": HH_ROME,
            "id": "p2",
        },
        SINGLE_PAIR,
    ),
    (
        {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Rome.", "id": "p2"},
        SINGLE_PAIR,
    ),
    (
        {
            "prompt": PROMPT_MSGS,
            "chosen": chat(("assistant", "Paris.")),
            "rejected": chat(("assistant", "Rome.")),
            "id": "p1",
        },
        MULTI_PAIR,
    ),
    (  # implicit prompt: the shared prefix
        {
            "chosen": PROMPT_MSGS + chat(("assistant", "Paris.")),
            "rejected": PROMPT_MSGS + chat(("assistant", "Rome.")),
            "id": "p1",
        },
        MULTI_PAIR,
    ),
    (  # UltraFeedback: string prompt, lists that repeat it
        {
            "prompt": "Capital of France?",
            "chosen": chat(("user", "Capital of France?"), ("assistant", "Paris.")),
            "rejected": chat(("user", "Capital of France?"), ("assistant", "Rome.")),
            "id": "p2",
        },
        SINGLE_PAIR,
    ),
    (
        {
            "chosen": "\n\nHuman: Capital of France?\n\nAssistant: Paris.",
            "rejected": "\n\nHuman: Capital of France?\n\nAssistant: Rome.",
            "id": "p2",
        },
        SINGLE_PAIR,
    ),
]


@pytest.mark.parametrize("row,expected", PREFERENCE_VARIANTS)
def test_preference_variants(row, expected):
    assert parse_row(row, "preference") == expected


def test_hh_multi_turn_prefix_becomes_alternating_messages():
    pair = parse_row({"chosen": HH_CHOSEN, "rejected": HH_REJECTED}, "preference")
    assert pair == PreferencePair(
        [user("Hi."), bot("Hello!"), user("Capital of France?")], "Paris.", "Rome."
    )


def test_hh_prefixes_must_match():
    rejected = HH_REJECTED.replace("Hello!", "Hey!")
    with pytest.raises(DataFormatError, match="differ before their last 'Assistant:'") as e:
        parse_row(
            {"chosen": HH_CHOSEN, "rejected": rejected}, "preference", path="hh.jsonl", row_no=2
        )
    assert (e.value.row, e.value.field) == (2, "rejected")


def test_hh_without_assistant_turn_is_an_error():
    with pytest.raises(DataFormatError, match="HH transcript") as e:
        parse_row({"chosen": "just text", "rejected": "other"}, "preference")
    assert e.value.field == "chosen"


def test_implicit_prompt_lists_must_share_prefix():
    row = {
        "chosen": PROMPT_MSGS + chat(("assistant", "P")),
        "rejected": chat(("user", "x"), ("assistant", "R")),
    }
    with pytest.raises(DataFormatError, match="differ before their last message"):
        parse_row(row, "preference")


def test_messages_and_prompt_completion_read_trl_pairs_too():
    row = {
        "prompt": PROMPT_MSGS,
        "chosen": chat(("assistant", "Paris.")),
        "rejected": chat(("assistant", "Rome.")),
        "id": "p1",
    }
    assert parse_row(row, "messages") == MULTI_PAIR
    assert parse_row(row, "prompt-completion") == MULTI_PAIR


# ---------------------------------------------------------------------------- round trips


def test_alpaca_messages_alpaca_round_trip_is_lossless(tmp_path):
    rows = [
        {"instruction": "Say hi.", "input": "", "output": "hi", "id": 1},
        {
            "instruction": "2+2?",
            "input": "",
            "output": "4",
            "system": "S",
            "history": [["a", "b"]],
            "id": 2,
        },
    ]
    first = load_records(write_lines(tmp_path, rows)).records
    as_messages, notes = round_trip(tmp_path, first, "messages", "m.jsonl")
    assert notes == [] and as_messages == first
    back, notes = round_trip(tmp_path, as_messages, "alpaca", "a.jsonl")
    assert notes == [] and back == first
    assert [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()] == rows


def test_alpaca_input_is_joined_when_writing_messages(tmp_path):
    recs = [parse_row({"instruction": "Add.", "input": "2 and 3", "output": "5"}, "alpaca")] * 3
    back, notes = round_trip(tmp_path, recs, "messages")
    assert back[0].messages[0] == user("Add.\n\n2 and 3")
    assert notes == [
        "3 rows: alpaca 'input' joined into the user message (messages has no input field)"
    ]


@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "messages", "prompt-completion"])
def test_multi_turn_conversation_round_trips_through_every_sft_format(tmp_path, fmt):
    back, notes = round_trip(tmp_path, [MULTI_TURN], fmt)
    assert back == [MULTI_TURN]
    if fmt == "prompt-completion":
        assert notes == [
            "1 row: earlier assistant turns moved into the prompt (only the completion trains)"
        ]
    else:
        assert notes == []


def test_sharegpt_messages_round_trip_with_system_and_metadata(tmp_path):
    row = {
        "id": "x",
        "category": "chat",
        "conversations": [
            {"from": "system", "value": "Be terse."},
            {"from": "human", "value": "Hi."},
            {"from": "gpt", "value": "Hello!"},
        ],
    }
    first = load_records(write_lines(tmp_path, [row])).records
    as_messages, _ = round_trip(tmp_path, first, "messages", "m.jsonl")
    back, notes = round_trip(tmp_path, as_messages, "sharegpt", "s.jsonl")
    assert back == first and notes == []
    assert json.loads((tmp_path / "s.jsonl").read_text()) == row


@pytest.mark.parametrize(
    "row",
    [
        {"instruction": "a", "input": "x", "output": "b", "id": 1},
        {
            "instruction": "a",
            "input": "",
            "chosen": "b",
            "rejected": "c",
            "system": "S",
            "history": [["u", "v"]],
        },
        {
            "conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}],
            "tag": [1, 2],
        },
        {
            "messages": chat(("user", "a"), ("assistant", "b"))
            + [
                {"role": "user", "content": "c"},
                {"role": "assistant", "content": "d", "train": False},
            ]
        },
        {"prompt": "a", "completion": "b", "label": True},
        {"prompt": chat(("system", "S"), ("user", "a")), "completion": chat(("assistant", "b"))},
        {"prompt": "a", "chosen": "b", "rejected": "c", "score": 0.5},
        {
            "prompt": PROMPT_MSGS,
            "chosen": chat(("assistant", "P")),
            "rejected": chat(("assistant", "R")),
        },
    ],
)
def test_canonical_rows_are_written_back_unchanged(row):
    fmt = detect_format(row)
    assert to_row(parse_row(row, fmt), fmt) == (row, [])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("pair", [SINGLE_PAIR, MULTI_PAIR], ids=["single", "multi"])
def test_preference_pairs_round_trip_through_every_format(tmp_path, fmt, pair):
    back, notes = round_trip(tmp_path, [pair], fmt)
    assert back == [pair] and notes == []


def test_preference_string_form_only_for_single_user_turn():
    assert to_row(SINGLE_PAIR, "preference")[0] == {
        "prompt": "Capital of France?",
        "chosen": "Paris.",
        "rejected": "Rome.",
        "id": "p2",
    }
    row, _ = to_row(MULTI_PAIR, "preference")
    assert row["prompt"] == PROMPT_MSGS and row["chosen"] == chat(("assistant", "Paris."))
    row, _ = to_row(MULTI_PAIR, "alpaca")
    assert row == {
        "instruction": "Capital of France?",
        "input": "",
        "system": "Be terse.",
        "history": [["Hi.", "Hello!"]],
        "chosen": "Paris.",
        "rejected": "Rome.",
        "id": "p1",
    }


def test_hh_file_converts_to_trl_preference(tmp_path):
    src = write_lines(tmp_path, [{"chosen": HH_CHOSEN, "rejected": HH_REJECTED}])
    pair = load_records(src).records[0]
    save_records([pair], tmp_path / "out.jsonl", "preference")
    row = json.loads((tmp_path / "out.jsonl").read_text())
    assert row == {
        "prompt": chat(("user", "Hi."), ("assistant", "Hello!"), ("user", "Capital of France?")),
        "chosen": chat(("assistant", "Paris.")),
        "rejected": chat(("assistant", "Rome.")),
    }


def test_prompt_completion_string_form_only_for_one_user_turn():
    conv = Conversation([user("a"), bot("b")])
    assert to_row(conv, "prompt-completion") == ({"prompt": "a", "completion": "b"}, [])
    with_system = Conversation([Message("system", "S"), user("a"), bot("b")])
    row, _ = to_row(with_system, "prompt-completion")
    assert row == {
        "prompt": chat(("system", "S"), ("user", "a")),
        "completion": chat(("assistant", "b")),
    }


# ---------------------------------------------------------------------------- notes


def test_notes_count_dropped_train_flags_and_metadata_collisions(tmp_path):
    flagged = Conversation([user("a"), bot("b", train=False)], {"input": "clash"})
    plain = Conversation([user("a"), bot("b")])
    notes = save_records([flagged, plain, flagged], tmp_path / "o.jsonl", "alpaca")
    assert notes == [
        "2 rows: per-message train flags dropped (alpaca cannot hold them)",
        "2 rows: metadata key 'input' dropped (alpaca rows use that key)",
    ]
    notes = save_records([flagged], tmp_path / "o.jsonl", "sharegpt")
    assert notes == ["1 row: per-message train flags dropped (sharegpt cannot hold them)"]
    assert save_records([flagged], tmp_path / "o.jsonl", "messages") == []


def test_alpaca_input_in_earlier_turns_is_joined_into_history():
    conv = Conversation([user("a", input="x"), bot("b"), user("c", input="y"), bot("d")])
    row, notes = to_row(conv, "alpaca")
    assert row["history"] == [["a\n\nx", "b"]] and row["input"] == "y"
    assert notes == ["alpaca 'input' of earlier turns joined into 'history' (it has no input)"]


def test_writing_a_conversation_as_preference_is_an_error(tmp_path):
    target = tmp_path / "p.jsonl"
    with pytest.raises(DataFormatError, match="cannot be written as 'preference'") as e:
        save_records([SINGLE_PAIR, MULTI_TURN], target, "preference")
    assert e.value.row == 2 and "Fix:" in str(e.value)
    assert not target.exists()


def test_unknown_format_names_the_choices(tmp_path):
    with pytest.raises(DataFormatError, match="use one of: alpaca, sharegpt"):
        save_records([MULTI_TURN], tmp_path / "o.jsonl", "chatml")
    with pytest.raises(DataFormatError, match="unknown format"):
        load_records(write_lines(tmp_path, [{"prompt": "a", "completion": "b"}]), "vicuna")


# ---------------------------------------------------------------------------- validation

ALPACA_OK = {"instruction": "a", "output": "b"}


def msgs_row(*roles_contents):
    return {"messages": chat(*roles_contents)}


INVALID_ROWS = [
    # (row or raw line, fmt, field, text in message)
    ('{"instruction": "a", "output": }', None, None, "invalid JSON: Expecting value"),
    ("[1, 2]", None, None, "expected a JSON object, got a list"),
    ({"instruction": "a"}, None, "output", "missing required field"),
    ({"instruction": "a", "output": None}, None, "output", "expected a non-empty string, got null"),
    ({"instruction": "a", "output": 3}, None, "output", "got a number"),
    ({"instruction": "a", "output": "  "}, None, "output", "got an empty string"),
    (
        {"instruction": "a", "output": "b", "history": [["x"]]},
        None,
        "history[0]",
        "[user, assistant] pair",
    ),
    (
        {"instruction": "a", "output": "b", "chosen": "c", "rejected": "d"},
        None,
        "output",
        "both 'output'",
    ),
    (
        {
            "conversations": [
                {"from": "human", "value": "a"},
                {"from": "gpt", "value": "b"},
                {"from": "human", "value": "c"},
                {"from": "function_call", "value": "{}"},
            ]
        },
        None,
        "conversations[3].value",
        "expected a call {name, arguments}",
    ),
    (
        {"system": "S", "conversations": [{"from": "gpt", "value": "b"}]},
        None,
        "conversations[0].from",
        "expected a user message",
    ),
    (
        {
            "conversations": [
                {"from": "human", "value": "a"},
                {"from": "gpt", "value": "b"},
                {"from": "human", "value": "c"},
            ]
        },
        None,
        "conversations[2].from",
        "ends with a user message",
    ),
    (
        msgs_row(("user", "a"), ("user", "b"), ("assistant", "c")),
        None,
        "messages[1].role",
        "expected an assistant message",
    ),
    (
        msgs_row(("user", "a"), ("system", "s"), ("assistant", "c")),
        None,
        "messages[1].role",
        "system message may only come first",
    ),
    (msgs_row(("assistant", "a")), None, "messages[0].role", "expected a user message"),
    (msgs_row(("system", "s")), None, "messages[0].role", "at least one user message"),
    (
        msgs_row(("user", "a"), ("assistant", "")),
        None,
        "messages[1].content",
        "non-empty assistant message",
    ),
    (
        msgs_row(("user", "a"), ("tool", "x")),
        None,
        "messages[1].role",
        "a tool result must follow an assistant turn with tool calls",
    ),
    (msgs_row(("user", "a"), ("function", "x")), None, "messages[1].role", "unknown role"),
    ({"messages": []}, None, "messages", "non-empty list of messages, got an empty list"),
    (
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
                {"role": "assistant", "content": "b"},
            ]
        },
        None,
        "messages[0].content[0]",
        "expected a text part, got 'image_url'",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "a", "name": "bob"},
                {"role": "assistant", "content": "b"},
            ]
        },
        None,
        "messages[0].name",
        "unsupported message key",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "a", "train": True},
                {"role": "assistant", "content": "b"},
            ]
        },
        None,
        "messages[0]",
        "only assistant messages can be trained",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b", "weight": 2},
            ]
        },
        None,
        "messages[1].weight",
        "expected 0 or 1",
    ),
    (
        {"prompt": "a", "completion": None},
        None,
        "completion",
        "string or a list of messages, got null",
    ),
    (
        {"prompt": chat(("user", "a"), ("assistant", "b")), "chosen": "c", "rejected": "d"},
        None,
        "prompt[1].role",
        "preference prompt must end with a user",
    ),
    (
        {"prompt": "a", "chosen": chat(("user", "a"), ("assistant", "c")), "rejected": "d"},
        None,
        "rejected",
        "of one kind",
    ),
    (
        {
            "prompt": "x",
            "chosen": chat(("user", "a"), ("assistant", "c")),
            "rejected": chat(("user", "a"), ("assistant", "d")),
        },
        None,
        "chosen",
        "differs from 'prompt'",
    ),
    (
        {"chosen": chat(("assistant", "c")), "rejected": chat(("assistant", "d"))},
        None,
        "chosen",
        "must hold the prompt messages",
    ),
    (
        {"chosen": "\n\nHuman: a\n\nAssistant:", "rejected": "\n\nHuman: a\n\nAssistant: r"},
        None,
        "chosen",
        "non-empty string, got an empty string",
    ),
    (
        {"instruction": "a", "output": "b"},
        "sharegpt",
        "conversations",
        "missing required field (the row has 'instruction', 'output')",
    ),
]


VALID = {
    "alpaca": ALPACA_OK,
    "sharegpt": {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},
    "messages": msgs_row(("user", "a"), ("assistant", "b")),
    "prompt-completion": {"prompt": "a", "completion": "b"},
    "preference": {"prompt": "a", "chosen": "b", "rejected": "c"},
}


def detect_ok(row):
    """The format of a row, or None when it cannot be detected."""
    try:
        return detect_format(row)
    except DataFormatError:
        return None


@pytest.mark.parametrize("row,fmt,field,text", INVALID_ROWS)
def test_first_bad_row_raises_with_row_field_and_fix(tmp_path, row, fmt, field, text):
    # a valid row of the same format first (so detection picks it), a blank line, the bad row
    first = VALID[fmt or (detect_ok(row) if isinstance(row, dict) else None) or "alpaca"]
    path = write_lines(tmp_path, [first, "", row])
    with pytest.raises(DataFormatError) as e:
        load_records(path, fmt)
    err = e.value
    assert (err.path, err.row, err.field) == (path, 3, field)
    assert text in err.reason
    assert str(err).startswith(f"{path}:3: ")
    assert "Fix: " in str(err)
    assert str(err).endswith(
        "or pass --skip-invalid (in a train sft config: skip_invalid: true) to write bad rows "
        "to a rejects file."
    )


def test_error_message_reads_as_one_line_with_the_fix(tmp_path):
    path = write_lines(tmp_path, [ALPACA_OK] * 6 + [{"instruction": "a", "output": None}])
    with pytest.raises(DataFormatError) as e:
        load_records(path)
    assert str(e.value) == (
        f"{path}:7: field 'output': expected a non-empty string, got null. Fix: give every row a "
        "non-empty 'output' string, or pass --skip-invalid (in a train sft config: "
        "skip_invalid: true) to write bad rows to a rejects file."
    )


def test_skip_invalid_collects_rejects_and_keeps_good_rows(tmp_path):
    rows = [
        ALPACA_OK,
        "{broken",
        {"instruction": "a", "output": None},
        "",
        "[1]",
        {"instruction": "c", "output": "d"},
    ]
    path = write_lines(tmp_path, rows)
    loaded = load_records(path, skip_invalid=True)
    assert isinstance(loaded, LoadResult)
    assert loaded.format == "alpaca" and loaded.n_rows == 5
    assert [r.messages[0].content for r in loaded.records] == ["a", "c"]
    assert loaded.row_numbers == [1, 6]
    assert [(r.row, r.field) for r in loaded.rejects] == [(2, None), (3, "output"), (5, None)]
    assert loaded.rejects[0].raw == "{broken" and "invalid JSON" in loaded.rejects[0].reason
    assert loaded.rejects[1].raw == {"instruction": "a", "output": None}
    assert "Fix: give every row a non-empty 'output' string" in loaded.rejects[1].reason
    assert all(r.path == str(path) for r in loaded.rejects)
    out = tmp_path / "rejects.jsonl"
    save_rejects(loaded.rejects, out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[1] == {
        "path": str(path),
        "row": 3,
        "field": "output",
        "reason": loaded.rejects[1].reason,
        "raw": {"instruction": "a", "output": None},
        "fix": "give every row a non-empty 'output' string.",
    }
    assert len(lines) == 3


def test_skip_invalid_detects_format_from_first_good_row(tmp_path):
    path = write_lines(tmp_path, ["{bad", {"foo": 1}, {"prompt": "a", "completion": "b"}])
    loaded = load_records(path, skip_invalid=True)
    assert loaded.format == "prompt-completion" and len(loaded.records) == 1
    assert [r.row for r in loaded.rejects] == [1, 2]
    with pytest.raises(DataFormatError) as e:
        load_records(path)
    assert e.value.row == 2 and "no known format" in e.value.reason  # first parseable row


def test_reject_to_dict():
    r = Reject("d.jsonl", 4, "output", "bad", {"x": 1})
    assert r.to_dict() == {
        "path": "d.jsonl",
        "row": 4,
        "field": "output",
        "reason": "bad",
        "raw": {"x": 1},
        "fix": None,
    }


def test_all_lines_invalid_json(tmp_path):
    path = write_lines(tmp_path, ["{a", "{b"])
    with pytest.raises(DataFormatError) as e:
        load_records(path)
    assert e.value.row == 1 and "invalid JSON" in e.value.reason
    with pytest.raises(DataFormatError, match="no row is valid JSON"):
        load_records(path, skip_invalid=True)


# ---------------------------------------------------------------------------- files


@pytest.mark.parametrize("text", ["", "  \n\n", "[]"])
def test_empty_file_is_an_error(tmp_path, text):
    path = tmp_path / ("d.json" if text == "[]" else "d.jsonl")
    path.write_text(text)
    with pytest.raises(DataFormatError, match="empty|no rows") as e:
        load_records(path)
    assert e.value.path == path and "Fix:" in str(e.value)


def test_missing_file_is_a_data_format_error(tmp_path):
    with pytest.raises(DataFormatError, match="cannot read the file"):
        load_records(tmp_path / "nope.jsonl")


def test_json_array_rows_are_numbered_by_index(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([ALPACA_OK, ALPACA_OK, {"instruction": "a"}]))
    with pytest.raises(DataFormatError) as e:
        load_records(path)
    assert (e.value.row, e.value.field) == (3, "output")


def test_json_object_holding_a_list_and_single_record_object(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"version": 1, "data": [ALPACA_OK, ALPACA_OK]}))
    assert len(load_records(path).records) == 2
    path.write_text(json.dumps({"instruction": "a", "output": "b"}))
    assert len(load_records(path).records) == 1
    path.write_text(json.dumps({"a": [1], "b": [2]}))
    with pytest.raises(DataFormatError, match="lists found: 'a', 'b'"):
        load_records(path)


def test_broken_json_document_names_line_and_column(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n  {"instruction": "a",\n   "output": }\n]')
    with pytest.raises(DataFormatError, match=r"index 0: Expecting value \(line 3, column 14\)"):
        load_records(path)


def test_json_file_holding_jsonl_is_read_as_jsonl(tmp_path):
    path = write_lines(tmp_path, [ALPACA_OK, ALPACA_OK], name="d.json")
    assert load_records(path).n_rows == 2


def test_jsonl_with_bom_crlf_and_unicode_line_separator(tmp_path):
    path = tmp_path / "d.jsonl"
    line = json.dumps({"instruction": "a\u2028b", "output": "é"}, ensure_ascii=False)
    path.write_bytes(("\ufeff" + line + "\r\n\r\n" + line + "\r\n").encode())
    loaded = load_records(path)
    assert loaded.n_rows == 2 and loaded.row_numbers == [1, 3]
    assert loaded.records[0].messages[0].content == "a\u2028b"


def test_save_is_atomic_and_picks_json_or_jsonl_by_extension(tmp_path):
    recs = [Conversation([user("héllo"), bot("wörld")])] * 2
    save_records(recs, tmp_path / "out.json", "messages")
    save_records(recs, tmp_path / "sub" / "out.jsonl", "messages")
    text = (tmp_path / "out.json").read_text(encoding="utf-8")
    assert isinstance(json.loads(text), list) and "héllo" in text
    assert load_records(tmp_path / "out.json").records == recs
    lines = (tmp_path / "sub" / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and "wörld" in lines[0]
    assert sorted(os.listdir(tmp_path)) == ["out.json", "sub"]
    assert os.listdir(tmp_path / "sub") == ["out.jsonl"]


def test_failed_save_leaves_target_untouched_and_no_temp_file(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    bad = Conversation([user("a"), bot("b")], {"x": {1, 2}})  # a set is not JSON
    with pytest.raises(TypeError):
        save_records([bad], target, "messages")
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["out.jsonl"]


def test_to_row_checks_records_built_in_code():
    with pytest.raises(DataFormatError, match="ends with a user message") as e:
        to_row(Conversation([user("a")]), "messages")
    assert e.value.field == "messages[0].role"
    with pytest.raises(DataFormatError, match="non-empty string"):
        to_row(PreferencePair([user("a")], "", "b"), "preference")
