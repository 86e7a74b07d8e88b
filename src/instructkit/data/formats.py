"""Instruction-data file formats: detect them, read rows into records, write records back.

Every format is read and written, and each holds preference pairs the way its ecosystem does:

- ``alpaca``: ``{instruction, input?, output}`` plus LLaMA-Factory's ``system`` and ``history``
  (``[[user, assistant], ...]``); pairs are ``{instruction, input?, chosen, rejected}``.
- ``sharegpt``: ``{conversations: [{from: human|gpt|system, value}], system?}``; pairs
  (LLaMA-Factory) end the conversation with ``human`` and add ``chosen``/``rejected`` turns.
  Tool calling (LLaMA-Factory / glaive): ``function_call`` and ``observation`` turns and a
  ``tools`` field (see :mod:`instructkit.data.toolcalls` and docs/tools.md).
- ``messages``: OpenAI ``{messages: [{role, content, train?|weight?}]}``; pairs are written as
  TRL conversational preference rows. Tool calling: assistant ``tool_calls``, ``tool`` turns
  and a top-level ``tools`` list.
- ``prompt-completion``: TRL ``{prompt, completion}``, as strings or as message lists.
- ``preference``: TRL ``{prompt?, chosen, rejected}`` as strings or message lists (without
  ``prompt``, the lists share the prompt as a prefix), and Anthropic HH transcripts.

Keys that are not part of the format (``id``, ``source``, ...) go to ``record.metadata`` and are
written back as top-level keys, so round trips are lossless. Whatever a target format cannot hold
is reported in the notes :func:`save_records` returns. Usage::

    loaded = load_records("train.jsonl", skip_invalid=True)  # format auto-detected
    notes = save_records(loaded.records, "train.messages.json", "messages")

Reading goes through the one loader, :func:`instructkit.data.loader.load_dataset` (JSON, JSONL,
CSV/TSV, Parquet, Arrow, ``save_to_disk`` folders, Hugging Face datasets); ``load_records`` is it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from instructkit.data import toolcalls
from instructkit.data.records import ROLES, Conversation, Message, PreferencePair, Record, Role
from instructkit.data.sources import SpecLike
from instructkit.errors import DataFormatError
from instructkit.io import write_jsonl

__all__ = [
    "FORMATS",
    "Reject",
    "LoadResult",
    "detect_format",
    "load_records",
    "parse_row",
    "to_row",
    "save_records",
    "save_rejects",
]

FORMATS = ("alpaca", "sharegpt", "messages", "prompt-completion", "preference")

# Top-level keys each format owns; every other key of a row is metadata.
_FIELDS: dict[str, tuple[str, ...]] = {
    "alpaca": ("instruction", "input", "output", "system", "history", "chosen", "rejected"),
    "sharegpt": ("conversations", "system", "chosen", "rejected", "tools"),
    "messages": ("messages", "tools"),
    "prompt-completion": ("prompt", "completion"),
    "preference": ("prompt", "chosen", "rejected"),
}
# Detection: the first format whose keys are all present wins.
_DETECT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sharegpt", ("conversations",)),
    ("messages", ("messages",)),
    ("alpaca", ("instruction",)),
    ("prompt-completion", ("prompt", "completion")),
    ("preference", ("chosen", "rejected")),
)
_EXPECTED = {
    "alpaca": "'instruction' + 'output' (or 'chosen'/'rejected'), optional 'input'/'system'/"
    "'history'",
    "sharegpt": "'conversations' (optional 'system', 'chosen'/'rejected')",
    "messages": "'messages'",
    "prompt-completion": "'prompt' + 'completion'",
    "preference": "'chosen' + 'rejected' (optional 'prompt')",
}
_RESERVED = frozenset(k for _, keys in _DETECT for k in keys) | {"rejected"}
_FROM_SHAREGPT: dict[str, Role] = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
_TO_SHAREGPT = {"system": "system", "user": "human", "assistant": "gpt", "tool": "observation"}
_SHAREGPT_TOOL_TURNS = ("function_call", "observation", "tool")
_HH_ASSISTANT = "\n\nAssistant:"
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")

# Names the row field that holds message i: field_of(i, "role" | "content").
FieldOf = Callable[[int, str], str]


@dataclass
class Reject:
    """A row that could not be read, with where it was and why."""

    path: str
    row: int  # the JSONL/CSV line, JSON array index + 1, or Parquet/Arrow/datasets row index
    field: str | None
    reason: str
    raw: object
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{path, row, field, reason, raw, fix}``, one line of a rejects file."""
        return asdict(self)


@dataclass
class LoadResult:
    """Records read from a source; ``row_numbers[i]`` is the source row of ``records[i]`` (the
    JSONL/CSV line, or the Parquet/Arrow row index) and ``source`` names the source."""

    records: list[Record]
    format: str
    rejects: list[Reject]
    n_rows: int
    row_numbers: list[int] = field(default_factory=list)
    source: str = ""


