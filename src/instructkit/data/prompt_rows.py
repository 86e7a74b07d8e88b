"""Prompt rows for on-policy training and sampling (``train ppo``, ``train grpo``, ``data
pairs``): the conversation to continue, plus the whole row.

A row is a JSON object with either

- ``prompt``: a string (one user turn) or a list of chat messages, or
- ``messages``: a chat list ``[{role, content}, ...]``.

**The prompt is the conversation up to its last user turn.** Turns after it (a final assistant
reply, as in SFT data) are dropped, since the reply is what the policy samples; the rows this
happened to are counted (:attr:`PromptRows.truncated`, and :attr:`PromptRow.dropped` per row)
and the workflows print the count. The turns kept must follow the data layer's rules (an
optional system message first, then user/assistant alternating from user, no empty text:
:func:`instructkit.data.formats.parse_row`); a list without a user turn is an error.

Every other field stays in :attr:`PromptRow.row`, so that a verifier reward reads what it
checks (IFEval's ``instruction_id_list``/``kwargs``, a reference ``answer``)::

    loaded = load_prompt_rows("prompts.jsonl", skip_invalid=True)
    loaded.rows[0].messages     # [{"role": "user", "content": "Write in lowercase ..."}]
    loaded.rows[0].text         # "Write in lowercase ..." (the last user message)
    loaded.truncated            # rows whose turns after the last user turn were dropped
    loaded.rejects              # formats.Reject entries (path, row, field, reason, raw)

A bad row raises DataFormatError naming the file, row, field and the fix; with
``skip_invalid`` it becomes a reject instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from instructkit.data.formats import Reject, parse_row
from instructkit.data.records import Conversation
from instructkit.data.sources import SpecLike, iter_source_rows, source_label, source_name
from instructkit.errors import DataFormatError
from instructkit.io import BadLine

__all__ = [
    "PromptParser",
    "PromptRow",
    "PromptRows",
    "load_prompt_rows",
    "prompt_messages",
    "read_prompt_rows",
]

_SKIP_HINT = "or set skip_invalid: true to write bad rows to rejects.jsonl"
_PLACEHOLDER = {"role": "assistant", "content": "-"}  # lets a prompt pass the turn rules


@dataclass(frozen=True)
class PromptRow:
    """One prompt: chat messages ending with a user turn, the source row and its number, and
    how many turns after the last user turn were dropped."""

    messages: list[dict[str, str]]
    row: dict[str, Any]
    row_no: int
    dropped: int = 0

    @property
    def text(self) -> str:
        """The last user message (what a reward reads as the prompt)."""
        return self.messages[-1]["content"]


@dataclass
class PromptRows:
    path: str
    rows: list[PromptRow] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)

    @property
    def truncated(self) -> int:
        """Rows whose turns after the last user turn were dropped."""
        return sum(1 for r in self.rows if r.dropped)


def _with_hint(e: DataFormatError) -> DataFormatError:
    fix = f"{e.fix.rstrip('. ')}, {_SKIP_HINT}." if e.fix else f"{_SKIP_HINT}."
    return DataFormatError(e.reason, path=e.path, row=e.row, field=e.field, fix=fix)


def _up_to_last_user(turns: object, key: str, path: object, row_no: int) -> tuple[object, int]:
    """``turns`` cut after its last user turn, and how many turns were cut (a value that is
    not a list is left for the data layer to reject)."""
    if not isinstance(turns, list) or not turns:
        return turns, 0
    users = [i for i, m in enumerate(turns) if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise DataFormatError(
            f"'{key}' has no user turn; a prompt is the conversation up to its last user turn",
            path=path, row=row_no, field=f"{key}[0].role",
            fix=f"add the user's message, {_SKIP_HINT}.",
        )  # fmt: skip
    return turns[: users[-1] + 1], len(turns) - users[-1] - 1


def _parsed(value: dict[str, Any], path: object, row_no: int) -> tuple[list[dict[str, str]], int]:
    """(messages, turns dropped) of a row object, checked by the data layer's turn rules."""
    if "messages" in value:
        turns, dropped = _up_to_last_user(value["messages"], "messages", path, row_no)
        placed = {
            "messages": [*turns, _PLACEHOLDER] if isinstance(turns, list) and turns else turns
        }
        record = parse_row(placed, "messages", path=path, row_no=row_no)
    else:
        turns, dropped = _up_to_last_user(value.get("prompt"), "prompt", path, row_no)
        placed = {"prompt": turns, "completion": "-"} if "prompt" in value else {"completion": "-"}
        record = parse_row(placed, "prompt-completion", path=path, row_no=row_no)
    assert isinstance(record, Conversation)  # both formats parse to a conversation
    return [m.to_chat() for m in record.messages[:-1]], dropped


def _prompt(value: object, path: object, row_no: int) -> tuple[list[dict[str, str]], int]:
    if isinstance(value, BadLine):
        fix = f"repair the line, {_SKIP_HINT}."
        raise DataFormatError(f"invalid JSON: {value.message}.", path=path, row=row_no, fix=fix)
    if not isinstance(value, dict):
        fix = f"give one object per row, {_SKIP_HINT}."
        raise DataFormatError("expected a JSON object", path=path, row=row_no, fix=fix)
    if "messages" not in value and "prompt" not in value:
        raise DataFormatError(
            "no prompt: the row has neither 'prompt' nor 'messages'",
            path=path, row=row_no, field="prompt",
            fix=f"give each row a non-empty 'prompt' (or a 'messages' list), {_SKIP_HINT}.",
        )  # fmt: skip
    try:
        return _parsed(value, path, row_no)
    except DataFormatError as e:
        if _SKIP_HINT in (e.fix or ""):
            raise
        raise _with_hint(e) from e


def prompt_messages(value: object, *, path: object = None, row_no: int = 0) -> list[dict[str, str]]:
    """The chat messages of one prompt row, up to its last user turn; DataFormatError (file,
    row, field, fix) if bad."""
    return _prompt(value, path, row_no)[0]


def load_prompt_rows(spec: SpecLike, *, skip_invalid: bool = False) -> PromptRows:
    """Read prompt rows (see the module doc) from a path or a dataset spec (split, subset,
    columns, file_type; any source the loader reads)."""
    return read_prompt_rows(spec, _prompt, skip_invalid=skip_invalid)


PromptParser = Callable[[object, object, int], tuple[list[dict[str, str]], int]]


def read_prompt_rows(
    spec: SpecLike, parse: PromptParser, *, skip_invalid: bool = False
) -> PromptRows:
    """Each row of ``spec`` (a path or a dataset spec, streamed) through ``parse(value, path,
    row_no) -> (messages, dropped turns)``; a row it refuses stops the read or, with
    ``skip_invalid``, is a reject."""
    path, out = source_label(spec), PromptRows(source_name(spec))
    for row_no, value in iter_source_rows(spec):
        try:
            messages, dropped = parse(value, path, row_no)
        except DataFormatError as e:
            if not skip_invalid:
                raise
            raw = value.text if isinstance(value, BadLine) else value
            out.rejects.append(Reject(out.path, row_no, e.field, e.reason, raw))
            continue
        assert isinstance(value, dict)
        out.rows.append(PromptRow(messages, value, row_no, dropped))
    return out
