"""Seed tasks for Self-Instruct: the bundled set, or your own in either of two row formats.

``load_seed_tasks()`` reads the seed tasks that ship with instructkit (``resources/
seed_tasks.jsonl``: 120 tasks written for this project, a quarter of them classification).
``load_seed_tasks(path)`` reads a .jsonl/.json file whose rows are either

* Self-Instruct rows, as in the paper's ``seed_tasks.jsonl``:
  ``{"id", "name", "instruction", "instances": [{"input", "output"}], "is_classification"}``
  (``id``, ``name`` and ``is_classification`` may be left out), or
* Alpaca rows: ``{"instruction", "input", "output"}`` (``input`` optional, ``is_classification``
  optional). Rows that share an instruction become one task with several instances.

A bad row raises :class:`~instructkit.errors.DataFormatError` naming the file, row, field and
fix; with ``skip_invalid=True`` it becomes a :class:`~instructkit.data.formats.Reject` instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from instructkit.data.formats import Reject
from instructkit.data.sources import SpecLike, read_source_rows, source_name
from instructkit.errors import DataFormatError
from instructkit.io import BadLine

__all__ = ["Instance", "SeedTask", "SeedTasks", "load_seed_tasks", "BUNDLED_SEEDS"]

BUNDLED_SEEDS = "instructkit/resources/seed_tasks.jsonl"


@dataclass(frozen=True)
class Instance:
    """One input/output example of a task (``input`` is "" when the task needs none)."""

    input: str
    output: str

    def to_dict(self) -> dict[str, str]:
        return {"input": self.input, "output": self.output}


@dataclass(frozen=True)
class SeedTask:
    """A human-written task: an instruction, its examples, and whether it is classification."""

    id: str
    instruction: str
    instances: tuple[Instance, ...]
    is_classification: bool = False
    name: str = ""


@dataclass
class SeedTasks:
    """Seed tasks read from ``path``, and the rows skipped with ``skip_invalid``."""

    tasks: list[SeedTask]
    path: str
    rejects: list[Reject] = field(default_factory=list)
    n_rows: int = 0


def load_seed_tasks(path: SpecLike | None = None, *, skip_invalid: bool = False) -> SeedTasks:
    """Read seed tasks from a path or a dataset spec (split, subset, columns, file_type; the
    bundled tasks when None); see the module docstring for formats."""
    if path is None:
        source = resources.files("instructkit.resources").joinpath("seed_tasks.jsonl")
        rows = [
            (n, _json_line(line, n))
            for n, line in enumerate(source.read_text(encoding="utf-8").split("\n"), start=1)
            if line.strip()
        ]
        where: str = BUNDLED_SEEDS
    else:
        rows, where = read_source_rows(path), source_name(path)
    result = SeedTasks([], where, n_rows=len(rows))
    grouped: dict[str, int] = {}  # Alpaca instruction -> index in result.tasks
    for row_no, value in rows:
        try:
            task = _parse_row(value, where, row_no)
        except DataFormatError as e:
            if not skip_invalid:
                raise
            raw = value.text if isinstance(value, BadLine) else value
            reason = e.reason + (f" Fix: {e.fix}" if e.fix else "")
            result.rejects.append(Reject(where, row_no, e.field, reason, raw))
            continue
        if "instances" not in value and task.instruction in grouped:
            _merge_into(result.tasks, grouped[task.instruction], task)
            continue
        if "instances" not in value:
            grouped[task.instruction] = len(result.tasks)
        result.tasks.append(task)
    if not result.tasks:
        raise DataFormatError(
            "no valid seed task in the file.", path=where, fix="add at least one valid task row."
        )
    return result


def _json_line(line: str, row_no: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:  # the bundled file is ours: this is a packaging bug
        raise DataFormatError(f"invalid JSON: {e.msg}.", path=BUNDLED_SEEDS, row=row_no) from e


def _merge_into(tasks: list[SeedTask], i: int, extra: SeedTask) -> None:
    old = tasks[i]
    instances = old.instances + tuple(x for x in extra.instances if x not in old.instances)
    clf = old.is_classification or extra.is_classification
    tasks[i] = SeedTask(old.id, old.instruction, instances, clf, old.name)


def _parse_row(value: object, path: str, row_no: int) -> SeedTask:
    def error(message: str, name: str | None = None, fix: str | None = None) -> DataFormatError:
        return DataFormatError(message, path=path, row=row_no, field=name, fix=fix)

    if isinstance(value, BadLine):
        raise error(f"invalid JSON: {value.message}.", fix="repair the line (one JSON object).")
    if not isinstance(value, dict):
        raise error(
            f"expected a JSON object, got {type(value).__name__}.",
            fix="write each task as an object with instruction and instances (or output).",
        )
    instruction = _text(value, "instruction", error, required=True)
    if not instruction.strip():
        raise error("the instruction is empty.", "instruction", "write the task's instruction.")
    if "instances" in value:
        instances = _instances(value["instances"], error)
    elif "output" in value:
        instances = (_instance(value, error, prefix=""),)
    else:
        raise error(
            "the row has neither 'instances' (Self-Instruct) nor 'output' (Alpaca).",
            "instances",
            'add "instances": [{"input": ..., "output": ...}] or "output": ...',
        )
    clf = value.get("is_classification", False)
    if not isinstance(clf, bool):
        raise error(
            f"expected true or false, got {clf!r}.", "is_classification", "use true or false."
        )
    task_id = value.get("id", f"seed_{row_no}")
    return SeedTask(str(task_id), instruction.strip(), instances, clf, str(value.get("name") or ""))


def _text(row: dict[str, Any], key: str, error: Any, *, required: bool, prefix: str = "") -> str:
    if key not in row:
        if required:
            raise error(f"missing '{key}'.", prefix + key, f"add a '{key}' string.")
        return ""
    value = row[key]
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise error(
            f"expected a string, got {type(value).__name__}.", prefix + key, "use a JSON string."
        )
    return value


def _instances(value: object, error: Any) -> tuple[Instance, ...]:
    if not isinstance(value, list) or not value:
        raise error(
            "expected a non-empty list of {input, output} objects.",
            "instances",
            'write "instances": [{"input": "...", "output": "..."}].',
        )
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise error(
                f"expected an object, got {type(item).__name__}.",
                f"instances[{i}]",
                'write {"input": "...", "output": "..."}.',
            )
        out.append(_instance(item, error, prefix=f"instances[{i}]."))
    return tuple(out)


def _instance(row: dict[str, Any], error: Any, *, prefix: str) -> Instance:
    inp = _text(row, "input", error, required=False, prefix=prefix)
    out = _text(row, "output", error, required=True, prefix=prefix)
    if not out.strip():
        raise error("the output is empty.", prefix + "output", "write the expected output.")
    return Instance(inp.strip(), out.strip())
