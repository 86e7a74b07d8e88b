"""Data workflows behind ``instructkit data ...``: convert, validate, stats, render.

Each takes paths and options and returns a small result object; the CLI only prints it.
Bad rows raise :class:`~instructkit.errors.DataFormatError` (file, row, field, fix), or with
``skip_invalid=True`` go to a rejects file with their reasons; counts are always reported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from instructkit.data.formats import Reject, load_records, save_records, save_rejects
from instructkit.data.loader import RecordStream
from instructkit.data.quantiles import describe
from instructkit.data.records import Conversation, PreferencePair, Record
from instructkit.data.sources import SpecLike
from instructkit.data.templates import (
    check_template_name,
    default_system_prompt,
    get_template,
    segment_conversation,
)
from instructkit.data.tokenize import TrainOn, encode_segments, tokenize_conversation, trained_text
from instructkit.errors import DataFormatError
from instructkit.io import beside, write_jsonl

__all__ = [
    "ConvertResult",
    "ValidateResult",
    "StatsResult",
    "RenderResult",
    "convert",
    "validate",
    "stats",
    "render",
    "default_rejects_path",
]


_KEEP_REJECTS = 100  # rejects a streaming result keeps in memory (the file has them all)


def default_rejects_path(path: str | Path) -> Path:
    """``IN.rejects.jsonl`` beside a file source; in the working folder for a hub name."""
    p = Path(str(path).split("[")[0])
    if p.is_dir() or not p.parent.exists():
        return Path(p.name + ".rejects.jsonl")
    return beside(p, ".rejects.jsonl")


def _write_rejects(rejects: list[Reject], path: str | Path | None, src: object) -> Path | None:
    if not rejects:
        return None
    target = Path(path) if path else default_rejects_path(str(src))
    save_rejects(rejects, target)
    return target


@dataclass
class ConvertResult:
    n_rows: int
    n_written: int
    source_format: str
    target_format: str
    notes: list[str]
    n_rejected: int = 0
    rejects_path: Path | None = None


def convert(
    src: SpecLike,
    dst: str | Path,
    to: str,
    *,
    fmt: str | None = None,
    skip_invalid: bool = False,
    rejects: str | Path | None = None,
    file_type: str | None = None,
) -> ConvertResult:
    """Convert ``src`` (any source the loader reads) to format ``to``, row by row, into JSONL,
    a JSON array, Parquet or a save_to_disk folder (by ``dst``'s extension or ``file_type``);
    notes say what the target format could not hold."""
    stream = RecordStream(src, fmt, skip_invalid=skip_invalid)
    with _RejectSink(rejects, stream.path) as sink:
        notes = save_records(sink.records(stream), dst, to, file_type=file_type)
    assert stream.format is not None
    return ConvertResult(
        stream.n_rows, stream.n_records, stream.format, to, notes, sink.n, sink.written
    )


class _RejectSink:
    """Rejects appended to a file as they come (created only once there is one)."""

    def __init__(self, path: str | Path | None, src: str) -> None:
        self.target = Path(path) if path else default_rejects_path(src)
        self.n, self.kept = 0, list[Reject]()
        self.written: Path | None = None
        self._file: Any = None

    def records(self, stream: RecordStream) -> Iterator[Record]:
        """The records of ``stream``; its rejects are written as they pass."""
        for _, item in stream:
            if isinstance(item, Reject):
                self.add(item)
            else:
                yield item

    def add(self, item: Reject) -> None:
        """Write one reject (and keep the first ``_KEEP_REJECTS``)."""
        if self._file is None:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.target.open("w", encoding="utf-8")
            self.written = self.target
        self._file.write(json.dumps(item.to_dict(), ensure_ascii=False, default=str) + "\n")
        self.n += 1
        if len(self.kept) < _KEEP_REJECTS:
            self.kept.append(item)

    def __enter__(self) -> _RejectSink:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()


@dataclass
class ValidateResult:
    n_rows: int
    n_valid: int
    format: str
    kinds: dict[str, int]
    rejects: list[Reject] = field(default_factory=list)  # the first 100; all are in the file
    rejects_path: Path | None = None
    n_rejected: int = 0


def validate(
    src: SpecLike,
    *,
    fmt: str | None = None,
    skip_invalid: bool = False,
    rejects: str | Path | None = None,
) -> ValidateResult:
    """Check every row, streaming; without ``skip_invalid`` the first bad row raises
    DataFormatError."""
    stream = RecordStream(src, fmt, skip_invalid=skip_invalid)
    kinds: dict[str, int] = {}
    with _RejectSink(rejects, stream.path) as sink:
        for record in sink.records(stream):
            kind = "preference" if isinstance(record, PreferencePair) else "conversation"
            kinds[kind] = kinds.get(kind, 0) + 1
    assert stream.format is not None
    return ValidateResult(
        stream.n_rows, stream.n_records, stream.format, kinds, sink.kept, sink.written, sink.n
    )


@dataclass
class StatsResult:
    path: str
    format: str
    n_records: int
    n_conversations: int
    n_preference: int
    turns: dict[str, float]
    with_system: int
    tokens: dict[str, dict[str, float]]  # "total"/"prompt"/"response" -> describe() of lengths
    model: str | None
    # of with_system: rows without their own system prompt that get the template's default
    with_default_system: int = 0
    default_system: str | None = None  # the system prompt the template adds (None: none)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def stats(
    src: SpecLike,
    *,
    tokenizer: Any = None,
    template: str = "tokenizer",
    model: str | None = None,
    fmt: str | None = None,
) -> StatsResult:
    """Counts, turns per conversation, and token lengths (whole, prompt, trained) under a model.
    ``with_system`` counts the rows that get a system prompt: their own, or (with a tokenizer)
    the one the template adds by default (``default_system``, on ``with_default_system`` rows)."""
    check_template_name(template)
    loaded = load_records(src, fmt)
    convs = [
        r.chosen_conversation() if isinstance(r, PreferencePair) else r for r in loaded.records
    ]
    turns = [sum(1 for m in c.messages if m.role == "assistant") for c in convs]
    tokens: dict[str, dict[str, float]] = {}
    default = None
    if tokenizer is not None:
        tpl = get_template(template, tokenizer)
        default = default_system_prompt(tpl)
        totals, trained = [], []
        for c in tqdm(convs, desc="tokenize", unit="row", disable=len(convs) < 500):
            ex = encode_segments(segment_conversation(c, tpl), c, tokenizer)
            totals.append(len(ex.input_ids))
            trained.append(ex.n_trained)
        tokens = {
            "total": describe(totals),
            "response": describe(trained),
            "prompt": describe([a - b for a, b in zip(totals, trained, strict=False)]),
        }
    n_pref = sum(isinstance(r, PreferencePair) for r in loaded.records)
    own = sum(c.system is not None for c in convs)
    defaulted = len(convs) - own if default is not None else 0
    return StatsResult(
        loaded.source,
        loaded.format,
        len(loaded.records),
        len(convs) - n_pref,
        n_pref,
        describe(turns),
        own + defaulted,
        tokens,
        model,
        defaulted,
        default,
    )


@dataclass
class RenderResult:
    n_rows: int
    n_written: int
    n_truncated: int
    n_dropped_turns: int
    n_rejected: int
    rejects_path: Path | None


def render(
    src: SpecLike,
    dst: str | Path,
    tokenizer: Any,
    *,
    template: str = "tokenizer",
    max_seq_len: int | None = None,
    train_on: TrainOn = "all",
    fmt: str | None = None,
    skip_invalid: bool = False,
    rejects: str | Path | None = None,
) -> RenderResult:
    """Write per example: rendered text, input_ids, labels, and trained_text (what carries loss)."""
    loaded = load_records(src, fmt, skip_invalid=skip_invalid)
    tpl = get_template(template, tokenizer)
    rows, bad = [], list(loaded.rejects)
    truncated = dropped = 0
    for n, rec in enumerate(tqdm(loaded.records, desc="render", unit="row")):
        conv = rec.chosen_conversation() if isinstance(rec, PreferencePair) else rec
        row_no = loaded.row_numbers[n] if loaded.row_numbers else n + 1
        try:
            ex = tokenize_conversation(
                conv, tpl, tokenizer, max_seq_len=max_seq_len, train_on=train_on
            )
        except DataFormatError as e:
            if not skip_invalid:
                raise DataFormatError(
                    e.reason, path=loaded.source, row=row_no, field=e.field, fix=e.fix
                ) from e
            bad.append(Reject(loaded.source, row_no, e.field, e.reason, conv.to_chat(), e.fix))
            continue
        truncated += ex.truncated
        dropped += ex.dropped_turns
        rows.append(
            {
                "text": tokenizer.decode(ex.input_ids, skip_special_tokens=False),
                "input_ids": ex.input_ids,
                "labels": ex.labels,
                "trained_text": trained_text(ex, tokenizer),
                "truncated": ex.truncated,
                "dropped_turns": ex.dropped_turns,
            }
        )
    write_jsonl(rows, dst)
    rej_path = _write_rejects(bad, rejects, loaded.source)
    return RenderResult(loaded.n_rows, len(rows), truncated, dropped, len(bad), rej_path)


def conversations_of(records: list[Any]) -> list[Conversation]:
    """SFT view of loaded records (a preference pair trains on its chosen response)."""
    return [r.chosen_conversation() if isinstance(r, PreferencePair) else r for r in records]
