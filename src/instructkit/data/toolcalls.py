"""Tool-calling data: function schemas, tool calls and results in the ShareGPT and OpenAI layouts.

Two layouts hold the same thing (docs/tools.md):

- ShareGPT (LLaMA-Factory / glaive): ``{"conversations": [..., {"from": "function_call",
  "value": "{\\"name\\": ..., \\"arguments\\": {...}}"}, {"from": "observation", "value": ...},
  ...], "tools": "[{\\"name\\": ..., \\"description\\": ..., \\"parameters\\": {...}}]"}``;
- OpenAI: ``{"messages": [..., {"role": "assistant", "content": null, "tool_calls": [{"id",
  "type": "function", "function": {"name", "arguments": "<JSON>"}}]}, {"role": "tool",
  "tool_call_id", "content"}, ...], "tools": [{"type": "function", "function": {...}}]}``.

:mod:`instructkit.data.formats` calls the parsers here on those fields and the writers when it
writes rows; records hold :class:`~instructkit.data.records.ToolCall` s with parsed arguments
and ``Conversation.tools`` in OpenAI's form. :func:`textual_tool_messages` is how the built-in
chat templates (which know only system/user/assistant) show tools, calls and results::

    tools = parse_tools(row["tools"], at)  # JSON string or list, flat or OpenAI form
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from instructkit.data.records import Message, ToolCall
from instructkit.errors import DataFormatError

__all__ = [
    "TOOLS_PREAMBLE",
    "parse_tools",
    "parse_arguments",
    "parse_sharegpt_call",
    "parse_openai_calls",
    "link_tool_results",
    "check_tool_names",
    "flat_tools",
    "sharegpt_call_value",
    "openai_call",
    "tool_call_text",
    "tool_result_text",
    "textual_tool_messages",
]

TOOLS_PREAMBLE = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
)
TOOLS_CLOSING = (
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags."
)


class Where(Protocol):
    """Where a row came from (``formats._At``): builds errors that name the file and row."""

    def error(
        self, message: str, name: str | None = None, fix: str | None = None
    ) -> DataFormatError: ...


def _kind(value: object) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _json(value: object, at: Where, name: str, what: str) -> object:
    """``value`` itself, or the JSON a string holds."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except (ValueError, RecursionError) as e:  # RecursionError: absurdly deep nesting
        msg = f"expected {what} as JSON, got a string that is not JSON ({e})."
        raise at.error(msg, name, f"write '{name}' as valid JSON.") from e


def parse_tools(value: object, at: Where, name: str = "tools") -> list[dict[str, Any]] | None:
    """Function schemas (a JSON string or a list; flat or OpenAI form) -> OpenAI form."""
    if value is None or value == "" or value == []:
        return None
    schemas = _json(value, at, name, "a list of function schemas")
    if not isinstance(schemas, list):
        msg = f"expected a list of function schemas, got {_kind(schemas)}."
        raise at.error(msg, name, 'write [{"name": ..., "description": ..., "parameters": ...}].')
    return [_schema(s, at, f"{name}[{i}]") for i, s in enumerate(schemas)]


def _schema(value: object, at: Where, name: str) -> dict[str, Any]:
    function = value.get("function") if isinstance(value, dict) else None
    if isinstance(value, dict) and value.get("type") == "function" and isinstance(function, dict):
        value = function
    if not (isinstance(value, dict) and isinstance(value.get("name"), str) and value["name"]):
        msg = f"expected a function schema with a 'name', got {_kind(value)}."
        raise at.error(msg, name, 'give each tool {"name": ..., "parameters": {...}}.')
    return {"type": "function", "function": dict(value)}


def parse_arguments(value: object, at: Where, name: str) -> dict[str, Any]:
    """Call arguments: an object, or a string holding a JSON object."""
    arguments = _json(value if value is not None else {}, at, name, "the call's arguments")
    if not isinstance(arguments, dict):
        msg = f"expected the arguments as a JSON object, got {_kind(arguments)}."
        raise at.error(msg, name, 'write arguments as an object: {"city": "Paris"}.')
    return arguments


def _call(value: object, at: Where, name: str, call_id: str | None = None) -> ToolCall:
    if not (isinstance(value, dict) and isinstance(value.get("name"), str) and value["name"]):
        msg = f"expected a call {{name, arguments}}, got {_kind(value)}."
        raise at.error(msg, name, 'write the call as {"name": ..., "arguments": {...}}.')
    return ToolCall(
        value["name"], parse_arguments(value.get("arguments"), at, f"{name}.arguments"), call_id
    )


def parse_sharegpt_call(value: object, at: Where, name: str) -> list[ToolCall]:
    """A ``function_call`` turn's value: a JSON string of one call or a list of calls."""
    calls = _json(value, at, name, "a function call {name, arguments}")
    listed = calls if isinstance(calls, list) and calls else [calls]
    return [
        _call(c, at, name if len(listed) == 1 else f"{name}[{j}]") for j, c in enumerate(listed)
    ]


