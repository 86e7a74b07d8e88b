"""Preference pairs for a reward model: read, check and tokenize them like SFT data.

``load_pairs(path, tokenizer, template, PairOptions(...))`` reads any preference format the
data layer reads (TRL ``prompt/chosen/rejected`` as strings or message lists, Anthropic HH
transcripts, ShareGPT/LLaMA-Factory pairs, Alpaca ``chosen``/``rejected``) through
:func:`~instructkit.data.formats.load_records`, the reader SFT uses, with the same rejects.
Each pair's chosen and rejected conversations are rendered with the chat template and
tokenized by :func:`~instructkit.data.tokenize.tokenize_conversation`, exactly as SFT
renders a conversation. Checks on top of the reader's, each naming file, row and field:

- the row is a pair (a plain conversation has nothing to compare) -> field ``chosen``;
- chosen and rejected differ (after trimming whitespace) -> field ``rejected``;
- an optional ``margin`` is a number -> field ``margin``;
- prompt + response fit ``max_seq_len``: with ``too_long: reject`` (default) the row is
  rejected, with ``too_long: truncate`` the oldest turns are dropped and then the response cut
  at the limit, as SFT truncates, and the pair is counted as truncated.

Without ``skip_invalid`` the first bad row raises :class:`~instructkit.errors.DataFormatError`;
with it, bad rows become rejects (``{path, row, field, reason, raw}``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from instructkit.data.formats import Reject, load_records
from instructkit.data.records import PreferencePair
from instructkit.data.sources import SpecLike, source_name
from instructkit.data.templates import ChatTemplate
from instructkit.data.tokenize import tokenize_conversation
from instructkit.errors import DataFormatError

__all__ = ["PairOptions", "PairSet", "TokenizedPair", "load_pairs"]

TooLong = Literal["reject", "truncate"]
SKIP_HINT = (
    "or set skip_invalid: true (--set skip_invalid=true) to write such rows to rejects.jsonl"
)


@dataclass(frozen=True)
class PairOptions:
    """How pairs are read: the format (None: detected), context window, long and bad rows."""

    format: str | None = None
    max_seq_len: int = 512
    too_long: TooLong = "reject"
    skip_invalid: bool = False


@dataclass(frozen=True)
class TokenizedPair:
    """One pair as token ids of the whole rendered conversation (prompt + response)."""

    chosen: list[int]
    rejected: list[int]
    margin: float = 0.0
    row: int = 0  # 1-based row of the source file
    prompt: str = ""  # the prompt messages as JSON: pairs that share it share a split

    @property
    def length(self) -> int:
        """Tokens of the pair as two right-padded rows."""
        return 2 * max(len(self.chosen), len(self.rejected))


@dataclass
class PairSet:
    """Pairs read from one file, what was rejected, and how many were truncated."""

    pairs: list[TokenizedPair] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    truncated: int = 0
    n_rows: int = 0
    has_margin: bool = False  # some row gave a 'margin'


def load_pairs(
    spec: SpecLike, tokenizer: Any, template: ChatTemplate, opts: PairOptions
) -> PairSet:
    """Read, check and tokenize the pairs of ``spec`` (a path or a dataset spec, see
    :class:`~instructkit.data.sources.DatasetSpec`); see the module docstring."""
    path = spec if isinstance(spec, str | Path) else source_name(spec)
    loaded = load_records(spec, opts.format, skip_invalid=opts.skip_invalid)
    out = PairSet(rejects=list(loaded.rejects), n_rows=loaded.n_rows)
    for record, row_no in zip(loaded.records, loaded.row_numbers, strict=True):
        try:
            pair, truncated = _tokenized(record, row_no, tokenizer, template, opts)
        except DataFormatError as e:
            fix = (e.fix or "").rstrip(". ")
            if not opts.skip_invalid:
                raise DataFormatError(
                    e.reason, path=path, row=row_no, field=e.field, fix=f"{fix}, {SKIP_HINT}."
                ) from e
            reason = e.reason + (f" Fix: {fix}." if fix else "")
            out.rejects.append(Reject(str(path), row_no, e.field, reason, _raw(record)))
            continue
        out.pairs.append(pair)
        out.truncated += truncated
        out.has_margin |= "margin" in record.metadata
    return out


def _tokenized(
    record: Any, row_no: int, tokenizer: Any, template: ChatTemplate, opts: PairOptions
) -> tuple[TokenizedPair, bool]:
    if not isinstance(record, PreferencePair):
        raise DataFormatError(
            "the row is a conversation, not a preference pair.",
            field="chosen",
            fix="give each row a chosen and a rejected response (e.g. prompt/chosen/rejected)",
        )
    if record.chosen.strip() == record.rejected.strip():
        raise DataFormatError(
            "chosen and rejected are the same response, so the pair prefers nothing.",
            field="rejected",
            fix="drop the pair or give it two different responses",
        )
    margin = _margin(record.metadata.get("margin"))
    limit = None if opts.too_long == "reject" else opts.max_seq_len
    sides = []
    for name, conv in (
        ("chosen", record.chosen_conversation()),
        ("rejected", record.rejected_conversation()),
    ):
        ex = tokenize_conversation(conv, template, tokenizer, max_seq_len=limit)
        if len(ex.input_ids) > opts.max_seq_len:
            raise DataFormatError(
                f"prompt + {name} response is {len(ex.input_ids)} tokens, more than "
                f"max_seq_len={opts.max_seq_len}.",
                field=name,
                fix="raise max_seq_len, shorten the row, or set too_long: truncate",
            )
        sides.append(ex)
    truncated = any(ex.truncated or ex.dropped_turns for ex in sides)
    if truncated and sides[0].input_ids == sides[1].input_ids:
        raise DataFormatError(
            f"chosen and rejected are identical within max_seq_len={opts.max_seq_len} "
            "(they differ only after the cut).",
            field="rejected",
            fix="raise max_seq_len or set too_long: reject",
        )
    prompt = json.dumps([m.to_chat() for m in record.prompt], ensure_ascii=False)
    return TokenizedPair(sides[0].input_ids, sides[1].input_ids, margin, row_no, prompt), truncated


def _margin(value: object) -> float:
    if value is None:
        return 0.0
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise DataFormatError(
        f"expected a number for the pair's margin, got {value!r}.",
        field="margin",
        fix="make 'margin' a number (how much chosen is preferred) or drop it",
    )


def _raw(record: Any) -> object:
    from instructkit.data.formats import to_row

    try:
        fmt = "preference" if isinstance(record, PreferencePair) else "messages"
        return to_row(record, fmt)[0]
    except DataFormatError:
        return None
