"""Human evaluation sheets: blinded side-by-side ratings of systems, and their analysis.

Export one sheet for the raters, showing every system's response to each prompt in a random order
that hides which system wrote which, and a separate key that un-blinds it; then import the filled
sheets::

    key = export_sheet(items, {"before": before, "after": after}, "eval/sheet.csv",
                       "eval/sheet.jsonl", seed=0)      # writes eval/sheet.key.json
    # each rater fills a copy of the sheet (ann.csv, bob.csv, ...) and never sees the key
    result = import_sheets(["eval/ann.csv", "eval/bob.csv"], key)
    print(result.format())

Sheet columns: ``item_id``, ``prompt``, then for each position k = 1..n_systems ``response_k``
("Response k") and one empty score column ``response_k_<criterion>`` per criterion, then
``comment``. A score is a whole number from 1 (worst) to 5 (best); an empty cell means not rated.
The order of the responses is shuffled per item with a seed drawn from ``(seed, item_id)``, so it
is reproducible and does not depend on the other items. The key (``<out_csv stem>.key.json``) maps
each item id to ``{position: system}``. The JSONL mirror holds the same rows, empty scores as null,
for raters who fill sheets with a script or a labelling tool.

The CSV is written for spreadsheets: UTF-8 with a byte-order mark (without one, Excel decodes
UTF-8 as the local code page and garbles non-ASCII text), every field quoted, rows ended by CRLF
(RFC 4180); newlines in a prompt or response stay inside their quoted field. Excel may still read
a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula and cuts cells at 32,767
characters: open the file with Data > From Text/CSV, or in LibreOffice or Google Sheets. Filled
sheets are read as UTF-8 with or without the mark, separated by commas, semicolons (what Excel
writes in some locales) or tabs; ``.jsonl`` sheets as JSONL. Scores such as ``4.0`` (what pandas
writes for a column with gaps) count as 4.

``import_sheets`` checks every score cell, un-blinds the ratings and reports, per criterion: mean,
std and number of ratings per system; per-item means; a paired comparison of every two systems on
the items both have a mean for (:func:`~instructkit.evaluate.stats.compare_paired`, diff = B - A in
the order the systems were exported); and inter-rater agreement, Krippendorff's (2011) alpha at the
ordinal and interval levels with units = (item, system) and one rater per sheet (the file stem, or
the value of a ``rater`` column).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import random
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from instructkit.errors import DataFormatError
from instructkit.evaluate.results import EvalResults, now, save_eval_results
from instructkit.evaluate.stats import PairedComparison, compare_paired, krippendorff_alpha
from instructkit.io import BadLine, read_rows, read_text, write_atomic, write_jsonl

__all__ = [
    "CRITERIA",
    "ALPHA_LEVELS",
    "Rating",
    "ScoreStats",
    "SystemComparison",
    "HumanEvalResult",
    "export_sheet",
    "export_run_sheet",
    "load_run_responses",
    "import_sheets",
    "human_results",
    "parse_sheet_cell",
    "summarize_ratings",
]

CRITERIA = ("helpfulness", "accuracy", "harmlessness", "coherence")
ALPHA_LEVELS: tuple[Literal["ordinal"], Literal["interval"]] = ("ordinal", "interval")
_KEY_KIND = "instructkit-human-eval-key"
_CRITERION = re.compile(r"[a-z][a-z0-9_]*")
_SCORE_COLUMN = re.compile(r"response_(\d+)(?:_(.+))?")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")
_DELIMITERS = (",", ";", "\t")
_WORKBOOKS = (".xlsx", ".xls", ".ods", ".numbers")
_SCORE_FIX = (
    "write a whole number from 1 (worst) to 5 (best), or leave the cell empty if not rated."
)
_KEY_FIX = "pass the .key.json that export_sheet wrote with this sheet."


@dataclass(frozen=True)
class Rating:
    """One un-blinded score cell; ``score`` is None where the rater left it empty."""

    item_id: str
    system: str
    criterion: str
    rater: str
    score: int | None


@dataclass(frozen=True)
class ScoreStats:
    """Mean and sample standard deviation (n - 1) of ``n`` ratings; None when undefined."""

    mean: float | None
    std: float | None
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n}


@dataclass(frozen=True)
class SystemComparison:
    """Paired comparison of two systems on one criterion (None when no item has both means)."""

    criterion: str
    system_a: str
    system_b: str
    result: PairedComparison | None

    def to_dict(self) -> dict[str, Any]:
        head = {"criterion": self.criterion, "system_a": self.system_a, "system_b": self.system_b}
        return {**head, **(self.result.to_dict() if self.result else {"n": 0})}


@dataclass(frozen=True)
class HumanEvalResult:
    """Scores per system and criterion, per-item means, comparisons and rater agreement.

    ``scores[system][criterion]``; ``item_means[criterion][system][item_id]`` (None: no rating);
    ``agreement[criterion][level]`` is Krippendorff's alpha (None when undefined, see ``notes``).
    """

    systems: tuple[str, ...]
    criteria: tuple[str, ...]
    raters: tuple[str, ...]
    item_ids: tuple[str, ...]
    scores: dict[str, dict[str, ScoreStats]]
    item_means: dict[str, dict[str, dict[str, float | None]]]
    comparisons: tuple[SystemComparison, ...]
    agreement: dict[str, dict[str, float | None]]
    n_cells: int
    n_missing: int
    missing_by_rater: dict[str, int]
    ratings: tuple[Rating, ...] = field(repr=False, default=())
    comments: tuple[dict[str, str], ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The summary, JSON-ready (the individual ratings are in ``ratings``)."""
        return {
            "systems": list(self.systems),
            "criteria": list(self.criteria),
            "raters": list(self.raters),
            "n_items": len(self.item_ids),
            "n_cells": self.n_cells,
            "n_missing": self.n_missing,
            "missing_by_rater": dict(self.missing_by_rater),
            "scores": {
                s: {c: st.to_dict() for c, st in by_c.items()} for s, by_c in self.scores.items()
            },
            "item_means": self.item_means,
            "comparisons": [c.to_dict() for c in self.comparisons],
            "agreement": self.agreement,
            "comments": list(self.comments),
            "notes": list(self.notes),
        }

    def format(self) -> str:
        """Plain-text tables for the terminal."""
        lines = [
            f"Human evaluation: {len(self.item_ids)} items, {len(self.systems)} systems, "
            f"{len(self.raters)} raters ({', '.join(self.raters)}); "
            f"{self.n_missing} of {self.n_cells} score cells empty",
            "",
            "Scores (1-5)",
        ]
        rows = [["criterion", "system", "mean", "std", "n"]]
        for c in self.criteria:
            for s in self.systems:
                st = self.scores[s][c]
                rows.append([c, s, _num(st.mean), _num(st.std), str(st.n)])
        lines += _table(rows, text_columns=2)
        if self.comparisons:
            lines += ["", "Paired comparisons on per-item means (diff = B - A)"]
            lines += _table(_comparison_rows(self.comparisons), text_columns=3)
        lines += ["", "Agreement: Krippendorff's alpha, units = item x system"]
        rows = [["criterion", *ALPHA_LEVELS]]
        rows += [[c, *(_num(self.agreement[c][lv]) for lv in ALPHA_LEVELS)] for c in self.criteria]
        lines += _table(rows, text_columns=1)
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _num(x: float | None, sign: str = "") -> str:
    return "-" if x is None else f"{x:{sign}.3f}"


