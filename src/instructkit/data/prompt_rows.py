"""Prompt rows for on-policy training (PPO): the conversation to continue, plus the whole row.

A row is a JSON object with either

- ``prompt``: a string (one user turn) or a list of chat messages, or
- ``messages``: a chat list ``[{role, content}, ...]`` that ends with a user turn (the
  assistant's reply is what the policy samples, so a final assistant turn is an error).

Every other field stays in :attr:`PromptRow.row`, so that a verifier reward reads what it
checks (IFEval's ``instruction_id_list``/``kwargs``, a reference ``answer``)::

    loaded = load_prompt_rows("prompts.jsonl", skip_invalid=True)
    loaded.rows[0].messages     # [{"role": "user", "content": "Write in lowercase ..."}]
    loaded.rejects              # formats.Reject entries (path, row, field, reason, raw)

A bad row raises DataFormatError naming the file, row and field; with ``skip_invalid`` it
becomes a reject instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructkit.data.formats import Reject
from instructkit.data.records import ROLES
from instructkit.errors import DataFormatError
from instructkit.io import BadLine, read_rows

__all__ = ["PromptRow", "PromptRows", "load_prompt_rows", "prompt_messages"]

_SKIP_HINT = "or set skip_invalid: true to write bad rows to rejects.jsonl"


@dataclass(frozen=True)
class PromptRow:
    """One prompt: chat messages ending with a user turn, the source row and its number."""

    messages: list[dict[str, str]]
    row: dict[str, Any]
    row_no: int


@dataclass
class PromptRows:
    path: str
    rows: list[PromptRow] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def _messages(value: object, key: str, path: object, row_no: int) -> list[dict[str, str]]:
    def bad(msg: str, where: str, fix: str) -> DataFormatError:
        return DataFormatError(msg, path=path, row=row_no, field=where, fix=f"{fix}, {_SKIP_HINT}.")

    if not isinstance(value, list) or not value:
        raise bad(f"'{key}' must be a non-empty list of messages", key, "give [{role, content}]")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise bad(f"{key}[{i}] needs a role in {ROLES}", f"{key}[{i}].role", "set the role")
        if not isinstance(m.get("content"), str):
            raise bad(f"{key}[{i}].content must be a string", f"{key}[{i}].content", "mend it")
        out.append({"role": str(m["role"]), "content": str(m["content"])})
    if out[-1]["role"] != "user":
        raise bad(
            f"{key} ends with a {out[-1]['role']} turn; a prompt ends with the user's turn",
            f"{key}[{len(out) - 1}].role",
            "drop the final assistant turn (the policy samples the reply)",
        )
    return out


def prompt_messages(value: object, *, path: object = None, row_no: int = 0) -> list[dict[str, str]]:
    """The chat messages of one prompt row; DataFormatError (file, row, field, fix) if bad."""
    if isinstance(value, BadLine):
        fix = f"repair the line, {_SKIP_HINT}."
        raise DataFormatError(f"invalid JSON: {value.message}.", path=path, row=row_no, fix=fix)
    if not isinstance(value, dict):
        fix = f"give one object per row, {_SKIP_HINT}."
        raise DataFormatError("expected a JSON object", path=path, row=row_no, fix=fix)
    if "messages" in value:
        return _messages(value["messages"], "messages", path, row_no)
    prompt = value.get("prompt")
    if isinstance(prompt, list):
        return _messages(prompt, "prompt", path, row_no)
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataFormatError(
            f"no prompt: 'prompt' is {'missing' if prompt is None else 'empty or not a string'}",
            path=path, row=row_no, field="prompt",
            fix=f"give each row a non-empty 'prompt' (or a 'messages' list), {_SKIP_HINT}.",
        )  # fmt: skip
    return [{"role": "user", "content": prompt}]


def load_prompt_rows(path: str | Path, *, skip_invalid: bool = False) -> PromptRows:
    """Read a .json/.jsonl file of prompt rows (see the module doc)."""
    out = PromptRows(str(path))
    for row_no, value in read_rows(path):
        try:
            messages = prompt_messages(value, path=path, row_no=row_no)
        except DataFormatError as e:
            if not skip_invalid:
                raise
            raw = value.text if isinstance(value, BadLine) else value
            out.rejects.append(Reject(str(path), row_no, e.field, e.reason, raw))
            continue
        assert isinstance(value, dict)
        out.rows.append(PromptRow(messages, value, row_no))
    return out