@dataclass(frozen=True)
class _At:
    """Where a row came from, so that errors can name it."""

    path: object = None
    row: int | None = None

    def error(
        self, message: str, name: str | None = None, fix: str | None = None
    ) -> DataFormatError:
        return DataFormatError(message, path=self.path, row=self.row, field=name, fix=fix)


# ---------------------------------------------------------------------------- small checks


def _kind(value: object) -> str:
    """JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string" if value.strip() else "an empty string"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _keys(row: dict[str, Any]) -> str:
    return ", ".join(f"'{k}'" for k in row) or "no keys"


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise DataFormatError(f"unknown format '{fmt}'.", fix=f"use one of: {', '.join(FORMATS)}.")


def _need(row: dict[str, Any], key: str, at: _At) -> Any:
    if key not in row:
        raise at.error(
            f"missing required field (the row has {_keys(row)}).",
            key,
            f"give every row a '{key}' field.",
        )
    return row[key]


def _text(value: object, at: _At, name: str) -> str:
    """A string that is not empty after strip."""
    if isinstance(value, str) and value.strip():
        return value
    raise at.error(
        f"expected a non-empty string, got {_kind(value)}.",
        name,
        f"give every row a non-empty '{name}' string.",
    )


def _optional_text(row: dict[str, Any], key: str, at: _At) -> str | None:
    """An optional string field; missing, null and "" all mean absent."""
    value = row.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    raise at.error(
        f"expected a string, got {_kind(value)}.", key, f"make '{key}' a string or drop it."
    )


def _object(row: object, at: _At) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise at.error(
            f"expected a JSON object, got {_kind(row)}.", fix="write one object per row."
        )
    return row


def _metadata(row: dict[str, Any], fmt: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in _FIELDS[fmt]}


def _plain(messages: list[Message]) -> list[tuple[str, str]]:
    return [(m.role, m.text) for m in messages]


def _check_turns(messages: list[Message], at: _At, field_of: FieldOf, *, end: Role) -> None:
    """System (optional, first only), then user/assistant alternating from user, ending ``end``.

    An assistant turn with tool calls is followed by its tool result(s), then by an assistant
    turn again (another call or the answer); a prompt (``end="user"``) may end with a result.
    """
    prev: str | None = None  # user | assistant | call (assistant with tool calls) | tool
    for i, m in enumerate(messages):
        if m.role == "system" and i == 0:
            continue
        if m.role == "system":
            msg = f"a system message may only come first; found one at position {i}."
            raise at.error(msg, field_of(i, "role"), "merge it into the first system message.")
        _check_order(m, prev, at, field_of(i, "role"))
        if not m.text.strip() and not m.tool_calls:
            msg = f"expected a non-empty {m.role} message, got an empty string."
            raise at.error(msg, field_of(i, "content"), "write the text, or drop the row.")
        prev = "call" if m.tool_calls else m.role
    if prev is None:
        fix = "add the user message, or drop the row."
        raise at.error("expected at least one user message, got none.", field_of(0, "role"), fix)
    last = field_of(len(messages) - 1, "role")
    if prev == "user" and end == "assistant":
        msg = "the conversation ends with a user message; a training example must end with an "
        msg += "assistant response."
        raise at.error(msg, last, "add the assistant response, or drop the trailing turn.")
    if prev == "tool" and end == "assistant":
        msg = "the conversation ends with a tool result; a training example must end with an "
        msg += "assistant turn (the answer that uses the result, or another call)."
        raise at.error(msg, last, "add the assistant's answer, or drop the trailing result.")
    if prev in ("assistant", "call") and end == "user":
        msg = "the prompt ends with an assistant message; a preference prompt must end with a user "
        msg += "turn."
        fix = "move the final response into chosen/rejected, or drop it from the prompt."
        raise at.error(msg, last, fix)


def _check_order(m: Message, prev: str | None, at: _At, name: str) -> None:
    """Whether ``m`` may follow a turn of kind ``prev`` (None: the start)."""
    if m.role == "tool":
        if prev not in ("call", "tool"):
            msg = "a tool result must follow an assistant turn with tool calls (or another "
            msg += f"result), but this one follows {prev or 'the start of the conversation'}."
            fix = "put the function_call (ShareGPT) or assistant tool_calls (OpenAI) turn before "
            raise at.error(msg, name, fix + "it, or drop the result.")
        return
    if prev == "call":
        msg = f"expected the tool result of the assistant's tool call here, got {m.role}."
        fix = "add the observation (ShareGPT) or tool (OpenAI) turn after the call, or drop it."
        raise at.error(msg, name, fix)
    expected = "assistant" if prev in ("user", "tool") else "user"
    if m.role != expected:
        article = "an" if expected == "assistant" else "a"
        msg = f"expected {article} {expected} message here, got {m.role} (turns must alternate "
        msg += "user/assistant, starting with user after an optional system message)."
        raise at.error(msg, name, "merge or drop the out-of-order message.")


def _field_namer(
    parts: list[tuple[str, int, bool]], attrs: dict[str, str] | None = None
) -> FieldOf:
    """``field_of`` for messages gathered from row fields ``(key, n_messages, is_list)``."""

    def field_of(i: int, attr: str) -> str:
        for key, n, is_list in parts:
            if i < n:
                return f"{key}[{i}].{(attrs or {}).get(attr, attr)}" if is_list else key
            i -= n
        return parts[-1][0]

    return field_of


def _list_namer(key: str) -> FieldOf:
    return lambda i, attr: f"{key}[{i}].{attr}"


# ---------------------------------------------------------------------------- messages


def _train_flag(d: dict[str, Any], role: str, at: _At, name: str) -> bool | None:
    """``train`` (bool) or axolotl ``weight`` (0/1) of one message; None when neither is set."""
    train, weight = d.get("train"), d.get("weight")
    if train is not None and not isinstance(train, bool):
        raise at.error(
            f"expected true or false, got {_kind(train)}.", f"{name}.train", "use a boolean."
        )
    if weight is not None and (not isinstance(weight, int | float) or weight not in (0, 1)):
        raise at.error(f"expected 0 or 1, got {weight!r}.", f"{name}.weight", "use 0 or 1.")
    if train is not None and weight is not None and train != bool(weight):
        raise at.error("'train' and 'weight' disagree.", f"{name}.weight", "keep one of them.")
    flag = train if train is not None else (None if weight is None else bool(weight))
    if flag and role != "assistant":
        msg = f"only assistant messages can be trained on, but this {role} message has train=true."
        raise at.error(msg, name, "drop the flag, or make the message an assistant turn.")
    return flag


def _turn_dict(d: object, at: _At, name: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """A message object whose keys are all known (unknown keys may only be null)."""
    if not isinstance(d, dict):
        raise at.error(
            f"expected a message object, got {_kind(d)}.", name, "write messages as objects."
        )
    extra = [k for k, v in d.items() if k not in keys and v is not None]
    if extra:
        msg = f"unsupported message key(s) {', '.join(repr(k) for k in extra)}; "
        msg += f"instructkit keeps {', '.join(keys)}."
        raise at.error(msg, f"{name}.{extra[0]}", "drop those keys so nothing is lost silently.")
    return d


def _content(value: object, at: _At, name: str) -> str:
    """Message content: a string, or a list of text parts joined together."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise at.error(f"expected a string, got {_kind(value)}.", name, "give every message text.")
    texts = []
    for j, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else _kind(part)
        if kind != "text" or not isinstance(part.get("text"), str):
            msg = f"expected a text part, got {kind!r}; instructkit reads text only."
            raise at.error(msg, f"{name}[{j}]", "drop image/audio parts, or drop the row.")
        texts.append(part["text"])
    return "".join(texts)