def _comparison_rows(comparisons: Iterable[SystemComparison]) -> list[list[str]]:
    rows = [["criterion", "A", "B", "n", "diff", "CI", "p"]]
    for cmp in comparisons:
        r = cmp.result
        if r is None:
            rows.append([cmp.criterion, cmp.system_a, cmp.system_b, "0", "-", "-", "-"])
            continue
        ci = f"{r.ci_level:.0%} [{_num(r.ci_low, '+')}, {_num(r.ci_high, '+')}]"
        diff, p = _num(r.diff, "+"), _num(r.p_permutation)
        rows.append([cmp.criterion, cmp.system_a, cmp.system_b, str(r.n), diff, ci, p])
    return rows


def _table(rows: list[list[str]], text_columns: int) -> list[str]:
    """Align columns: the first ``text_columns`` to the left, the numbers to the right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(w) if i < text_columns else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


# ------------------------------------------------------------------------------------- export


def export_sheet(
    items: Sequence[Mapping[str, Any]],
    systems: Mapping[str, Sequence[str]],
    out_csv: str | Path,
    out_jsonl: str | Path | None = None,
    *,
    seed: int = 0,
    criteria: Sequence[str] = CRITERIA,
    overwrite_key: bool = False,
) -> Path:
    """Write the blinded sheet (CSV, and JSONL if ``out_jsonl``) and its key; return the key path.

    ``items`` are ``{"id", "prompt"}`` dicts; ``systems`` maps each system's name to its responses,
    one per item in the same order. The key goes to ``<out_csv stem>.key.json``; keep it from the
    raters. An existing key with other content is kept unless ``overwrite_key``: the sheets
    already handed out can only be un-blinded with it.
    """
    criteria = _check_criteria(criteria)
    ids, prompts = _check_items(items)
    responses = _check_systems(systems, ids)
    names = list(responses)
    orders = [_blind_order(names, seed, item_id) for item_id in ids]
    header = _header(len(names), criteria)
    rows = []
    for i, (item_id, prompt, order) in enumerate(zip(ids, prompts, orders, strict=True)):
        row: dict[str, Any] = {"item_id": item_id, "prompt": prompt}
        for k, system in enumerate(order, start=1):
            row[f"response_{k}"] = responses[system][i]
            row.update({f"response_{k}_{c}": None for c in criteria})
        rows.append({**row, "comment": ""})
    key = {
        "kind": _KEY_KIND,
        "version": 1,
        "seed": seed,
        "systems": names,
        "criteria": list(criteria),
        "positions": len(names),
        "items": {
            i: {str(k): s for k, s in enumerate(o, start=1)}
            for i, o in zip(ids, orders, strict=True)
        },
    }
    key_path = Path(out_csv).with_suffix(".key.json")
    _write_key(key_path, key, overwrite_key)
    _write_csv(out_csv, header, rows)
    if out_jsonl is not None:
        write_jsonl(rows, out_jsonl)
    return key_path


def load_run_responses(
    per_item: str | Path,
) -> tuple[list[dict[str, str]], dict[str, list[str]]]:
    """Items (``{"id": "task/id", "prompt"}``) and each system's responses in item order, from
    the per-item rows ``eval run`` writes (``<out stem>.per_item.jsonl``)."""
    prompts: dict[str, str] = {}
    answers: dict[str, dict[str, str]] = {}
    for n, r in read_rows(per_item):
        if not isinstance(r, dict) or not {"task", "id", "system", "response"} <= set(r):
            raise DataFormatError(
                "expected task, id, system, prompt and response",
                path=per_item,
                row=n,
                fix="pass the per-item rows written by `eval run` (<out stem>.per_item.jsonl).",
            )
        key = f"{r['task']}/{r['id']}"
        prompts[key] = r.get("prompt", "")
        answers.setdefault(str(r["system"]), {})[key] = r["response"]
    items = [{"id": k, "prompt": p} for k, p in prompts.items()]
    return items, {s: [a.get(it["id"], "") for it in items] for s, a in answers.items()}


def export_run_sheet(
    per_item: str | Path, out_csv: str | Path, *, seed: int = 0
) -> tuple[Path, int, int]:
    """Export the blinded sheet of an ``eval run``'s per-item rows, with a JSONL mirror beside
    it; returns (key path, number of items, number of systems)."""
    items, systems = load_run_responses(per_item)
    key = export_sheet(items, systems, out_csv, Path(out_csv).with_suffix(".jsonl"), seed=seed)
    return key, len(items), len(systems)


def _check_criteria(criteria: Sequence[str]) -> tuple[str, ...]:
    names = (criteria,) if isinstance(criteria, str) else tuple(criteria)
    bad = [c for c in names if not isinstance(c, str) or not _CRITERION.fullmatch(c)]
    if not names or bad or len(set(names)) != len(names):
        raise ValueError(
            f"criteria must be distinct lower-case names such as 'helpfulness' (letters, digits, "
            f"_), at least one; got {list(names)!r}"
        )
    return names


def _check_items(items: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    ids: dict[str, int] = {}  # id -> row
    prompts = []
    for row, item in enumerate(items, start=1):
        if not isinstance(item, Mapping) or "id" not in item or "prompt" not in item:
            raise DataFormatError(
                "an item must be a dict with 'id' and 'prompt'.",
                row=row,
                fix='pass items as {"id": ..., "prompt": ...} dicts.',
            )
        item_id = _export_id(item["id"], row)
        if item_id in ids:
            raise DataFormatError(
                f"item id {item_id!r} repeats the id of item {ids[item_id]}.",
                row=row,
                field="id",
                fix="give every item a unique id.",
            )
        if not isinstance(item["prompt"], str):
            raise DataFormatError(
                "the prompt is not text.", row=row, field="prompt", fix="pass the prompt as text."
            )
        ids[item_id] = row
        prompts.append(item["prompt"])
    if not ids:
        raise DataFormatError("there are no items to rate.", fix="pass at least one item.")
    return list(ids), prompts


def _export_id(value: object, row: int) -> str:
    """An item id as text; raters' spreadsheets trim spaces, so ids must not have any around."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not text or text != text.strip():
        raise DataFormatError(
            f"item id {value!r} is not a usable id.",
            row=row,
            field="id",
            fix="use a non-empty string or integer without surrounding spaces.",
        )
    return text


