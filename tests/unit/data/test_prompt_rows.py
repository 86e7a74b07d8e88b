"""The one prompt reader of `train ppo`, `train grpo` and `data pairs`: a prompt is the
conversation up to its last user turn; every bad row names its file, row, field and fix."""

import json

import pytest

from instructkit.data.prompt_rows import load_prompt_rows, prompt_messages
from instructkit.errors import DataFormatError

U, A, S = "user", "assistant", "system"


def turns(*roles: str) -> list[dict[str, str]]:
    return [{"role": r, "content": f"{r} {i}"} for i, r in enumerate(roles)]


@pytest.mark.parametrize("key", ["messages", "prompt"])
def test_turns_after_the_last_user_turn_are_dropped_and_counted(tmp_path, key):
    p = tmp_path / "p.jsonl"
    rows = [{key: turns(S, U, A, U, A)}, {key: turns(U)}, {key: turns(U, A, U)}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_prompt_rows(p)
    assert [[m["role"] for m in r.messages] for r in loaded.rows] == [
        [S, U, A, U], [U], [U, A, U]
    ]  # fmt: skip
    assert [r.dropped for r in loaded.rows] == [1, 0, 0] and loaded.truncated == 1
    assert loaded.rows[0].text == "user 3" and loaded.rows[0].row == rows[0]


@pytest.mark.parametrize(
    "row, field, reason",
    [
        ({"messages": turns(A)}, "messages[0].role", "no user turn"),
        ({"messages": turns(S)}, "messages[0].role", "no user turn"),
        ({"messages": turns(A, U)}, "messages[0].role", "expected a user message"),
        ({"messages": []}, "messages", "non-empty list"),
        ({"prompt": turns(S, U, S, U)}, "prompt[2].role", "system message may only come first"),
        ({"prompt": [{"role": "user", "content": " "}]}, "prompt[0].content", "non-empty"),
        ({"prompt": 3}, "prompt", "a string or a list"),
        ({"question": "hi"}, "prompt", "neither 'prompt' nor 'messages'"),
    ],
)
def test_a_bad_row_names_file_row_field_and_fix(row, field, reason):
    with pytest.raises(DataFormatError) as e:
        prompt_messages(row, path="p.jsonl", row_no=7)
    msg = str(e.value)
    assert f"p.jsonl:7: field '{field}'" in msg and reason in msg, msg
    assert "Fix:" in msg and "skip_invalid" in msg and "\n" not in msg