_MESSAGE_KEYS = ("role", "content", "train", "weight", "tool_calls", "tool_call_id", "name")


def _message(d: object, at: _At, name: str) -> Message:
    keys = _MESSAGE_KEYS if isinstance(d, dict) and d.get("role") == "tool" else _MESSAGE_KEYS[:-1]
    d = _turn_dict(d, at, name, keys)  # ``name`` is kept on tool results only
    role = d.get("role")
    if role not in ROLES:
        msg = f"unknown role {role!r}; expected system, user, assistant or tool."
        fix = "map legacy 'function' messages to 'tool' turns, or drop them."
        raise at.error(msg, f"{name}.role", fix)
    if role != "tool" and d.get("tool_call_id") is not None:
        msg = f"only tool messages answer a call, but this {role} message has a tool_call_id."
        raise at.error(msg, f"{name}.tool_call_id", "drop it, or make the message a tool turn.")
    calls = d.get("tool_calls")
    if calls is not None and role != "assistant":
        msg = f"only assistant messages make tool calls, but this {role} message has tool_calls."
        raise at.error(msg, f"{name}.tool_calls", "drop them, or make it an assistant turn.")
    tool_calls = toolcalls.parse_openai_calls(calls, at, f"{name}.tool_calls") if calls else None
    raw = d.get("content")
    content = "" if raw is None and tool_calls else _content(raw, at, f"{name}.content")
    message = Message(role, content, train=_train_flag(d, role, at, name), tool_calls=tool_calls)
    message.tool_call_id = _optional_text(d, "tool_call_id", at)
    message.name = _optional_text(d, "name", at)
    return message


def _sharegpt_turn(d: object, at: _At, name: str) -> Message:
    d = _turn_dict(d, at, name, ("from", "value", "train", "weight"))
    who = d.get("from")
    if who in _SHAREGPT_TOOL_TURNS:
        return _sharegpt_tool_turn(d, at, name)
    role = _FROM_SHAREGPT.get(who) if isinstance(who, str) else None
    if role is None:
        msg = f"unknown role {who!r}; expected human, gpt, system, function_call or observation "
        msg += "(or user/assistant/tool)."
        raise at.error(msg, f"{name}.from", "rename the role to one of those.")
    value = d.get("value")
    if not isinstance(value, str):
        raise at.error(
            f"expected a string, got {_kind(value)}.", f"{name}.value", "give every turn text."
        )
    return Message(role, value, train=_train_flag(d, role, at, name))