def _check_systems(systems: Mapping[str, Sequence[str]], ids: list[str]) -> dict[str, list[str]]:
    if not systems:
        raise DataFormatError("there are no systems to rate.", fix="pass {name: responses}.")
    out = {}
    for name, responses in systems.items():
        if not isinstance(name, str) or not name.strip():
            raise DataFormatError(
                f"system name {name!r} is not a name.", fix="name systems with non-empty strings."
            )
        texts = [responses] if isinstance(responses, str) else list(responses)
        if len(texts) != len(ids):
            raise DataFormatError(
                f"system {name!r} has {len(texts)} responses for {len(ids)} items.",
                field=name,
                fix="pass one response per item, in the order of the items.",
            )
        for row, text in enumerate(texts, start=1):
            if not isinstance(text, str):
                raise DataFormatError(
                    f"the response of system {name!r} to item {ids[row - 1]!r} is "
                    f"{type(text).__name__}, not text.",
                    row=row,
                    field=name,
                    fix="pass text; an empty string for a missing response.",
                )
        out[name] = texts
    return out


def _blind_order(systems: list[str], seed: int, item_id: str) -> list[str]:
    """The systems in the order shown for one item, shuffled with a seed from (seed, item id)."""
    # sha256, not hash(): str hashes change between Python runs.
    digest = hashlib.sha256(f"{seed}\x00{item_id}".encode()).digest()
    order = list(systems)
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return order


