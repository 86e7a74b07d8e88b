"""Prompt rows for the trainers that sample (``train ppo``, ``train grpo``): read, checked by
the reward source before any model loads, rendered and measured against the context::

    rows, rejects = checked_prompt_rows("prompts.jsonl", reward, skip_invalid=False)
    # ... load the model and the template ...
    fit = PromptFit(path="prompts.jsonl", max_seq_len=1024, max_new_tokens=128,
                    new_tokens_key="rollout.max_new_tokens", skip_invalid=False)
    queries, too_long = encode_prompts(rows, template, tokenizer, fit)
    report_prompt_rejects(out, rejects + too_long, too_long, len(queries), fit)

A row is the conversation up to its last user turn (:mod:`instructkit.data.prompt_rows`). A row
the reward cannot score is a one-line DataFormatError naming the file, row and field (a reject
with ``skip_invalid``); a prompt whose tokens plus the new tokens exceed ``max_seq_len`` is a
reject, always (counted, written to rejects.jsonl); no prompt left is a TrainingError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instructkit.data.formats import Reject, save_rejects
from instructkit.data.prompt_rows import PromptRow, load_prompt_rows
from instructkit.data.sources import SpecLike, source_label
from instructkit.data.templates import ChatTemplate
from instructkit.errors import DataFormatError, InstructkitError, TrainingError
from instructkit.train.rewards import RewardFn

__all__ = [
    "PromptFit",
    "Query",
    "checked_prompt_rows",
    "encode_prompts",
    "report_prompt_rejects",
]


@dataclass(frozen=True)
class Query:
    """A prompt ready to sample from: its token ids, its rendered text and its source row."""

    ids: list[int]
    text: str
    source: PromptRow


@dataclass(frozen=True)
class PromptFit:
    """Where the prompts come from and the room they must leave for the sampled tokens."""

    path: str
    max_seq_len: int
    max_new_tokens: int
    new_tokens_key: str  # the config key of max_new_tokens, named in reasons and fixes
    skip_invalid: bool


def checked_prompt_rows(
    spec: SpecLike, reward: RewardFn, *, skip_invalid: bool
) -> tuple[list[PromptRow], list[Reject]]:
    """Prompt rows of ``spec`` (a path or a dataset spec) that parse and carry what ``reward``
    reads; the others are rejects (with ``skip_invalid``) or the first one raises
    DataFormatError."""
    loaded = load_prompt_rows(spec, skip_invalid=skip_invalid)
    path = source_label(spec)
    if loaded.truncated:  # the prompt is the conversation up to its last user turn
        print(f"prompts: {loaded.truncated} cut after their last user turn")
    rows, rejects = [], list(loaded.rejects)
    for r in loaded.rows:
        try:
            reward.check(r.row, path=path, row_no=r.row_no)
        except DataFormatError as e:
            if not skip_invalid:
                raise
            rejects.append(Reject(loaded.path, r.row_no, e.field, e.reason, r.row))
            continue
        rows.append(r)
    return rows, rejects


def encode_prompts(
    rows: Sequence[PromptRow], template: ChatTemplate, tokenizer: Any, fit: PromptFit
) -> tuple[list[Query], list[Reject]]:
    """Render each prompt with the chat template (generation prompt added) and tokenize it;
    a prompt whose tokens plus ``fit.max_new_tokens`` exceed ``fit.max_seq_len`` is a reject."""
    room = fit.max_seq_len - fit.max_new_tokens
    queries, rejects = [], []
    for r in rows:
        try:
            text = template.render(r.messages, True)
        except InstructkitError as e:
            if not fit.skip_invalid:
                raise DataFormatError(str(e), path=fit.path, row=r.row_no, fix=e.fix) from e
            rejects.append(Reject(fit.path, r.row_no, None, str(e), r.row))
            continue
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > room:
            reason = (
                f"the prompt has {len(ids)} tokens; with {fit.new_tokens_key}="
                f"{fit.max_new_tokens} it exceeds max_seq_len={fit.max_seq_len}"
            )
            rejects.append(Reject(fit.path, r.row_no, "prompt", reason, r.row))
            continue
        queries.append(Query(ids, text, r))
    return queries, rejects


def report_prompt_rejects(
    out: Path, rejects: list[Reject], too_long: list[Reject], kept: int, fit: PromptFit
) -> None:
    """Print the counts, write ``out/rejects.jsonl``; no prompt left is a TrainingError."""
    print(f"prompts: {kept} kept, {len(rejects)} rejected ({len(too_long)} too long)")
    if rejects:
        save_rejects(rejects, out / "rejects.jsonl")
    if not kept:
        raise TrainingError(
            f"{fit.path}: no prompt left to train on ({len(rejects)} rejected; first: "
            f"{rejects[0].reason if rejects else 'the file has no rows'}).",
            fix=f"raise max_seq_len or lower {fit.new_tokens_key}, or mend the rows listed "
            "in rejects.jsonl.",
        )