def _sharegpt_tool_turn(d: dict[str, Any], at: _At, name: str) -> Message:
    """``function_call`` (value: JSON of a call or a list of calls) or ``observation``."""
    value = d.get("value")
    if d["from"] == "function_call":
        calls = toolcalls.parse_sharegpt_call(value, at, f"{name}.value")
        return Message(
            "assistant", "", train=_train_flag(d, "assistant", at, name), tool_calls=calls
        )
    if not isinstance(value, str):
        msg = f"expected the tool result as a string, got {_kind(value)}."
        raise at.error(msg, f"{name}.value", "write the result as text (JSON text is fine).")
    return Message("tool", value, train=_train_flag(d, "tool", at, name))


def _turn_list(value: object, at: _At, name: str, parse: Callable[..., Message]) -> list[Message]:
    if not isinstance(value, list) or not value:
        msg = f"expected a non-empty list of messages, got {_kind(value)}."
        raise at.error(msg, name, f"give every row a non-empty '{name}' list.")
    return [parse(d, at, f"{name}[{i}]") for i, d in enumerate(value)]


def _side(row: dict[str, Any], key: str, at: _At, role: Role) -> tuple[list[Message], bool]:
    """A TRL field holding a string (one ``role`` message) or a message list; and is_list."""
    value = _need(row, key, at)
    if isinstance(value, str):
        return [Message(role, value)], False
    if isinstance(value, list):
        return _turn_list(value, at, key, _message), True
    msg = f"expected a string or a list of messages, got {_kind(value)}."
    raise at.error(msg, key, f"give every row a '{key}' string or message list.")


# ---------------------------------------------------------------------------- readers


def _parse_alpaca(row: dict[str, Any], at: _At) -> Record:
    system = _optional_text(row, "system", at)
    prompt = [Message("system", system)] if system is not None else []
    prompt += _history(row.get("history"), at)
    instruction = _text(_need(row, "instruction", at), at, "instruction")
    prompt.append(Message("user", instruction, input=_optional_text(row, "input", at)))
    meta = _metadata(row, "alpaca")
    if "chosen" in row or "rejected" in row:
        if "output" in row:
            fix = "keep 'output' for SFT rows, or 'chosen'/'rejected' for preference rows."
            raise at.error("the row has both 'output' and 'chosen'/'rejected'.", "output", fix)
        chosen = _text(_need(row, "chosen", at), at, "chosen")
        return PreferencePair(
            prompt, chosen, _text(_need(row, "rejected", at), at, "rejected"), meta
        )
    output = _text(_need(row, "output", at), at, "output")
    return Conversation([*prompt, Message("assistant", output)], meta)


def _history(value: object, at: _At) -> list[Message]:
    """LLaMA-Factory ``history``: earlier ``[user, assistant]`` pairs."""
    if value is None:
        return []
    if not isinstance(value, list):
        msg = f"expected a list of [user, assistant] pairs, got {_kind(value)}."
        raise at.error(msg, "history", "write history as [[user, assistant], ...] or drop it.")
    messages = []
    for i, pair in enumerate(value):
        if not (isinstance(pair, list) and len(pair) == 2):
            msg = f"expected a [user, assistant] pair, got {_kind(pair)}."
            raise at.error(msg, f"history[{i}]", "write each turn as [user, assistant].")
        messages.append(Message("user", _text(pair[0], at, f"history[{i}][0]")))
        messages.append(Message("assistant", _text(pair[1], at, f"history[{i}][1]")))
    return messages


def _parse_sharegpt(row: dict[str, Any], at: _At) -> Record:
    turns = _turn_list(_need(row, "conversations", at), at, "conversations", _sharegpt_turn)
    system = _optional_text(row, "system", at)
    if system is not None and turns[0].role == "system":
        fix = "keep the system prompt in one place."
        raise at.error("the row has a 'system' key and a system turn.", "system", fix)
    head = [Message("system", system)] if system is not None else []
    parts = [("system", len(head), False), ("conversations", len(turns), True)]
    field_of = _field_namer(parts, {"role": "from", "content": "value"})
    meta = _metadata(row, "sharegpt")
    tools = toolcalls.parse_tools(row.get("tools"), at)
    toolcalls.check_tool_names(head + turns, tools, at, field_of)
    toolcalls.link_tool_results(head + turns, at, field_of)
    if "chosen" in row or "rejected" in row:
        if tools:
            msg = "'tools' on a preference row is not supported (pairs hold text responses)."
            raise at.error(msg, "tools", "drop 'tools' from preference rows.")
        _check_turns(head + turns, at, field_of, end="user")
        chosen, rejected = _sharegpt_reply(row, "chosen", at), _sharegpt_reply(row, "rejected", at)
        return PreferencePair(head + turns, chosen, rejected, meta)
    _check_turns(head + turns, at, field_of, end="assistant")
    return Conversation(head + turns, meta, tools)


