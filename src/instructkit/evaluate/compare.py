"""Paired comparison of two per-item score files: ``instructkit eval compare A.jsonl B.jsonl``.

Each file holds one JSON object per item with an id field (``key``; default ``id``) and a
numeric score field (``field``; default ``score``); an optional ``group`` field (e.g.
``seen``/``unseen`` or the task) gives per-group results as well. Items are matched by id:
an id present in only one file, a duplicate id, or a missing or non-numeric score is an error
naming the file, row, item and field, or with ``skip_invalid`` is written to the rejects list
and counted. The statistics are those of :mod:`instructkit.evaluate.stats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructkit.data.formats import Reject
from instructkit.errors import DataFormatError
from instructkit.evaluate.stats import PairedComparison, compare_by_group
from instructkit.io import BadLine, read_rows

__all__ = ["CompareResult", "load_scores", "compare_files"]


@dataclass
class CompareResult:
    comparisons: dict[str, PairedComparison]  # "all" first, then groups
    n_a: int
    n_b: int
    rejects: list[Reject] = field(default_factory=list)

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


def _bad(
    path: Path,
    row: int,
    item: object,
    fld: str,
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


def load_scores(
    path: str | Path, *, key: str = "id", field_name: str = "score", skip_invalid: bool = False
) -> tuple[dict[str, tuple[float, str | None]], list[Reject]]:
    """``{item id: (score, group)}`` from a JSONL/JSON file, validated row by row."""
    path = Path(path)
    out: dict[str, tuple[float, str | None]] = {}
    rejects: list[Reject] = []
    for row_no, row in read_rows(path):
        if isinstance(row, BadLine) or not isinstance(row, dict):
            _bad(
                path,
                row_no,
                None,
                None,
                "not a JSON object",
                "write one object per line.",
                getattr(row, "text", row),
                skip_invalid,
                rejects,
            )
            continue
        item = row.get(key)
        if not isinstance(item, (str, int)) or isinstance(item, bool):
            _bad(
                path,
                row_no,
                None,
                key,
                f"missing or invalid id {item!r}",
                f"give every row a string or integer '{key}' (or choose the id field with --key).",
                row,
                skip_invalid,
                rejects,
            )
            continue
        score = row.get(field_name)
        if isinstance(score, bool):
            score = float(score)
        if not isinstance(score, (int, float)) or not math.isfinite(score):
            _bad(
                path,
                row_no,
                item,
                field_name,
                f"score {score!r} is not a finite number",
                f"give every row a numeric '{field_name}' (or choose it with --field).",
                row,
                skip_invalid,
                rejects,
            )
            continue
        if str(item) in out:
            _bad(
                path,
                row_no,
                item,
                key,
                "duplicate id",
                "keep one row per item.",
                row,
                skip_invalid,
                rejects,
            )
            continue
        group = row.get("group")
        out[str(item)] = (float(score), None if group is None else str(group))
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
) -> CompareResult:
    """Pair the items of two score files by id and compare them (B minus A)."""
    a, rej_a = load_scores(path_a, key=key, field_name=field_name, skip_invalid=skip_invalid)
    b, rej_b = load_scores(path_b, key=key, field_name=field_name, skip_invalid=skip_invalid)
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
    return CompareResult(comparisons, len(a), len(b), rejects)
