"""Paired comparison of two per-item score files: ``instructkit eval compare A.jsonl B.jsonl``.

Each file holds one JSON object per item with an id field (``key``; default ``id``) and a
numeric score field (``field``; default ``score``). Both may be dotted paths into nested
objects: ``--field scores.exact_match`` reads ``eval run``'s per-item rows,
``--key key --field strict.follow_all_instructions`` reads ``eval ifeval -o`` rows (true/false
count as 1/0). A row with a ``task`` is keyed by ``task/id`` (ids repeat across tasks); a
``group`` field (or else ``task``) gives per-group results as well. A file that holds the rows
of several systems (``eval run`` with two) needs ``system`` to choose one. Items are matched by
id: an id present in only one file, a duplicate id, or a missing or non-numeric score is an
error naming the file, row, item and field, or with ``skip_invalid`` is written to the rejects
list and counted. The statistics are those of :mod:`instructkit.evaluate.stats`;
:func:`compare_results` turns the outcome into an
:class:`~instructkit.evaluate.results.EvalResults` (``eval compare -o results.json``), which
``eval report`` reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructkit.data.formats import Reject
from instructkit.errors import DataFormatError
from instructkit.evaluate.results import EvalResults, now, save_eval_results
from instructkit.evaluate.stats import PairedComparison, compare_by_group
from instructkit.io import BadLine, read_rows

__all__ = ["CompareResult", "load_scores", "compare_files", "compare_results", "field_value"]

_ABSENT: Any = object()


@dataclass
class CompareResult:
    comparisons: dict[str, PairedComparison]  # "all" first, then groups
    n_a: int
    n_b: int
    rejects: list[Reject] = field(default_factory=list)
    names: tuple[str, str] = ("A", "B")
    field_name: str = "score"
    items: list[tuple[str, str, float, float]] = field(default_factory=list)  # id, group, a, b

    def to_dict(self) -> dict[str, Any]:
        return {
            "comparisons": {k: v.to_dict() for k, v in self.comparisons.items()},
            "n_a": self.n_a,
            "n_b": self.n_b,
            "n_rejected": len(self.rejects),
        }

    def format(self, name_a: str = "A", name_b: str = "B") -> str:
        head = (
            f"{'items':<12}{'n':>5}{name_a:>9}{name_b:>9}{'diff':>9}{'95% CI':>20}"
            f"{'p perm':>9}{'p McNemar':>11}"
        )
        lines = [head]
        for g, c in self.comparisons.items():
            mc = "-" if c.p_mcnemar is None else f"{c.p_mcnemar:.4f}"
            ci = f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]"
            lines.append(
                f"{g:<12}{c.n:>5}{c.mean_a:>9.4f}{c.mean_b:>9.4f}{c.diff:>+9.4f}"
                f"{ci:>20}{c.p_permutation:>9.4f}{mc:>11}"
            )
        return "\n".join(lines)


def field_value(row: dict[str, Any], dotted: str) -> Any:
    """``row["a"]["b"]`` for ``"a.b"``; a key that holds the dots itself wins."""
    if dotted in row:
        return row[dotted]
    node: Any = row
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _leaves(row: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in row.items():
        name = f"{prefix}{k}"
        out += _leaves(v, name + ".") if isinstance(v, dict) and v else [name]
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _absent(row: dict[str, Any], name: str, flag: str) -> str:
    fields = _leaves(row)
    shown = ", ".join(fields[:12]) + (" ..." if len(fields) > 12 else "")
    return f"has no field '{name}' (fields present: {shown}); choose it with {flag}"


def _bad(
    path: Path,
    row: int,
    item: object,
    fld: str | None,
    reason: str,
    fix: str,
    raw: object,
    skip: bool,
    rejects: list[Reject],
) -> None:
    where = f"item {item!r}: " if item is not None else ""
    if not skip:
        raise DataFormatError(
            where + reason,
            path=path,
            row=row,
            field=fld,
            fix=fix + " Or pass --skip-invalid to write such rows to a rejects file.",
        )
    rejects.append(Reject(str(path), row, fld, where + reason, raw))


def _systems_of(rows: list[tuple[int, Any]]) -> list[str]:
    return list(
        dict.fromkeys(str(r["system"]) for _, r in rows if isinstance(r, dict) and "system" in r)
    )


def _pick_system(
    path: Path, rows: list[tuple[int, Any]], system: str | None
) -> list[tuple[int, Any]]:
    """The rows of ``system``; a file of several systems must say which one."""
    systems = _systems_of(rows)
    if system is None:
        if len(systems) > 1:
            raise DataFormatError(
                f"the file holds the rows of {len(systems)} systems ({', '.join(systems)}).",
                path=path,
                field="system",
                fix="choose one with --a-system / --b-system NAME (system_a=, system_b=).",
            )
        return rows
    if system not in systems:
        raise DataFormatError(
            f"no row of system {system!r} (systems in the file: {', '.join(systems) or 'none'}).",
            path=path,
            field="system",
            fix="pass one of the systems the file holds.",
        )
    return [(n, r) for n, r in rows if isinstance(r, dict) and r.get("system") == system]


class _Bad(Exception):
    def __init__(self, item: object, fld: str | None, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.item, self.fld, self.reason, self.fix = item, fld, reason, fix


def _item_score(row: Any, row_no: int, key: str, field_name: str) -> tuple[str, float]:
    """(item id, score) of one row; _Bad says what is wrong with it."""
    if isinstance(row, BadLine) or not isinstance(row, dict):
        raise _Bad(None, None, "not a JSON object", "write one object per line.")
    item = field_value(row, key)
    if item is _ABSENT:
        raise _Bad(
            None, key, f"row {row_no} " + _absent(row, key, "--key"), "give every row an id."
        )
    if not isinstance(item, (str, int)) or isinstance(item, bool):
        fix = f"give every row a string or integer '{key}' (or choose the id field with --key)."
        raise _Bad(None, key, f"missing or invalid id {item!r}", fix)
    item_id = f"{row['task']}/{item}" if "task" in row and key == "id" else str(item)
    score = field_value(row, field_name)
    if score is _ABSENT:
        reason = f"row {row_no} " + _absent(row, field_name, "--field")
        numeric = [f for f in _leaves(row) if f != key and _is_number(field_value(row, f))]
        fix = (
            f"pass --field {numeric[0]}" if numeric else f"give every row a numeric '{field_name}'"
        )
        raise _Bad(item, field_name, reason, fix + ".")
    if isinstance(score, bool):
        score = float(score)
    if not isinstance(score, (int, float)) or not math.isfinite(score):
        fix = f"give every row a numeric '{field_name}' (or choose it with --field)."
        raise _Bad(item, field_name, f"score {score!r} is not a finite number", fix)
    return item_id, float(score)


def load_scores(
    path: str | Path,
    *,
    key: str = "id",
    field_name: str = "score",
    skip_invalid: bool = False,
    system: str | None = None,
) -> tuple[dict[str, tuple[float, str | None]], list[Reject]]:
    """``{item id: (score, group)}`` from a JSONL/JSON file, validated row by row."""
    path = Path(path)
    out: dict[str, tuple[float, str | None]] = {}
    rejects: list[Reject] = []
    for row_no, row in _pick_system(path, read_rows(path), system):
        try:
            item, score = _item_score(row, row_no, key, field_name)
            if item in out:
                raise _Bad(field_value(row, key), key, "duplicate id", "keep one row per item.")
        except _Bad as e:
            raw = getattr(row, "text", row)
            _bad(path, row_no, e.item, e.fld, e.reason, e.fix, raw, skip_invalid, rejects)
            continue
        group = row.get("group", row.get("task"))
        out[item] = (score, None if group is None else str(group))
    return out, rejects


def compare_files(
    path_a: str | Path,
    path_b: str | Path,
    *,
    key: str = "id",
    field_name: str = "score",
    skip_invalid: bool = False,
    seed: int = 0,
    n_resamples: int = 10000,
    system_a: str | None = None,
    system_b: str | None = None,
    out: str | Path | None = None,
) -> CompareResult:
    """Pair the items of two score files by id and compare them (B minus A); with ``out``,
    also write the comparison as results JSON (:func:`compare_results`)."""
    opts = {"key": key, "field_name": field_name, "skip_invalid": skip_invalid}
    a, rej_a = load_scores(path_a, system=system_a, **opts)  # type: ignore[arg-type]
    b, rej_b = load_scores(path_b, system=system_b, **opts)  # type: ignore[arg-type]
    rejects = rej_a + rej_b
    for mine, other, p, q in ((a, b, path_a, path_b), (b, a, path_b, path_a)):
        missing = [k for k in mine if k not in other]
        if missing and not skip_invalid:
            raise DataFormatError(
                f"{len(missing)} item(s) of {p} have no match in {q} (first: {missing[0]!r})",
                path=p,
                field=key,
                fix="score both systems on the same items, or pass --skip-invalid to drop "
                "unmatched items into the rejects file.",
            )
        rejects.extend(
            Reject(str(p), 0, key, f"item {k!r} has no match in {q}", k) for k in missing
        )
    ids = [k for k in a if k in b]
    if not ids:
        raise DataFormatError(
            "the two files share no item id.",
            path=path_b,
            field=key,
            fix="check --key; both files must score the same items.",
        )
    groups = [a[k][1] or b[k][1] for k in ids]
    scores_a, scores_b = [a[k][0] for k in ids], [b[k][0] for k in ids]
    if any(g is None for g in groups):
        comparisons = compare_by_group(
            scores_a, scores_b, ["items"] * len(ids), seed=seed, n_resamples=n_resamples
        )
        comparisons = {"all": comparisons["all"]}
    else:
        comparisons = compare_by_group(
            scores_a, scores_b, [str(g) for g in groups], seed=seed, n_resamples=n_resamples
        )
    names = _names(path_a, path_b, system_a, system_b)
    items = [
        (k, str(g or "items"), x, y)
        for k, g, x, y in zip(ids, groups, scores_a, scores_b, strict=True)
    ]
    result = CompareResult(comparisons, len(a), len(b), rejects, names, field_name, items)
    if out is not None:
        save_eval_results(compare_results(result), out)
    return result


def _names(
    path_a: str | Path, path_b: str | Path, system_a: str | None, system_b: str | None
) -> tuple[str, str]:
    a, b = system_a or Path(path_a).stem, system_b or Path(path_b).stem
    return (a, b) if a != b else (f"{a} (A)", f"{b} (B)")


def compare_results(result: CompareResult, title: str | None = None) -> EvalResults:
    """The comparison as results: one row per group (or "items"), "all" as overall."""
    a, b = result.names

    def row(c: PairedComparison) -> dict[str, Any]:
        scores = {a: c.mean_a, b: c.mean_b}
        return {"metric": result.field_name, "n": c.n, "scores": scores, "comparison": c.to_dict()}

    groups = {k: row(c) for k, c in result.comparisons.items() if k != "all"}
    return EvalResults.model_validate(
        {
            "title": title or f"{b} vs {a} ({result.field_name})",
            "created": now(),
            "systems": [a, b],
            "tasks": groups or {"items": row(result.comparisons["all"])},
            "overall": row(result.comparisons["all"]) if groups else None,
            "per_item": [
                {"id": i, "task": g if groups else "items", "scores": {a: x, b: y}}
                for i, g, x, y in result.items
            ],
        }
    )