def _sharegpt_reply(row: dict[str, Any], key: str, at: _At) -> str:
    reply = _sharegpt_turn(_need(row, key, at), at, key)
    if reply.role != "assistant":
        msg = f"expected a gpt turn, got {reply.role}."
        raise at.error(msg, f"{key}.from", f'write {key} as {{"from": "gpt", "value": ...}}.')
    return _text(reply.content, at, f"{key}.value")


def _parse_messages(row: dict[str, Any], at: _At) -> Record:
    if "messages" not in row and "chosen" in row:
        return _parse_preference(row, at)  # TRL conversational pairs, as written for messages
    messages = _turn_list(_need(row, "messages", at), at, "messages", _message)
    tools = toolcalls.parse_tools(row.get("tools"), at)
    field_of = _list_namer("messages")
    _check_turns(messages, at, field_of, end="assistant")
    toolcalls.check_tool_names(messages, tools, at, field_of, "tool_calls")
    toolcalls.link_tool_results(messages, at, field_of)
    return Conversation(messages, _metadata(row, "messages"), tools)


def _parse_prompt_completion(row: dict[str, Any], at: _At) -> Record:
    if "completion" not in row and "chosen" in row:
        return _parse_preference(row, at)
    prompt, prompt_is_list = _side(row, "prompt", at, "user")
    completion, completion_is_list = _side(row, "completion", at, "assistant")
    parts = [("prompt", len(prompt), prompt_is_list)]
    parts.append(("completion", len(completion), completion_is_list))
    _check_turns(prompt + completion, at, _field_namer(parts), end="assistant")
    return Conversation(prompt + completion, _metadata(row, "prompt-completion"))


def _parse_preference(row: dict[str, Any], at: _At) -> PreferencePair:
    chosen, rejected = _need(row, "chosen", at), _need(row, "rejected", at)
    if "prompt" in row:
        prompt, good, bad = _explicit_pair(row, chosen, rejected, at)
    elif isinstance(chosen, str) and isinstance(rejected, str):
        prompt, good, bad = _hh_pair(chosen, rejected, at)
    else:
        prompt, good, bad = _implicit_pair(chosen, rejected, at)
    return PreferencePair(prompt, good, bad, _metadata(row, "preference"))


def _explicit_pair(
    row: dict[str, Any], chosen: object, rejected: object, at: _At
) -> tuple[list[Message], str, str]:
    prompt, is_list = _side(row, "prompt", at, "user")
    _check_turns(prompt, at, _field_namer([("prompt", len(prompt), is_list)]), end="user")
    if any(isinstance(v, list) and len(v) > 1 for v in (chosen, rejected)):
        # chosen/rejected repeat the prompt (as in UltraFeedback): it must be the same prompt
        prefix, good, bad = _implicit_pair(chosen, rejected, at)
        if _plain(prefix) != _plain(prompt):
            msg = "chosen/rejected start with a prompt that differs from 'prompt'."
            raise at.error(msg, "chosen", "make the messages before the response match 'prompt'.")
        return prompt, good, bad
    return prompt, _response(chosen, at, "chosen"), _response(rejected, at, "rejected")


def _response(value: object, at: _At, key: str) -> str:
    """A TRL response: a string, or a list holding one assistant message."""
    if not isinstance(value, list):
        return _text(value, at, key)
    messages = _turn_list(value, at, key, _message)
    if len(messages) != 1 or messages[0].role != "assistant":
        msg = f"expected one assistant message, got {len(messages)} message(s) starting with "
        msg += f"{messages[0].role}."
        raise at.error(msg, key, f'write {key} as [{{"role": "assistant", "content": ...}}].')
    return _text(messages[0].content, at, f"{key}[0].content")


def _implicit_pair(chosen: object, rejected: object, at: _At) -> tuple[list[Message], str, str]:
    """Conversational pair without ``prompt``: the lists share a prefix, the prompt."""
    if not (isinstance(chosen, list) and isinstance(rejected, list)):
        msg = (
            f"expected chosen and rejected of one kind, got {_kind(chosen)} and {_kind(rejected)}."
        )
        fix = "use two strings (HH transcripts or with 'prompt') or two message lists."
        raise at.error(msg, "rejected", fix)
    good = _turn_list(chosen, at, "chosen", _message)
    bad = _turn_list(rejected, at, "rejected", _message)
    for key, messages in (("chosen", good), ("rejected", bad)):
        if len(messages) < 2 or messages[-1].role != "assistant":
            msg = f"without a 'prompt' key, '{key}' must hold the prompt messages and end with "
            msg += "the assistant response."
            raise at.error(msg, key, "add a 'prompt' field, or the prompt messages to the list.")
    if _plain(good[:-1]) != _plain(bad[:-1]):
        msg = "chosen and rejected differ before their last message, so the prompt is unclear."
        raise at.error(msg, "rejected", "make them differ only in the final assistant message.")
    _check_turns(good[:-1], at, _list_namer("chosen"), end="user")
    return good[:-1], _text(good[-1].content, at, "chosen"), _text(bad[-1].content, at, "rejected")


