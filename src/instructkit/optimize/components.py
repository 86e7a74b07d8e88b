"""The instruction component library: alternatives per kind, as data, validated on load.

The library behind :mod:`instructkit.optimize.templates`. Each kind (role, task statement, input
description, output format, constraints, reasoning steps) has several alternatives, each with an
id, its text with ``{task}``, ``{inputs}``, ``{output}`` and ``{labels}`` placeholders, the
output formats it suits and the ids it must not be combined with; the bundled set is
``resources/instruction_components.yaml``, whose header documents the format. Loading checks it
the way :mod:`instructkit.data.tasks` checks FLAN task templates: a bad entry is a
DataFormatError naming the file, the entry and the fix. Usage::

    library = load_components()              # or load_components("my_components.yaml")
    library.alternatives["task"][0].text     # 'Your task is to {task}.'
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from instructkit.errors import ConfigError, DataFormatError

__all__ = ["KINDS", "FORMATS", "NONE", "Component", "ComponentLibrary", "load_components"]

KINDS = ("role", "task", "inputs", "output", "constraints", "reasoning")
FORMATS = ("label", "number", "text", "json")
NONE = "none"  # the id recorded for an optional kind left out
_ANY_OUTPUT = {"inputs", "output", "labels"}
_ALLOWED = {"role": set(), "task": {"task"}, "inputs": {"inputs"}} | {
    k: _ANY_OUTPUT for k in ("output", "constraints", "reasoning")
}
_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]*")


@dataclass(frozen=True)
class Component:
    """One alternative of one kind: its text and the output formats it suits."""

    id: str
    kind: str
    text: str
    formats: frozenset[str] = frozenset(FORMATS)
    excludes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ComponentLibrary:
    """The alternatives of each kind, in file order; ``optional`` kinds may be left out."""

    alternatives: Mapping[str, tuple[Component, ...]]
    optional: frozenset[str]
    source: str

    def get(self, kind: str, component_id: str) -> Component | None:
        """The alternative ``component_id`` of ``kind`` (None for an optional kind's "none")."""
        if component_id == NONE and kind in self.optional:
            return None
        for comp in self.alternatives.get(kind, ()):
            if comp.id == component_id:
                return comp
        known = [c.id for c in self.alternatives.get(kind, ())]
        raise ConfigError(
            f"no {kind} component '{component_id}' in {self.source}.",
            fix=f"use one of: {', '.join(known + ([NONE] if kind in self.optional else []))}.",
        )


# ------------------------------------------------------------------------------------ loading


def load_components(path: str | Path | None = None) -> ComponentLibrary:
    """Read and validate a component library from YAML; None reads the bundled one."""
    where, text = _read_source(path)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DataFormatError(f"not valid YAML: {e}", path=where, fix="fix the YAML syntax.") from e
    kinds = doc.get("components") if isinstance(doc, dict) else None
    if not isinstance(kinds, dict) or set(doc) != {"components"}:
        raise DataFormatError(
            "the file must hold one 'components' mapping.", path=where, fix=_FIX_KINDS
        )
    for bad, what in ((set(kinds) - set(KINDS), "unknown"), (set(KINDS) - set(kinds), "missing")):
        if bad:
            kind = sorted(bad)[0]
            raise DataFormatError(
                f"{what} kind '{kind}'.", path=where, field=f"components.{kind}", fix=_FIX_KINDS
            )
    parsed = {kind: _parse_kind(kind, kinds[kind], where) for kind in KINDS}
    library = ComponentLibrary(
        alternatives={kind: alts for kind, (_, alts) in parsed.items()},
        optional=frozenset(kind for kind, (optional, _) in parsed.items() if optional),
        source=where,
    )
    _check_library(library, where)
    return library


def _read_source(path: str | Path | None) -> tuple[str, str]:
    """(where, text) of the library: the bundled file when ``path`` is None."""
    if path is None:
        name = "instruction_components.yaml"
        text = resources.files("instructkit.resources").joinpath(name).read_text("utf-8")
        return f"instructkit/resources/{name}", text
    try:
        return str(path), Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataFormatError(
            f"cannot read instruction components: {e}", path=path, fix="pass a UTF-8 YAML file."
        ) from e


_FIX_KINDS = f"write 'components:' with exactly the kinds {', '.join(KINDS)}."
_FIX_ALT = (
    "write '- id: some-id' and 'text: \"...\"', optionally 'formats: [label, number, text, json]'"
    " and 'excludes: [other-id]'."
)


def _parse_kind(kind: str, entry: Any, where: str) -> tuple[bool, tuple[Component, ...]]:
    loc = f"components.{kind}"
    if (
        not isinstance(entry, dict)
        or set(entry) - {"optional", "alternatives"}
        or not isinstance(entry.get("optional", False), bool)
        or not isinstance(entry.get("alternatives"), list)
        or not entry["alternatives"]
    ):
        raise DataFormatError(
            f"kind '{kind}' must be {{optional: bool, alternatives: [...]}} (got {entry!r}).",
            path=where,
            field=loc,
            fix="give the kind a non-empty 'alternatives' list and optionally 'optional: true'.",
        )
    alts = tuple(
        _parse_alternative(kind, raw, where, f"{loc}.alternatives[{i}]")
        for i, raw in enumerate(entry["alternatives"])
    )
    return bool(entry.get("optional", False)), alts


def _parse_alternative(kind: str, raw: Any, where: str, loc: str) -> Component:
    def bad(message: str, fix: str = _FIX_ALT) -> DataFormatError:
        name = raw.get("id") if isinstance(raw, dict) else None
        return DataFormatError(
            (f"alternative '{name}': " if isinstance(name, str) else "") + message,
            path=where,
            field=loc,
            fix=fix,
        )

    if not isinstance(raw, dict):
        raise bad(f"expected a mapping with id and text (got {raw!r}).")
    if unknown := set(raw) - {"id", "text", "formats", "excludes"}:
        raise bad(f"unknown key(s) {sorted(unknown)}.")
    cid, text = raw.get("id"), raw.get("text")
    if not isinstance(cid, str) or not _ID_RE.fullmatch(cid) or cid == NONE:
        raise bad(f"bad id {cid!r}.", "use lowercase letters, digits and dashes (not 'none').")
    if not isinstance(text, str) or not text.strip():
        raise bad("empty text.", "write the sentence(s) this alternative adds.")
    formats, excludes = raw.get("formats", list(FORMATS)), raw.get("excludes", [])
    if not isinstance(formats, list) or not formats or set(formats) - set(FORMATS):
        raise bad(f"bad formats {formats!r}.", f"list some of: {', '.join(FORMATS)}.")
    if not isinstance(excludes, list) or not all(isinstance(x, str) for x in excludes):
        raise bad(f"bad excludes {excludes!r}.", "list the ids of other alternatives.")
    comp = Component(cid, kind, text.strip(), frozenset(formats), frozenset(excludes))
    if problem := _placeholder_problem(comp):
        raise bad(problem[0], problem[1])
    return comp


_FIX_BRACES = "write placeholders as {name}; write a literal brace as {{ or }}."


def _placeholder_problem(comp: Component) -> tuple[str, str] | None:
    """(message, fix) when ``comp`` uses a placeholder its kind does not allow or lacks one."""
    names = set()
    try:
        fields = [(n, s, c) for _, n, s, c in string.Formatter().parse(comp.text) if n is not None]
    except ValueError as e:  # an unmatched brace
        return f"{e}.", _FIX_BRACES
    for name, spec, conversion in fields:
        if not name.isidentifier() or spec or conversion:
            return f"'{{{name}}}' is not a plain placeholder.", _FIX_BRACES
        names.add(name)
    allowed = _ALLOWED[comp.kind] - (set() if comp.formats == {"label"} else {"labels"})
    required = {"task": {"task"}, "inputs": {"inputs"}}.get(comp.kind, set())
    if comp.kind == "output":
        required = {"labels"} if "label" in comp.formats else {"output"}
        if "label" in comp.formats and comp.formats != {"label"}:
            return (
                "an output alternative for labels must be for labels only.",
                "set formats: [label].",
            )
    if extra := sorted(names - allowed):
        return (
            f"unknown placeholder '{{{extra[0]}}}' for kind '{comp.kind}' "
            f"(allowed: {', '.join(sorted(allowed)) or 'none'}).",
            "fix its spelling; {labels} needs formats: [label].",
        )
    if missing := sorted(required - names):
        return f"missing placeholder '{{{missing[0]}}}'.", f"use {{{missing[0]}}} in the text."
    return None


def _check_library(library: ComponentLibrary, where: str) -> None:
    """Ids unique, excludes known, and an output alternative for every format."""
    ids = Counter(c.id for alts in library.alternatives.values() for c in alts)
    for kind, alts in library.alternatives.items():
        for i, comp in enumerate(alts):
            loc = f"components.{kind}.alternatives[{i}]"
            if ids[comp.id] > 1:
                raise DataFormatError(
                    f"id '{comp.id}' is used more than once.",
                    path=where,
                    field=loc,
                    fix="give every alternative its own id.",
                )
            if unknown := sorted(comp.excludes - set(ids)):
                raise DataFormatError(
                    f"alternative '{comp.id}' excludes unknown id '{unknown[0]}'.",
                    path=where,
                    field=loc,
                    fix="fix the id's spelling or remove it.",
                )
    covered = set().union(*(c.formats for c in library.alternatives["output"]))
    if missing := [f for f in FORMATS if f not in covered]:
        raise DataFormatError(
            f"no output alternative for format '{missing[0]}'.",
            path=where,
            field="components.output",
            fix=f"add an output alternative with formats: [{missing[0]}].",
        )