def _header(n_positions: int, criteria: Sequence[str]) -> list[str]:
    header = ["item_id", "prompt"]
    for k in range(1, n_positions + 1):
        header += [f"response_{k}", *(f"response_{k}_{c}" for c in criteria)]
    return [*header, "comment"]


def _write_csv(path: str | Path, header: list[str], rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(["" if row[col] is None else row[col] for col in header] for row in rows)
    write_atomic(path, ["\ufeff", buf.getvalue()])  # BOM: Excel then reads the file as UTF-8


def _write_key(path: Path, key: dict[str, Any], overwrite: bool) -> None:
    text = json.dumps(key, ensure_ascii=False, indent=2) + "\n"
    if path.exists() and not overwrite and path.read_text("utf-8", "replace") != text:
        raise DataFormatError(
            "a different un-blinding key is already there; the sheets exported with it could not "
            "be un-blinded any more.",
            path=path,
            fix="export to another path, move the old key away, or pass overwrite_key=True.",
        )
    write_atomic(path, [text])


# ------------------------------------------------------------------------------------- import


@dataclass(frozen=True)
class _Key:
    path: Path
    systems: tuple[str, ...]
    criteria: tuple[str, ...]
    positions: int
    items: dict[str, dict[int, str]]  # item id -> position -> system


def import_sheets(
    paths: Sequence[str | Path],
    key_path: str | Path,
    *,
    n_resamples: int = 10000,
    seed: int = 0,
    out: str | Path | None = None,
) -> HumanEvalResult:
    """Read filled sheets (CSV or JSONL), check every score, un-blind them and summarise.

    One rater per file (its stem), or per value of a ``rater`` column. Every rater must have one
    row for each item of the key. ``n_resamples`` and ``seed`` go to ``compare_paired``. With
    ``out``, the summary is also written as results JSON (:func:`human_results`).
    """
    key = _load_key(Path(key_path))
    if not paths:
        raise DataFormatError("there are no sheets to import.", fix="pass the filled sheets.")
    ratings: list[Rating] = []
    comments: list[dict[str, str]] = []
    owner: dict[str, Path] = {}
    for path in map(Path, paths):
        sheet_ratings, sheet_comments = _read_sheet(path, key)
        for rater in dict.fromkeys(r.rater for r in sheet_ratings):
            if rater in owner:
                raise DataFormatError(
                    f"rater {rater!r} already has a sheet: {owner[rater]}.",
                    path=path,
                    fix="give each rater one sheet, with its own file name or 'rater' value.",
                )
            owner[rater] = path
        ratings += sheet_ratings
        comments += sheet_comments
    result = summarize_ratings(
        ratings, systems=key.systems, comments=comments, n_resamples=n_resamples, seed=seed
    )
    if out is not None:
        save_eval_results(human_results(result), out)
    return result


def human_results(result: HumanEvalResult, title: str = "Human evaluation") -> EvalResults:
    """The ratings as results: a row per criterion (mean rating 1-5 per system; the paired
    comparison of the first two systems), per-item means of the first criterion, and the
    agreement (ordinal alpha of the first criterion) in the human section."""
    systems = list(result.systems)
    first = result.criteria[0]
    tasks = {}
    for c in result.criteria:
        comparison = next(
            (x.result for x in result.comparisons if x.criterion == c and x.result), None
        )
        scores = {s: result.scores[s][c].mean for s in systems}
        if comparison is not None:  # the comparison's means are over items both systems have
            scores |= {systems[0]: comparison.mean_a, systems[1]: comparison.mean_b}
        tasks[c] = {
            "metric": "rating 1-5",
            "n": comparison.n if comparison else len(result.item_ids),
            "scores": scores,
            "comparison": comparison.to_dict() if comparison else None,
        }
    per_item = [
        {"id": i, "task": first, "scores": {s: result.item_means[first][s][i] for s in systems}}
        for i in result.item_ids
    ]
    human = {
        "alpha": result.agreement[first]["ordinal"],
        "level": "ordinal",
        "n_items": len(result.item_ids),
        "n_raters": len(result.raters),
        "metric": f"{first}, rating 1-5",
        "scores": {s: result.scores[s][first].mean for s in systems},
    }
    return EvalResults.model_validate(
        {
            "title": title,
            "created": now(),
            "systems": systems,
            "tasks": tasks,
            "per_item": per_item,
            "human": human,
        }  # fmt: skip
    )


def _load_key(path: Path) -> _Key:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataFormatError(f"cannot read the key: {e}.", path=path, fix=_KEY_FIX) from e
    try:
        key = _parse_key(path, data)
    except (TypeError, KeyError, ValueError, AttributeError):
        key = None
    if key is None:
        raise DataFormatError(
            "this is not an un-blinding key written by export_sheet.", path=path, fix=_KEY_FIX
        )
    return key


def _parse_key(path: Path, data: Any) -> _Key | None:
    """The key in ``data``, or None if it is not one (or raises TypeError, KeyError, ...)."""
    systems = tuple(str(s) for s in data["systems"])
    positions = int(data["positions"])
    items = {
        str(i): {int(k): str(s) for k, s in by_pos.items()} for i, by_pos in data["items"].items()
    }
    order = list(range(1, positions + 1))
    if any(sorted(m) != order or sorted(m.values()) != sorted(systems) for m in items.values()):
        return None  # every item must show each system at exactly one position
    if data["kind"] != _KEY_KIND or not items:
        return None
    return _Key(path, systems, _check_criteria(data["criteria"]), positions, items)


def _read_sheet(path: Path, key: _Key) -> tuple[list[Rating], list[dict[str, str]]]:
    """The un-blinded ratings and the comments of one sheet, every cell checked."""
    header, records = _read_table(path)
    _check_header(path, header, key)
    seen: dict[str, dict[str, int]] = defaultdict(dict)  # rater -> item id -> data row
    ratings: list[Rating] = []
    comments: list[dict[str, str]] = []
    for data_row, record in records:
        item_id = _item_id(path, data_row, record, key)
        rater = _text(record.get("rater")) or path.stem
        if item_id in seen[rater]:
            raise DataFormatError(
                f"item {item_id!r} has two rows for rater {rater!r}: data rows "
                f"{seen[rater][item_id]} and {data_row}.",
                path=path,
                row=data_row,
                field="item_id",
                fix="keep one row per item and rater.",
            )
        seen[rater][item_id] = data_row
        ratings += _row_ratings(path, data_row, record, item_id, rater, key)
        if comment := _text(record.get("comment")):
            comments.append({"rater": rater, "item_id": item_id, "comment": comment})
    for rater, rows in seen.items():
        missing = [i for i in key.items if i not in rows]
        if missing:
            raise DataFormatError(
                f"rater {rater!r} has no row for {len(missing)} of the key's {len(key.items)} "
                f"items: {', '.join(map(repr, missing[:5]))}{' ...' if len(missing) > 5 else ''}.",
                path=path,
                fix="import the sheet with the key exported with it, and keep every row "
                "(leave the scores of an item empty if it was not rated).",
            )
    return ratings, comments


def _read_table(path: Path) -> tuple[list[str], list[tuple[int, Mapping[str, Any]]]]:
    """Header and (1-based data row, record) pairs of a CSV or JSONL sheet."""
    suffix = path.suffix.lower()
    if suffix in _WORKBOOKS:
        raise DataFormatError(
            "this is a spreadsheet workbook, not a CSV file.",
            path=path,
            fix="save the sheet as 'CSV UTF-8' and import the .csv file.",
        )
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _read_jsonl_table(path)
    # newline="": keep \r\n inside cells
    text = read_text(path, newline="", utf8_fix=_CSV_UTF8_FIX)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    try:
        table = list(reader)
    except csv.Error as e:
        raise DataFormatError(
            f"broken CSV near line {reader.line_num}: {e}.",
            path=path,
            fix="re-save the sheet as 'CSV UTF-8' from the spreadsheet.",
        ) from e
    if not table:
        raise DataFormatError("the file is empty.", path=path, fix="point at a filled sheet.")
    header = [h.strip() for h in table[0]]
    records: list[tuple[int, Mapping[str, Any]]] = [
        # Short rows leave their last cells empty, as a spreadsheet does.
        (n, dict(zip(header, cells, strict=False)))
        for n, cells in enumerate(table[1:], start=1)
        if any(c.strip() for c in cells)  # not the blank rows spreadsheets leave at the end
    ]
    return header, records


_CSV_UTF8_FIX = "save the sheet as 'CSV UTF-8' (Excel: File > Save As > CSV UTF-8)."


def _delimiter(text: str) -> str:
    """The separator under which the first line has an item_id column; comma by default."""
    first = text.split("\n", 1)[0]
    for delimiter in _DELIMITERS:
        cells = next(csv.reader([first], delimiter=delimiter), [])
        if "item_id" in (c.strip() for c in cells):
            return delimiter
    return ","


def _read_jsonl_table(path: Path) -> tuple[list[str], list[tuple[int, Mapping[str, Any]]]]:
    records = []
    for data_row, (line, value) in enumerate(read_rows(path), start=1):
        if isinstance(value, BadLine) or not isinstance(value, Mapping):
            why = value.message if isinstance(value, BadLine) else "not a JSON object"
            raise DataFormatError(
                f"line {line} is {why}.", path=path, row=data_row, fix="one JSON object per line."
            )
        records.append((data_row, value))
    header = list(dict.fromkeys(k for _, value in records for k in value))
    return header, records


def _check_header(path: Path, header: list[str], key: _Key) -> None:
    twice = [h for i, h in enumerate(header) if h and h in header[:i]]
    if twice:
        raise DataFormatError(
            "the header names this column twice.",
            path=path,
            field=twice[0],
            fix="rename or delete one of the two columns.",
        )
    scores = [f"response_{k}_{c}" for k in range(1, key.positions + 1) for c in key.criteria]
    missing = [c for c in ["item_id", *scores] if c not in header]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataFormatError(
            f"the header row has no column '{missing[0]}'{more}.",
            path=path,
            field=missing[0],
            fix="keep the header row of the exported sheet; put the column back (its scores may "
            "stay empty).",
        )
    for column in header:
        m = _SCORE_COLUMN.fullmatch(column)
        if m and (not 1 <= int(m[1]) <= key.positions or m[2] not in (None, *key.criteria)):
            raise DataFormatError(
                f"the column is not in the key, which has {key.positions} responses per item and "
                f"the criteria {', '.join(key.criteria)}.",
                path=path,
                field=column,
                fix=_KEY_FIX,
            )


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _item_id(path: Path, data_row: int, record: Mapping[str, Any], key: _Key) -> str:
    value = record.get("item_id")
    item_id = _text(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if item_id not in key.items:
        raise DataFormatError(
            f"item_id {value!r} in data row {data_row} is not an item of the key {key.path}.",
            path=path,
            row=data_row,
            field="item_id",
            fix="keep the item ids of the exported sheet (spreadsheets may turn an id such as "
            "'007' into 7: type it as text), and import the sheet with its own key.",
        )
    return item_id


def _row_ratings(
    path: Path, data_row: int, record: Mapping[str, Any], item_id: str, rater: str, key: _Key
) -> list[Rating]:
    out = []
    for k, system in sorted(key.items[item_id].items()):
        for criterion in key.criteria:
            column = f"response_{k}_{criterion}"
            try:
                score = parse_sheet_cell(record.get(column))
            except ValueError as e:
                raise DataFormatError(
                    f"score {record.get(column)!r} {e} (data row {data_row}, item {item_id!r}).",
                    path=path,
                    row=data_row,
                    field=column,
                    fix=_SCORE_FIX,
                ) from None
            out.append(Rating(item_id, system, criterion, rater, score))
    return out


def parse_sheet_cell(value: object) -> int | None:
    """A 1-5 score from a cell; None for an empty cell. ValueError says what else is wrong.

    Text and JSON numbers are accepted; so are whole numbers written as decimals ("4.0").
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None  # how pandas and friends write an empty cell
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = float(value.strip())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ValueError("is not a number")
    if not number.is_integer():
        raise ValueError("is not a whole number")
    if not 1 <= number <= 5:
        raise ValueError("is outside the scale 1-5")
    return int(number)


# ---------------------------------------------------------------------------------- summaries


def summarize_ratings(
    ratings: Iterable[Rating],
    *,
    systems: Sequence[str] | None = None,
    comments: Iterable[Mapping[str, str]] = (),
    n_resamples: int = 10000,
    seed: int = 0,
) -> HumanEvalResult:
    """Aggregate un-blinded ratings (see :class:`HumanEvalResult`).

    Systems are compared in the order of ``systems`` (default: order of appearance), criteria,
    raters and items keep their order of appearance.
    """
    rows = tuple(ratings)
    names = tuple(systems) if systems is not None else _ordered(r.system for r in rows)
    criteria = _ordered(r.criterion for r in rows)
    raters = _ordered(r.rater for r in rows)
    items = _ordered(r.item_id for r in rows)
    cells: dict[tuple[str, str, str, str], int | None] = {}
    for r in rows:
        where = (r.criterion, r.system, r.item_id, r.rater)
        if where in cells:
            raise ValueError(f"rater {r.rater!r} rated {where[:3]} twice")
        cells[where] = r.score
    by_item: dict[tuple[str, str, str], list[int]] = defaultdict(list)  # (c, s, i) -> scores
    for (c, s, i, _), score in cells.items():
        if score is not None:
            by_item[c, s, i].append(score)
    scores = {
        s: {c: _stats([x for i in items for x in by_item[c, s, i]]) for c in criteria}
        for s in names
    }
    item_means = {
        c: {s: {i: _mean(by_item[c, s, i]) for i in items} for s in names} for c in criteria
    }
    comparisons, notes = _compare_systems(item_means, names, items, n_resamples, seed)
    agreement, alpha_notes = _agreement(cells, criteria, names, items, raters)
    missing = {rater: sum(r.score is None for r in rows if r.rater == rater) for rater in raters}
    return HumanEvalResult(
        systems=names,
        criteria=criteria,
        raters=raters,
        item_ids=items,
        scores=scores,
        item_means=item_means,
        comparisons=comparisons,
        agreement=agreement,
        n_cells=len(rows),
        n_missing=sum(missing.values()),
        missing_by_rater=missing,
        ratings=rows,
        comments=tuple(dict(c) for c in comments),
        notes=(*notes, *alpha_notes),
    )


def _ordered(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _mean(scores: list[int]) -> float | None:
    return statistics.fmean(scores) if scores else None


def _stats(scores: list[int]) -> ScoreStats:
    std = statistics.stdev(scores) if len(scores) > 1 else None
    return ScoreStats(mean=_mean(scores), std=std, n=len(scores))


def _compare_systems(
    item_means: dict[str, dict[str, dict[str, float | None]]],
    systems: tuple[str, ...],
    items: tuple[str, ...],
    n_resamples: int,
    seed: int,
) -> tuple[tuple[SystemComparison, ...], list[str]]:
    """compare_paired on per-item means for every two systems, over items both have."""
    out: list[SystemComparison] = []
    notes: list[str] = []
    for criterion, means in item_means.items():
        for i, a in enumerate(systems):
            for b in systems[i + 1 :]:
                pairs = [(means[a][j], means[b][j]) for j in items]
                pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
                result = None
                if pairs:
                    xs, ys = zip(*pairs, strict=True)
                    result = compare_paired(xs, ys, n_resamples=n_resamples, seed=seed)
                else:
                    notes.append(f"{criterion}: no item has ratings of both {a} and {b}.")
                out.append(SystemComparison(criterion, a, b, result))
    return tuple(out), notes


def _agreement(
    cells: Mapping[tuple[str, str, str, str], int | None],
    criteria: tuple[str, ...],
    systems: tuple[str, ...],
    items: tuple[str, ...],
    raters: tuple[str, ...],
) -> tuple[dict[str, dict[str, float | None]], list[str]]:
    """Krippendorff's alpha per criterion and level: units (item, system) x raters."""
    out: dict[str, dict[str, float | None]] = {}
    if len(raters) < 2:
        note = f"agreement needs at least 2 raters, got {len(raters)}; alpha not computed."
        return {c: dict.fromkeys(ALPHA_LEVELS) for c in criteria}, [note]
    notes: list[str] = []
    for c in criteria:
        matrix = [[cells.get((c, s, i, r)) for r in raters] for i in items for s in systems]
        out[c] = {}
        why: dict[str, str] = {}
        for level in ALPHA_LEVELS:
            try:
                out[c][level] = float(krippendorff_alpha(matrix, level=level))
            except ValueError as e:
                out[c][level], why[level] = None, str(e)
        if len(set(why.values())) == 1 and len(why) == len(ALPHA_LEVELS):
            notes.append(f"{c}: {next(iter(why.values()))}")  # one reason for every level
        else:
            notes += [f"{c} ({level} alpha): {reason}" for level, reason in why.items()]
    return out, notes