def _hh_pair(chosen: str, rejected: str, at: _At) -> tuple[list[Message], str, str]:
    """Anthropic HH: two transcripts split at their last ``\\n\\nAssistant:``."""
    good_prefix, good = _hh_split(chosen, at, "chosen")
    bad_prefix, bad = _hh_split(rejected, at, "rejected")
    prompt = _hh_messages(good_prefix, at, "chosen")
    if _plain(prompt) != _plain(_hh_messages(bad_prefix, at, "rejected")):
        msg = "the chosen and rejected transcripts differ before their last 'Assistant:' turn, "
        msg += "so the shared prompt is unclear."
        raise at.error(msg, "rejected", "make both transcripts identical up to the last turn.")
    _check_turns(prompt, at, lambda i, attr: "chosen", end="user")
    return prompt, _text(good, at, "chosen"), _text(bad, at, "rejected")


def _hh_split(text: str, at: _At, key: str) -> tuple[str, str]:
    cut = text.rfind(_HH_ASSISTANT)
    if cut < 0:
        msg = "expected an Anthropic HH transcript ('\\n\\nHuman: ...\\n\\nAssistant: ...'), "
        msg += "got a string without an 'Assistant:' turn."
        raise at.error(msg, key, "add a 'prompt' field (TRL preference), or use HH transcripts.")
    return text[:cut], text[cut + len(_HH_ASSISTANT) :].strip()


def _hh_messages(prefix: str, at: _At, key: str) -> list[Message]:
    """``\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c`` -> alternating messages."""
    text = prefix if prefix.startswith("\n\n") else "\n\n" + prefix.lstrip()
    parts = _HH_TURN.split(text)
    if parts[0].strip():
        msg = "the transcript must start with 'Human:'."
        raise at.error(msg, key, "start both transcripts with '\\n\\nHuman:'.")
    roles: dict[str, Role] = {"Human": "user", "Assistant": "assistant"}
    return [Message(roles[parts[k]], parts[k + 1].strip()) for k in range(1, len(parts), 2)]


_PARSERS: dict[str, Callable[[dict[str, Any], _At], Record]] = {
    "alpaca": _parse_alpaca,
    "sharegpt": _parse_sharegpt,
    "messages": _parse_messages,
    "prompt-completion": _parse_prompt_completion,
    "preference": _parse_preference,
}


def detect_format(row: object, *, path: object = None, row_no: int | None = None) -> str:
    """Name of the format ``row`` is in, from its keys; DataFormatError if none matches."""
    row = _object(row, _At(path, row_no))
    for fmt, keys in _DETECT:
        if all(k in row for k in keys):
            return fmt
    expected = "; ".join(f"{fmt}: {keys}" for fmt, keys in _EXPECTED.items())
    msg = f"no known format matches the keys {_keys(row)}. Expected {expected}."
    raise _At(path, row_no).error(msg, fix="rename the keys to those of one format.")


def parse_row(row: object, fmt: str, *, path: object = None, row_no: int | None = None) -> Record:
    """One row of format ``fmt`` -> a Conversation or PreferencePair; DataFormatError if bad."""
    _check_format(fmt)
    at = _At(path, row_no)
    return _PARSERS[fmt](_object(row, at), at)


# ---------------------------------------------------------------------------- loading


def load_records(
    path: SpecLike, fmt: str | None = None, *, skip_invalid: bool = False
) -> LoadResult:
    """Read any source :func:`instructkit.data.loader.load_dataset` reads (a path or a
    dataset spec) in format ``fmt`` (auto-detected when None); it is that function.

    Without ``skip_invalid`` the first bad row raises DataFormatError (path, row, field, fix).
    With it, bad rows, unparseable lines included, become :class:`Reject` entries.
    """
    from instructkit.data.loader import load_dataset

    return load_dataset(path, fmt, skip_invalid=skip_invalid)


# ---------------------------------------------------------------------------- writers


def _chat(m: Message) -> dict[str, Any]:
    return {"role": m.role, "content": m.text}


def _notes(
    messages: list[Message], fmt: str, *, inputs: bool = True, train: bool = True
) -> list[str]:
    """What ``fmt`` cannot hold of these messages: Alpaca inputs (joined), train flags."""
    notes = []
    if inputs and any(m.input for m in messages):
        notes.append(f"alpaca 'input' joined into the user message ({fmt} has no input field)")
    if train and any(m.train is not None for m in messages):
        notes.append(f"per-message train flags dropped ({fmt} cannot hold them)")
    return notes


def _alpaca_prompt(prompt: list[Message]) -> tuple[dict[str, Any], list[str]]:
    """instruction/input of the last user turn; earlier turns as history; the system prompt."""
    has_system = prompt[0].role == "system"
    *earlier, last = prompt[1:] if has_system else prompt
    row: dict[str, Any] = {"instruction": last.content, "input": last.input or ""}
    notes = []
    if has_system:
        row["system"] = prompt[0].content
    if earlier:
        row["history"] = [
            [u.text, a.content] for u, a in zip(earlier[::2], earlier[1::2], strict=True)
        ]
        if any(u.input for u in earlier):
            notes.append("alpaca 'input' of earlier turns joined into 'history' (it has no input)")
    return row, notes


