"""Resumable jobs: append-only JSONL journals, an atomic state file and one content fingerprint.

Every long job (Self-Instruct, Evol-Instruct, LLM judging, LLM quality scoring, ``eval run``)
goes through :class:`Job`::

    fp = fingerprint(cfg, seeds=seed_rows, lm=lm.name)   # what must not change on resume
    job = Job(out_path, fp, fresh=fresh, journals={"rejects": rejects_path})
    done = {r["id"] for r in job.records}                 # finished units, read back
    for unit in todo:
        job.append([do(unit)])                            # durable before the next unit
        job.save_state(next_round=3)                      # counters, atomically replaced

The journal at ``out`` holds one JSON object per finished unit, appended and fsynced (see
:func:`~instructkit.io.append_jsonl`), so a kill loses at most the unit in flight. On open, a
torn last line left by a kill is cut off by truncation (:func:`~instructkit.io.repair_torn_tail`),
never by rewriting the file. ``out.state.json`` holds the fingerprint and the job's counters and
is replaced atomically.

The fingerprint (:func:`fingerprint`) is the job's config plus a hash of each input. Reopening
an output whose fingerprint differs raises :class:`~instructkit.errors.ConfigError` naming what
changed, since continuing would mix two different jobs in one file; ``fresh=True`` (the CLI's
``--fresh``) deletes the old output and starts over.

``Job(None, fp)`` is the same job in memory: no file is read or written, every journal name is
accepted, and nothing survives the process. A component that journals through a ``Job`` (e.g.
an optimizer whose ``history=`` path is optional) then needs no second, in-memory code path.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from instructkit.errors import ConfigError, DataFormatError
from instructkit.io import append_jsonl, repair_torn_tail, write_atomic

__all__ = ["Job", "fingerprint", "content_hash", "check_same_job"]

_MAIN = "out"


def content_hash(value: Any) -> str:
    """A short, stable hash of a JSON-able value, or for a Path of a file's bytes (a folder:
    its files' names and bytes; a path that is not there, such as a hub dataset name: its text)."""
    h = hashlib.sha256()
    if isinstance(value, Path) and value.exists():
        files = sorted(p for p in value.rglob("*") if p.is_file()) if value.is_dir() else [value]
        for file in files:
            if value.is_dir():
                h.update(str(file.relative_to(value)).encode() + b"\0")
            with file.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    elif isinstance(value, Path):
        h.update(str(value).encode())
    else:
        h.update(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode())
    return h.hexdigest()[:16]


def fingerprint(
    config: BaseModel | Mapping[str, Any], *, exclude: Iterable[str] = (), **inputs: Any
) -> dict[str, Any]:
    """The job's identity: its config (without the ``exclude`` keys) and a hash of each input.

    Keys that may change between a run and its resumption (a target count that grows, a
    chunk size) belong in ``exclude``. Inputs are JSON-able values or file paths (hashed by
    content).
    """
    settings = config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)
    for key in exclude:
        settings.pop(key, None)
    settings = json.loads(json.dumps(settings, default=str))  # plain JSON, as stored
    return {"config": settings, "inputs": {k: content_hash(v) for k, v in sorted(inputs.items())}}


def check_same_job(old: Mapping[str, Any], new: Mapping[str, Any], *, what: str, fix: str) -> None:
    """Raise a ConfigError naming each difference when ``what`` (an output or checkpoint
    started under fingerprint ``old``) would be resumed under another fingerprint ``new``."""
    if dict(old) != dict(new):
        raise ConfigError(
            f"{what} was started with other settings or inputs "
            f"({'; '.join(_differences(old, new))}), so resuming would not continue the same "
            "job.",
            fix=fix,
        )


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    diffs = []
    old_cfg, new_cfg = old.get("config", {}), new.get("config", {})
    for key in sorted(set(old_cfg) | set(new_cfg)):
        if old_cfg.get(key) != new_cfg.get(key):
            diffs.append(f"{key}: {old_cfg.get(key)!r} -> {new_cfg.get(key)!r}")
    old_in, new_in = old.get("inputs", {}), new.get("inputs", {})
    for key in sorted(set(old_in) | set(new_in)):
        if old_in.get(key) != new_in.get(key):
            diffs.append(f"the {key} differ")
    return diffs or ["the job's fingerprint format"]


