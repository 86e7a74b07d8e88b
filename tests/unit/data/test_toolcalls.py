"""Tool-calling data: read ShareGPT (LLaMA-Factory / glaive) and OpenAI layouts, convert between
them, render with the tokenizer's template (tools=) and the built-in ones, mask the loss."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instructkit.data.formats import load_records, parse_row, save_records, to_row
from instructkit.data.records import Conversation, Message, ToolCall
from instructkit.data.templates import get_template, segment_conversation
from instructkit.data.tokenize import IGNORE_INDEX, tokenize_conversation, trained_text
from instructkit.errors import DataFormatError, TemplateError

WEATHER = {
    "name": "get_weather",
    "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
TIME = {"name": "get_time", "description": "Local time", "parameters": {"type": "object"}}


def sharegpt_row() -> dict:
    """A glaive / LLaMA-Factory row: tools as a JSON string, calls as JSON strings."""
    return {
        "conversations": [
            {"from": "human", "value": "Weather in Paris?"},
            {
                "from": "function_call",
                "value": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}}),
            },
            {"from": "observation", "value": '{"temp": 21}'},
            {"from": "gpt", "value": "It is 21 C."},
        ],
        "tools": json.dumps([WEATHER]),
        "id": "w1",
    }


def openai_row() -> dict:
    """An OpenAI chat row with two parallel calls, their results and the answer."""
    calls = [
        {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
        {
            "id": "b",
            "type": "function",
            "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
        },
    ]
    return {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather and time?"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "a", "name": "get_weather", "content": "sunny"},
            {"role": "tool", "tool_call_id": "b", "name": "get_time", "content": "10:00"},
            {"role": "assistant", "content": "Sunny, 10:00."},
        ],
        "tools": [
            {"type": "function", "function": WEATHER},
            {"type": "function", "function": TIME},
        ],
    }


def test_sharegpt_tool_row_becomes_calls_results_and_schemas():
    conv = parse_row(sharegpt_row(), "sharegpt")
    assert [m.role for m in conv.messages] == ["user", "assistant", "tool", "assistant"]
    assert conv.messages[1].tool_calls == [ToolCall("get_weather", {"city": "Paris"}, "call_0")]
    assert conv.messages[1].content == ""
    tool = conv.messages[2]
    assert (tool.content, tool.tool_call_id, tool.name) == ('{"temp": 21}', "call_0", "get_weather")
    assert conv.tools == [{"type": "function", "function": WEATHER}]
    assert conv.metadata == {"id": "w1"}


def test_openai_tool_row_parses_string_arguments_and_keeps_ids():
    conv = parse_row(openai_row(), "messages")
    assert conv.messages[2].tool_calls == [
        ToolCall("get_weather", {}, "a"),
        ToolCall("get_time", {"tz": "CET"}, "b"),
    ]
    assert [m.tool_call_id for m in conv.messages[3:5]] == ["a", "b"]
    assert [t["function"]["name"] for t in conv.tools] == ["get_weather", "get_time"]


def test_glaive_flat_tools_list_and_multi_call_function_call_turn():
    row = sharegpt_row()
    row["tools"] = [WEATHER, TIME]  # a list instead of a JSON string
    row["conversations"][1]["value"] = json.dumps(
        [{"name": "get_weather", "arguments": {}}, {"name": "get_time", "arguments": "{}"}]
    )
    conv = parse_row(row, "sharegpt")
    assert [c.name for c in conv.messages[1].tool_calls] == ["get_weather", "get_time"]
    assert [c.id for c in conv.messages[1].tool_calls] == ["call_0", "call_1"]


def test_sharegpt_to_messages_and_back_is_lossless():
    row = sharegpt_row()
    conv = parse_row(row, "sharegpt")
    as_messages, notes = to_row(conv, "messages")
    assert notes == []
    assert as_messages["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    assert as_messages["tools"] == [{"type": "function", "function": WEATHER}]
    assert parse_row(as_messages, "messages") == conv
    back, notes = to_row(parse_row(as_messages, "messages"), "sharegpt")
    assert notes == []
    assert back == row


def test_messages_to_sharegpt_and_back_keeps_calls_and_results_and_notes_ids():
    conv = parse_row(openai_row(), "messages")
    sharegpt, notes = to_row(conv, "sharegpt")
    assert [t["from"] for t in sharegpt["conversations"]] == [
        "system",
        "human",
        "function_call",
        "observation",
        "gpt",
    ]
    # LLaMA-Factory alternates strictly: the two results share one observation
    assert json.loads(sharegpt["conversations"][3]["value"]) == ["sunny", "10:00"]
    assert json.loads(sharegpt["tools"]) == [WEATHER, TIME]
    assert any("ids dropped" in n for n in notes)
    assert any("joined into one observation" in n for n in notes)
    again = parse_row(sharegpt, "sharegpt")
    assert again.messages[2].tool_calls == [
        ToolCall("get_weather", {}, "call_0"),
        ToolCall("get_time", {"tz": "CET"}, "call_1"),
    ]
    assert again.tools == conv.tools


def test_data_convert_both_ways_on_files(tmp_path):
    from click.testing import CliRunner

    from instructkit.cli.main import cli

    src = tmp_path / "glaive.jsonl"
    src.write_text(json.dumps(sharegpt_row()) + "\n")
    runner = CliRunner()
    out = tmp_path / "openai.jsonl"
    r = runner.invoke(cli, ["data", "convert", str(src), "-o", str(out), "--to", "messages"])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["messages"][2]["role"] == "tool"
    back = tmp_path / "back.jsonl"
    r = runner.invoke(cli, ["data", "convert", str(out), "-o", str(back), "--to", "sharegpt"])
    assert r.exit_code == 0, r.output
    assert json.loads(back.read_text()) == sharegpt_row()


def test_formats_without_tool_slots_refuse_tool_records(tmp_path):
    conv = parse_row(sharegpt_row(), "sharegpt")
    for fmt in ("alpaca", "prompt-completion"):
        with pytest.raises(DataFormatError) as e:
            save_records([conv], tmp_path / f"x.{fmt}.jsonl", fmt)
        assert "cannot hold" in e.value.reason and "sharegpt or messages" in e.value.fix
        assert e.value.row == 1


def _sharegpt(*turns, tools=None) -> dict:
    row: dict = {"conversations": [{"from": f, "value": v} for f, v in turns]}
    if tools is not None:
        row["tools"] = tools
    return row


CALL = json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})
BAD_TOOL_ROWS = [
    (
        _sharegpt(("human", "q"), ("function_call", '{"name": "f", "arguments": "{oops"}')),
        "conversations[1].value.arguments",
        "not JSON",
    ),
    (
        _sharegpt(("human", "q"), ("function_call", '{"name": "f", "arguments": [1]}')),
        "conversations[1].value.arguments",
        "arguments as a JSON object",
    ),
    (
        _sharegpt(("human", "q"), ("function_call", "get_weather(Paris)")),
        "conversations[1].value",
        "not JSON",
    ),
    (
        _sharegpt(("human", "q"), ("function_call", CALL), ("gpt", "a")),
        "conversations[2].from",
        "expected the tool result of the assistant's tool call",
    ),
    (
        _sharegpt(("human", "q"), ("observation", "x"), ("gpt", "a")),
        "conversations[1].from",
        "a tool result must follow an assistant turn with tool calls",
    ),
    (
        _sharegpt(("human", "q"), ("function_call", CALL), ("observation", "x")),
        "conversations[2].from",
        "ends with a tool result",
    ),
    (
        _sharegpt(
            ("human", "q"),
            ("function_call", CALL),
            ("observation", "x"),
            ("gpt", "a"),
            tools=json.dumps([TIME]),
        ),
        "conversations[1].value",
        "which 'tools' does not define",
    ),
    (
        _sharegpt(("human", "q"), ("gpt", "a"), tools="not json"),
        "tools",
        "not JSON",
    ),
    (_sharegpt(("human", "q"), ("gpt", "a"), tools='{"name": "f"}'), "tools", "list of function"),
    (_sharegpt(("human", "q"), ("gpt", "a"), tools=[{"description": "x"}]), "tools[0]", "'name'"),
    (
        {**_sharegpt(("human", "q"), tools=[WEATHER]), "chosen": {"from": "gpt", "value": "a"}},
        "tools",
        "not supported",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f"}}]},
                {"role": "tool", "tool_call_id": "zzz", "content": "x"},
                {"role": "assistant", "content": "a"},
            ]
        },
        "messages[2].tool_call_id",
        "answers no call",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "q", "tool_calls": [{"function": {"name": "f"}}]},
                {"role": "assistant", "content": "a"},
            ]
        },
        "messages[0].tool_calls",
        "only assistant messages make tool calls",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [{"type": "code", "function": {}}]},
            ]
        },
        "messages[1].tool_calls[0]",
        "expected a function tool call",
    ),
]


@pytest.mark.parametrize("row,field,text", BAD_TOOL_ROWS)
def test_bad_tool_rows_name_file_row_field_and_fix(tmp_path, row, field, text):
    path = tmp_path / "bad.jsonl"
    first = openai_row() if "messages" in row else sharegpt_row()
    path.write_text(json.dumps(first) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataFormatError) as e:
        load_records(path)
    err = e.value
    assert (err.path, err.row, err.field) == (path, 2, field)
    assert text in err.reason
    assert err.fix
    loaded = load_records(path, skip_invalid=True)  # kept going, nothing valid lost
    assert len(loaded.records) == 1 and [r.row for r in loaded.rejects] == [2]


# ------------------------------------------------------------------ rendering and masks


def test_builtin_chatml_renders_tools_calls_and_results_as_text(tiny_tokenizer):
    conv = parse_row(sharegpt_row(), "sharegpt")
    chatml = get_template("chatml", tiny_tokenizer)
    text = chatml.render(conv.to_chat(), False, conv.tools)
    schema = json.dumps({"type": "function", "function": WEATHER})
    assert text == (
        "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the "
        "user query.\n\nYou are provided with function signatures within <tools></tools> XML "
        f"tags:\n<tools>\n{schema}\n</tools>\n\nFor each function call, return a json object "
        "with function name and arguments within <tool_call></tool_call> XML tags.<|im_end|>\n"
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": '
        '"Paris"}}\n</tool_call><|im_end|>\n'
        '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\nIt is 21 C.<|im_end|>\n"
    )


def test_loss_is_on_the_call_and_the_answer_never_on_the_result_token_by_token(tiny_tokenizer):
    conv = parse_row(sharegpt_row(), "sharegpt")
    chatml = get_template("chatml", tiny_tokenizer)
    ex = tokenize_conversation(conv, chatml, tiny_tokenizer)
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    pieces = [  # (text, trained), hand-written from the rendering above
        (chatml.render(conv.to_chat()[:1], True, conv.tools), False),
        (call + "<|im_end|>", True),
        (
            '\n<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response><|im_end|>\n'
            "<|im_start|>assistant\n",
            False,
        ),
        ("It is 21 C.<|im_end|>", True),
        ("\n", False),
    ]
    ids, labels = [], []
    for text, trained in pieces:
        piece = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if trained else [IGNORE_INDEX] * len(piece)
    assert ex.input_ids == ids
    assert ex.labels == labels
    assert trained_text(ex, tiny_tokenizer) == call + "<|im_end|>It is 21 C.<|im_end|>"


def test_train_on_last_trains_only_the_final_answer(tiny_tokenizer):
    conv = parse_row(sharegpt_row(), "sharegpt")
    ex = tokenize_conversation(
        conv, get_template("chatml", tiny_tokenizer), tiny_tokenizer, train_on="last"
    )
    assert trained_text(ex, tiny_tokenizer) == "It is 21 C.<|im_end|>"


@pytest.mark.parametrize("name", ["alpaca", "vicuna", "llama3"])
def test_every_builtin_template_trains_calls_and_answers_not_results(
    tiny_tokenizer, llama3_tokenizer, name
):
    tok = llama3_tokenizer if name == "llama3" else tiny_tokenizer
    conv = parse_row(openai_row(), "messages")
    ex = tokenize_conversation(conv, get_template(name, tok), tok)
    trained = trained_text(ex, tok)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>' in trained
    assert '{"name": "get_time", "arguments": {"tz": "CET"}}' in trained
    assert "Sunny, 10:00." in trained
    assert "sunny" not in trained and "10:00\n" not in trained and "<tool_response>" not in trained


# A small tool-aware template in the style of Qwen2.5's: schemas in the system turn, calls in
# <tool_call> tags, results in a "tool" turn.
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n"
    "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\n' }}{% endif %}"
    "TOOLS:{% for t in tools %}{{ '\n' + t.function.name }}: {{ t.function.description }}"
    "{% endfor %}<|im_end|>\n"
    "{% elif messages[0]['role'] == 'system' %}"
    "<|im_start|>system\n{{ messages[0]['content'] }}<|im_end|>\n{% endif %}"
    "{% for m in messages %}"
    "{% if m.role == 'user' %}<|im_start|>user\n{{ m.content }}<|im_end|>\n"
    "{% elif m.role == 'assistant' %}<|im_start|>assistant\n"
    "{% if m.content %}{{ m.content }}{% endif %}"
    "{% for c in m.tool_calls or [] %}<tool_call>{{ c.function.name }} "
    "{{ c.function.arguments | tojson }}</tool_call>{% endfor %}<|im_end|>\n"
    "{% elif m.role == 'tool' %}<|im_start|>tool\n{{ m.content }}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture()
def tool_tokenizer():
    from instructkit.models import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    tok.chat_template = TOOL_TEMPLATE
    return tok


def test_tokenizer_template_gets_tools_and_tool_calls(tool_tokenizer):
    conv = parse_row(openai_row(), "messages")
    template = get_template("tokenizer", tool_tokenizer)
    text = template.render(conv.to_chat(), False, conv.tools)
    assert text.startswith(
        "<|im_start|>system\nBe brief.\nTOOLS:\nget_weather: Current weather of a city\n"
        "get_time: Local time<|im_end|>\n"
    )
    assert '<tool_call>get_time {"tz": "CET"}</tool_call><|im_end|>' in text
    assert "<|im_start|>tool\nsunny<|im_end|>" in text
    segments = segment_conversation(conv, template)
    trained = [s.text for s in segments if s.train]
    assert trained == [
        '<tool_call>get_weather {}</tool_call><tool_call>get_time {"tz": "CET"}</tool_call>'
        "<|im_end|>",
        "Sunny, 10:00.<|im_end|>",
    ]
    ex = tokenize_conversation(conv, template, tool_tokenizer)
    result_ids = tool_tokenizer("sunny", add_special_tokens=False)["input_ids"]
    n = len(result_ids)
    starts = [i for i in range(len(ex.input_ids)) if ex.input_ids[i : i + n] == result_ids]
    assert starts and all(ex.labels[i + k] == IGNORE_INDEX for i in starts for k in range(n))


def test_tokenizer_template_without_tool_support_is_refused(tiny_tokenizer):
    conv = parse_row(sharegpt_row(), "sharegpt")
    with pytest.raises(TemplateError) as e:
        segment_conversation(conv, get_template("tokenizer", tiny_tokenizer))
    assert "does not render the tool calls" in e.value.message
    assert "built-in template" in e.value.fix


def test_records_built_in_code_get_call_ids_when_written():
    conv = Conversation(
        [
            Message("user", "q"),
            Message("assistant", "", tool_calls=[ToolCall("f", {"x": 1})]),
            Message("tool", "r"),
            Message("assistant", "a"),
        ]
    )
    row, _ = to_row(conv, "messages")
    assert row["messages"][1]["tool_calls"][0]["id"] == "call_0"
    assert row["messages"][2]["tool_call_id"] == "call_0"
    assert conv.messages[1].tool_calls[0].id is None  # the record itself is not changed


def test_alpaca_keeps_its_preamble_before_the_tools(tiny_tokenizer):
    from instructkit.data.templates import ALPACA_PROMPT_NO_INPUT

    conv = parse_row(sharegpt_row(), "sharegpt")
    text = get_template("alpaca", tiny_tokenizer).render(conv.to_chat(), False, conv.tools)
    preamble = ALPACA_PROMPT_NO_INPUT.split("\n\n")[0]
    assert text.startswith(preamble + "\n\n# Tools\n")


# ------------------------------------------------------------------ malformed input, generated

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
NAMES = st.sampled_from(["get_weather", "get_time", "", "x"])
CALL_VALUE = st.one_of(
    JSON,
    st.builds(lambda n, a: json.dumps({"name": n, "arguments": a}), NAMES, JSON),
    st.builds(lambda n, a: json.dumps([{"name": n, "arguments": a}]), NAMES, st.text(max_size=12)),
)
SHAREGPT_TURN = st.one_of(
    st.fixed_dictionaries(
        {"from": st.sampled_from(["human", "gpt"]), "value": st.text(max_size=6)}
    ),
    st.fixed_dictionaries({"from": st.just("function_call"), "value": CALL_VALUE}),
    st.fixed_dictionaries({"from": st.sampled_from(["observation", "tool"]), "value": JSON}),
    JSON,
)
OPENAI_CALL = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"id": JSON, "type": st.sampled_from(["function", "x"]), "function": JSON}
    ),
    st.builds(
        lambda i, n, a: {"id": i, "type": "function", "function": {"name": n, "arguments": a}},
        st.sampled_from(["a", "b"]),
        NAMES,
        st.one_of(JSON, st.just("{}"), st.just('{"city": "P"}')),
    ),
)
OPENAI_MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant"]), "content": st.text(max_size=6)}
    ),
    st.fixed_dictionaries(
        {
            "role": st.just("assistant"),
            "content": st.none(),
            "tool_calls": st.lists(OPENAI_CALL, max_size=2),
        }
    ),
    st.fixed_dictionaries(
        {
            "role": st.just("tool"),
            "tool_call_id": st.one_of(JSON, st.sampled_from(["a", "b"])),
            "content": JSON,
        }
    ),
    JSON,
)
TOOLS = st.one_of(
    JSON, st.just(json.dumps([WEATHER])), st.just([WEATHER, TIME]), st.text(max_size=10)
)


def _mutated(valid: list, index: int, new: object, op: str) -> list:
    """A valid turn list with one turn kept, replaced, dropped or duplicated."""
    turns = list(valid)
    i = index % len(turns)
    if op == "replace":
        turns[i] = new
    elif op == "drop":
        del turns[i]
    elif op == "duplicate":
        turns.insert(i, turns[i])
    return turns


OPS = st.sampled_from(["keep", "replace", "drop", "duplicate"])
NEAR_SHAREGPT = st.builds(
    lambda i, new, op: _mutated(sharegpt_row()["conversations"], i, new, op),
    st.integers(0, 9),
    SHAREGPT_TURN,
    OPS,
)
NEAR_OPENAI = st.builds(
    lambda i, new, op: _mutated(openai_row()["messages"], i, new, op),
    st.integers(0, 9),
    OPENAI_MESSAGE,
    OPS,
)
VALID_TOOLS = st.sampled_from([json.dumps([WEATHER]), [WEATHER, TIME], None])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    turns=st.one_of(st.lists(SHAREGPT_TURN, max_size=6), NEAR_SHAREGPT),
    tools=st.one_of(TOOLS, VALID_TOOLS),
)
def test_generated_sharegpt_tool_rows_parse_or_raise_a_data_format_error(turns, tools):
    _parse_or_data_format_error({"conversations": turns, "tools": tools}, "sharegpt")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=st.one_of(st.lists(OPENAI_MESSAGE, max_size=6), NEAR_OPENAI),
    tools=st.one_of(TOOLS, VALID_TOOLS),
)
def test_generated_openai_tool_rows_parse_or_raise_a_data_format_error(messages, tools):
    _parse_or_data_format_error({"messages": messages, "tools": tools}, "messages")


def _parse_or_data_format_error(row: dict, fmt: str) -> None:
    try:
        record = parse_row(row, fmt)
    except DataFormatError:
        return
    for target in ("sharegpt", "messages"):  # a valid record also writes and reads back
        written, _ = to_row(record, target)
        again = parse_row(written, target)
        assert _collapsed(again) == _collapsed(record)  # sharegpt joins parallel results
        assert [c.name for m in again.messages for c in m.tool_calls or []] == [
            c.name for m in record.messages for c in m.tool_calls or []
        ]


def _collapsed(conv: Conversation) -> list[str]:
    roles = [m.role for m in conv.messages]
    return [r for i, r in enumerate(roles) if not (r == "tool" and i and roles[i - 1] == "tool")]


def test_parallel_results_survive_a_round_trip_through_sharegpt_as_one_observation():
    conv = parse_row(openai_row(), "messages")
    again = parse_row(to_row(conv, "sharegpt")[0], "sharegpt")
    assert _collapsed(again) == _collapsed(conv)
    assert json.loads(again.messages[3].content) == ["sunny", "10:00"]