def _alpaca_conversation(conv: Conversation) -> tuple[dict[str, Any], list[str]]:
    row, notes = _alpaca_prompt(conv.messages[:-1])
    output = conv.messages[-1].content  # keys in LLaMA-Factory's order:
    row = {"instruction": row["instruction"], "input": row["input"], "output": output, **row}
    return row, notes + _notes(conv.messages, "alpaca", inputs=False)


def _alpaca_pair(pair: PreferencePair) -> tuple[dict[str, Any], list[str]]:
    row, notes = _alpaca_prompt(pair.prompt)
    row.update(chosen=pair.chosen, rejected=pair.rejected)
    return row, notes + _notes(pair.prompt, "alpaca", inputs=False)


def _sharegpt_turns(messages: list[Message]) -> list[dict[str, str]]:
    turns: list[dict[str, str]] = []
    results: list[str] = []  # consecutive tool results: one observation (strict alternation)
    for m in messages:
        if m.role == "tool":
            results.append(m.text)
            continue
        if results:
            turns.append({"from": "observation", "value": _observation(results)})
            results = []
        if m.tool_calls:
            value = toolcalls.sharegpt_call_value(m.tool_calls)
            turns.append({"from": "function_call", "value": value})
        else:
            turns.append({"from": _TO_SHAREGPT[m.role], "value": m.text})
    if results:
        turns.append({"from": "observation", "value": _observation(results)})
    return turns


def _observation(results: list[str]) -> str:
    """One result as it is; the results of several calls as a JSON list of strings."""
    return results[0] if len(results) == 1 else json.dumps(results, ensure_ascii=False)


def _tool_notes(messages: list[Message]) -> list[str]:
    """What ShareGPT cannot hold of tool calls: text beside calls, ids, split results."""
    notes = []
    if any(m.tool_calls and m.text.strip() for m in messages):
        notes.append(
            "assistant text beside tool calls dropped (a sharegpt function_call holds calls only)"
        )
    calls = [c for m in messages for c in m.tool_calls or []]
    if any(c.id != f"call_{k}" for k, c in enumerate(calls)):
        notes.append("tool call ids dropped (sharegpt has none; they become call_0, call_1, ...)")
    if any(a.role == b.role == "tool" for a, b in zip(messages, messages[1:], strict=False)):
        notes.append("results of several calls joined into one observation (a JSON list)")
    return notes


def _sharegpt_conversation(conv: Conversation) -> tuple[dict[str, Any], list[str]]:
    row: dict[str, Any] = {"conversations": _sharegpt_turns(conv.messages)}
    if conv.tools:
        row["tools"] = json.dumps(toolcalls.flat_tools(conv.tools), ensure_ascii=False)
    return row, _notes(conv.messages, "sharegpt") + _tool_notes(conv.messages)


def _sharegpt_pair(pair: PreferencePair) -> tuple[dict[str, Any], list[str]]:
    row = {
        "conversations": _sharegpt_turns(pair.prompt),
        "chosen": {"from": "gpt", "value": pair.chosen},
        "rejected": {"from": "gpt", "value": pair.rejected},
    }
    return row, _notes(pair.prompt, "sharegpt")


def _messages_conversation(conv: Conversation) -> tuple[dict[str, Any], list[str]]:
    messages = []
    for m in _with_call_ids(conv.messages):
        chat = _openai_message(m)
        messages.append(chat if m.train is None else {**chat, "train": m.train})
    row: dict[str, Any] = {"messages": messages}
    if conv.tools:
        row["tools"] = conv.tools
    return row, _notes(conv.messages, "messages", train=False)


def _openai_message(m: Message) -> dict[str, Any]:
    """OpenAI API form: calls with JSON-string arguments and null content when there is none."""
    if not (m.tool_calls or m.role == "tool"):
        return _chat(m)
    chat: dict[str, Any] = {"role": m.role, "content": m.text or None}
    if m.tool_calls:
        chat["tool_calls"] = [toolcalls.openai_call(c) for c in m.tool_calls]
    if m.tool_call_id is not None:
        chat["tool_call_id"] = m.tool_call_id
    if m.name is not None:
        chat["name"] = m.name
    return chat


def _with_call_ids(messages: list[Message]) -> list[Message]:
    """Copies whose calls and results carry ids (records built in code may lack them)."""
    if not any(m.tool_calls or m.role == "tool" for m in messages):
        return messages
    copies = [
        replace(m, tool_calls=[replace(c) for c in m.tool_calls] if m.tool_calls else None)
        for m in messages
    ]
    toolcalls.link_tool_results(copies, _At(), _list_namer("messages"))
    return copies


def _trl_pair(pair: PreferencePair, fmt: str) -> tuple[dict[str, Any], list[str]]:
    """TRL preference row: strings for one user turn (message lists always for ``messages``)."""
    if fmt != "messages" and len(pair.prompt) == 1 and pair.prompt[0].role == "user":
        row: dict[str, Any] = {"prompt": pair.prompt[0].text}
        row.update(chosen=pair.chosen, rejected=pair.rejected)
    else:
        row = {"prompt": [_chat(m) for m in pair.prompt]}
        row["chosen"] = [{"role": "assistant", "content": pair.chosen}]
        row["rejected"] = [{"role": "assistant", "content": pair.rejected}]
    return row, _notes(pair.prompt, fmt)