class Job:
    """One resumable job writing to ``out`` (see the module docstring).

    ``journals`` names further append-only files of the same job (e.g. a rejects file); they
    share its fingerprint and state, and are repaired and read the same way. ``out=None`` keeps
    the job in memory (see the module docstring).
    """

    def __init__(
        self,
        out: str | Path | None,
        fingerprint: Mapping[str, Any],
        *,
        fresh: bool = False,
        journals: Mapping[str, str | Path] | None = None,
    ) -> None:
        self.fingerprint = dict(fingerprint)
        self.state: dict[str, Any] = {}
        self.out: Path | None = None
        self.state_path: Path | None = None
        self.paths: dict[str, Path] = {}
        self._rows: dict[str, list[dict[str, Any]]] = {_MAIN: []}
        if out is None:
            self._rows.update({name: [] for name in journals or {}})
            return
        self.out = Path(out)
        state_path = self.state_path = self.out.with_name(self.out.name + ".state.json")
        self.paths = {_MAIN: self.out}
        self.paths.update({k: Path(v) for k, v in (journals or {}).items()})
        if fresh:
            for p in (*self.paths.values(), state_path):
                p.unlink(missing_ok=True)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        saved = self._read_state(state_path)
        self.state = dict(saved.get("state", {}))
        self._check_fingerprint(saved, state_path)
        self._rows = {name: self._read(path) for name, path in self.paths.items()}
        self.save_state()  # records the fingerprint before any row is written

    @property
    def records(self) -> list[dict[str, Any]]:
        """Finished rows of the main journal, in the order written."""
        return self._rows[_MAIN]

    def records_of(self, journal: str) -> list[dict[str, Any]]:
        """Finished rows of the named journal."""
        if self.out is None:
            return self._rows.setdefault(journal, [])
        return self._rows[journal]

    def append(self, rows: Iterable[dict[str, Any]], *, to: str = _MAIN) -> None:
        """Append finished rows durably (on disk when this returns)."""
        batch = list(rows)
        if batch and self.out is None:
            self._rows.setdefault(to, []).extend(batch)
        elif batch:
            append_jsonl(batch, self.paths[to])
            self._rows[to].extend(batch)

    def save_state(self, **state: Any) -> None:
        """Merge ``state`` into the state file (atomic replace)."""
        self.state.update(state)
        if self.state_path is None:
            return
        payload = {"fingerprint": self.fingerprint, "state": self.state}
        write_atomic(self.state_path, [json.dumps(payload, indent=1, ensure_ascii=False)])

    @staticmethod
    def _read_state(state_path: Path) -> dict[str, Any]:
        if not state_path.exists():
            return {}
        try:
            saved = json.loads(state_path.read_text("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataFormatError(
                f"the job state file is not valid JSON ({e}).",
                path=state_path,
                fix="pass --fresh to start the job over.",
            ) from e
        return saved if isinstance(saved, dict) else {}

    def _check_fingerprint(self, saved: Mapping[str, Any], state_path: Path) -> None:
        old = saved.get("fingerprint")
        if old is None:
            written = [p for p in self.paths.values() if p.exists() and p.stat().st_size > 0]
            if written:
                raise ConfigError(
                    f"{written[0]} holds rows that this job did not write (no "
                    f"{state_path.name} beside it).",
                    fix="pass --fresh to start over, or choose another output path.",
                )
            return
        check_same_job(
            old,
            self.fingerprint,
            what=str(self.out),
            fix="rerun with the original settings, write to another output path, or pass "
            "--fresh to start over.",
        )

    def _read(self, path: Path) -> list[dict[str, Any]]:
        repair_torn_tail(path)
        if not path.exists():
            return []
        rows = []
        with path.open(encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataFormatError(
                        f"a finished line of the job's journal is not valid JSON ({e.msg}).",
                        path=path,
                        row=line_no,
                        fix="repair or delete that line, or pass --fresh to start over.",
                    ) from e
                rows.append(row)
        return rows