def parse_openai_calls(value: object, at: Where, name: str) -> list[ToolCall]:
    """An assistant message's ``tool_calls``: [{id, type, function: {name, arguments}}]."""
    if not isinstance(value, list) or not value:
        msg = f"expected a non-empty list of tool calls, got {_kind(value)}."
        raise at.error(msg, name, "drop 'tool_calls' or list the calls.")
    calls = []
    for j, c in enumerate(value):
        where = f"{name}[{j}]"
        if not isinstance(c, dict) or c.get("type", "function") != "function":
            kind = c.get("type") if isinstance(c, dict) else _kind(c)
            msg = f"expected a function tool call, got {kind!r}."
            raise at.error(msg, where, 'write {"type": "function", "function": {...}}.')
        call_id = c.get("id")
        if call_id is not None and not isinstance(call_id, str):
            raise at.error(
                f"expected a string id, got {_kind(call_id)}.", f"{where}.id", "use a string id."
            )
        calls.append(_call(c.get("function"), at, f"{where}.function", call_id))
    return calls


def link_tool_results(
    messages: list[Message], at: Where, field_of: Callable[[int, str], str]
) -> None:
    """Give calls without an id ``call_K`` (K counts calls in the conversation) and each tool
    result the id (and function name) of the call it answers, in order; check given ids."""
    open_calls: list[ToolCall] = []
    k = 0
    for i, m in enumerate(messages):
        for call in m.tool_calls or []:
            call.id = call.id if call.id is not None else f"call_{k}"
            k += 1
        if m.tool_calls:
            open_calls = list(m.tool_calls)
        if m.role != "tool":
            continue
        match = [c for c in open_calls if m.tool_call_id in (None, c.id)][:1]
        if m.tool_call_id is not None and not match:
            msg = (
                f"tool_call_id {m.tool_call_id!r} answers no call of the assistant turn before it."
            )
            raise at.error(msg, field_of(i, "tool_call_id"), "use the id of one of its tool_calls.")
        if match:
            open_calls.remove(match[0])
            m.tool_call_id = match[0].id
            m.name = m.name or match[0].name


def check_tool_names(
    messages: list[Message],
    tools: list[dict[str, Any]] | None,
    at: Where,
    field_of: Callable[[int, str], str],
    attr: str = "content",
) -> None:
    """Every call names a function of ``tools`` (when the row lists tools); ``field_of(i,
    attr)`` names the field of message i that holds its calls."""
    if not tools:
        return
    known = [t["function"]["name"] for t in tools]
    for i, m in enumerate(messages):
        for call in m.tool_calls or []:
            if call.name not in known:
                msg = f"the call names function {call.name!r}, which 'tools' does not define "
                msg += f"(it has {', '.join(map(repr, known))})."
                raise at.error(msg, field_of(i, attr), "add its schema to 'tools' or fix the name.")


def flat_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-form schemas -> LLaMA-Factory's flat ``{name, description, parameters}``."""
    return [dict(t["function"]) for t in tools]


def sharegpt_call_value(calls: list[ToolCall]) -> str:
    """A ``function_call`` turn's value: one call as an object, several as a list."""
    objects = [{"name": c.name, "arguments": c.arguments} for c in calls]
    return json.dumps(objects[0] if len(objects) == 1 else objects, ensure_ascii=False)


def openai_call(call: ToolCall) -> dict[str, Any]:
    """OpenAI API form: ``arguments`` as a JSON string."""
    arguments = json.dumps(call.arguments, ensure_ascii=False)
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }


def tool_call_text(calls: list[dict[str, Any]]) -> str:
    """Calls (chat form) as built-in templates show them: one ``<tool_call>`` block each."""
    blocks = []
    for c in calls:
        f = c.get("function", c)
        body = json.dumps(
            {"name": f["name"], "arguments": f.get("arguments", {})}, ensure_ascii=False
        )
        blocks.append(f"<tool_call>\n{body}\n</tool_call>")
    return "\n".join(blocks)


def tool_result_text(content: str) -> str:
    return f"<tool_response>\n{content}\n</tool_response>"


def textual_tool_messages(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    default_system: str | None = None,
) -> list[dict[str, Any]]:
    """Chat dicts for templates without tool support (the built-in ones), as plain text.

    The schemas go at the end of the system prompt (a system message, starting with the
    template's ``default_system`` prompt if it has one, is added when there is none) between
    ``<tools>`` tags, one JSON object a line; an assistant's calls follow its text
    as ``<tool_call>`` blocks; a tool result becomes a ``user`` turn wrapped in
    ``<tool_response>`` tags (the Hermes / Qwen2.5 convention). Other messages are unchanged.
    """
    out = []
    for m in messages:
        if m.get("tool_calls"):
            text = m.get("content") or ""
            calls = tool_call_text(m["tool_calls"])
            m = {**m, "content": f"{text}\n{calls}" if text else calls}
        elif m.get("role") == "tool":
            m = {**m, "role": "user", "content": tool_result_text(m.get("content") or "")}
        out.append({k: v for k, v in m.items() if k not in ("tool_calls", "tool_call_id", "name")})
    if tools:
        lines = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
        block = TOOLS_PREAMBLE + lines + TOOLS_CLOSING
        if out and out[0].get("role") == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{block}"}
        else:
            head = f"{default_system}\n\n{block}" if default_system else block
            out.insert(0, {"role": "system", "content": head})
    return out