def _prompt_completion(conv: Conversation) -> tuple[dict[str, Any], list[str]]:
    *prompt, last = conv.messages
    notes = _notes(conv.messages, "prompt-completion")
    if len(prompt) == 1 and prompt[0].role == "user":
        return {"prompt": prompt[0].text, "completion": last.content}, notes
    if any(m.role == "assistant" for m in prompt):
        notes.append("earlier assistant turns moved into the prompt (only the completion trains)")
    row = {"prompt": [_chat(m) for m in prompt], "completion": [_chat(last)]}
    return row, notes


_CONVERSATION_WRITERS: dict[str, Callable[[Conversation], tuple[dict[str, Any], list[str]]]] = {
    "alpaca": _alpaca_conversation,
    "sharegpt": _sharegpt_conversation,
    "messages": _messages_conversation,
    "prompt-completion": _prompt_completion,
}
_PAIR_WRITERS: dict[str, Callable[[PreferencePair], tuple[dict[str, Any], list[str]]]] = {
    "alpaca": _alpaca_pair,
    "sharegpt": _sharegpt_pair,
    "messages": lambda p: _trl_pair(p, "messages"),
    "prompt-completion": lambda p: _trl_pair(p, "prompt-completion"),
    "preference": lambda p: _trl_pair(p, "preference"),
}


def _check_record(record: Record) -> None:
    """Writers rely on the record shapes readers guarantee; check records built elsewhere."""
    at = _At()
    if isinstance(record, PreferencePair):
        _check_turns(record.prompt, at, _list_namer("prompt"), end="user")
        _text(record.chosen, at, "chosen")
        _text(record.rejected, at, "rejected")
    else:
        _check_turns(record.messages, at, _list_namer("messages"), end="assistant")


def _check_tool_target(record: Record, fmt: str) -> None:
    """Only sharegpt and messages hold tool calls and results."""
    messages = record.prompt if isinstance(record, PreferencePair) else record.messages
    tools = isinstance(record, Conversation) and bool(record.tools)
    if fmt in ("sharegpt", "messages") or not (
        tools or any(m.tool_calls or m.role == "tool" for m in messages)
    ):
        return
    msg = f"the record holds tool calls, results or schemas, which '{fmt}' cannot hold."
    raise DataFormatError(msg, field="tools", fix="write it as sharegpt or messages.")


def to_row(record: Record, fmt: str) -> tuple[dict[str, Any], list[str]]:
    """``record`` as a row of ``fmt``, and notes on what ``fmt`` could not hold."""
    _check_format(fmt)
    if isinstance(record, Conversation) and fmt == "preference":
        msg = "a conversation cannot be written as 'preference', which holds chosen/rejected pairs."
        fix = "write it as messages, sharegpt, alpaca or prompt-completion."
        raise DataFormatError(msg, fix=fix)
    _check_record(record)
    _check_tool_target(record, fmt)
    if isinstance(record, PreferencePair):
        row, notes = _PAIR_WRITERS[fmt](record)
    else:
        row, notes = _CONVERSATION_WRITERS[fmt](record)
    reserved = _RESERVED.union(_FIELDS[fmt], row)
    for key, value in record.metadata.items():
        if key in reserved:
            notes.append(f"metadata key '{key}' dropped ({fmt} rows use that key)")
        else:
            row[key] = value
    return row, notes


def save_records(
    records: Iterable[Record], path: str | Path, fmt: str, *, file_type: str | None = None
) -> list[str]:
    """Write records as ``fmt``, atomically, as they come: JSONL, a JSON array (``.json``),
    CSV/TSV (``.csv``/``.tsv``, lists such as ``messages`` as JSON text in a cell), Parquet
    (``.parquet``) or a ``save_to_disk`` folder (no extension); ``file_type`` overrides
    the extension (see :func:`instructkit.data.writers.write_dataset_rows`).

    Returns notes on what the format could not hold, each with the number of rows it concerns.
    """
    from instructkit.data.writers import write_dataset_rows

    _check_format(fmt)
    counts = Counter[str]()

    def rows() -> Iterator[dict[str, Any]]:
        for i, record in enumerate(records):
            try:
                row, notes = to_row(record, fmt)
            except DataFormatError as e:
                raise DataFormatError(
                    e.reason, path=path, row=i + 1, field=e.field, fix=e.fix
                ) from e
            counts.update(dict.fromkeys(notes, 1))
            yield row

    write_dataset_rows(rows(), path, file_type)
    return [f"{n} row{'' if n == 1 else 's'}: {note}" for note, n in counts.items()]


def save_rejects(rejects: Iterable[Reject], path: str | Path) -> None:
    """Write rejects as JSONL, one ``{path, row, field, reason, raw}`` per line, atomically."""
    write_jsonl((r.to_dict() for r in rejects), path)
