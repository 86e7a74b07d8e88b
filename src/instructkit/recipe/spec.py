"""Recipe files: the typed top level, the stages, ``${...}`` references, every problem at once.

A recipe is YAML with a few top-level keys and an ordered mapping of named stages::

    out: out/tiny               # the run directory (--out overrides)
    model: tiny-random-llama    # shared values, referred to as ${model} ...
    vars: {seed: 0}             # ... and ${vars.seed}
    stages:
      clean: {kind: dedup, src: recipes/data/tiny_alpaca.jsonl}
      train:
        kind: sft
        config:                 # train sft's own config (SFTConfig), as in its YAML file
          model: ${model}
          datasets: [{path: "${stages.clean.data}"}]

``${stages.NAME.OUTPUT}`` is the path of an earlier stage's output (each kind names its
outputs: :data:`~instructkit.recipe.kinds.KINDS`); a stage depends on every stage it refers to.
A reference that is a whole YAML value keeps its type (``seed: ${vars.seed}`` stays a number);
inside a longer string it is replaced by its text.

:func:`load_recipe` reads the file and the ``--set`` overrides and :func:`check_stages` builds
each stage's workflow config; both raise one :class:`~instructkit.errors.ConfigError` that lists
every problem of every stage (stage and key named) before anything runs.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from instructkit.config import config_problems, load_mapping
from instructkit.errors import ConfigError
from instructkit.lm.options import LMOptions
from instructkit.recipe.kinds import KINDS

__all__ = [
    "RecipeConfig",
    "StageConfig",
    "check_stages",
    "load_recipe",
    "output_path",
    "references",
    "resolve",
    "upstream",
]

_REF = re.compile(r"\$\{([^}]*)\}")
_TOP = ("model", "out", "title")  # top-level keys a ${...} may name (plus vars.NAME)


class StageConfig(BaseModel):
    """One stage: which workflow (``kind``), its input data, its LM and its own config."""

    model_config = ConfigDict(extra="forbid")

    kind: str  # one of KINDS: convert, filter, dedup, self_instruct, evol, sft, dpo, ...
    src: str | None = None  # input data of data and synthesis stages (a path or ${stages...})
    lm: LMOptions | None = None  # the LM of synthesis stages (default: local, the default model)
    config: dict[str, Any] = Field(default_factory=dict)  # the workflow's own config


class RecipeConfig(BaseModel):
    """A whole recipe: the run directory, shared values and the stages in order."""

    model_config = ConfigDict(extra="forbid")

    out: str = "out/recipe"  # the run directory
    title: str = "instructkit recipe"
    model: str | None = None  # ${model}
    vars: dict[str, Any] = Field(default_factory=dict)  # ${vars.NAME}
    stages: dict[str, StageConfig]


def output_path(out: str | Path, stage: str, relative: str) -> str:
    """Where stage ``stage`` keeps its output ``relative`` inside the run directory ``out``."""
    path = Path(out) / "stages" / stage
    return str(path if relative == "." else path / relative)


def references(value: Any) -> list[str]:
    """Every ``${...}`` name inside ``value`` (strings in nested mappings and lists)."""
    if isinstance(value, str):
        return [m.group(1).strip() for m in _REF.finditer(value)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in references(v)]
    if isinstance(value, list):
        return [r for v in value for r in references(v)]
    return []


def upstream(stage: StageConfig) -> list[str]:
    """The stages ``stage`` refers to, in first-mention order."""
    found = [r.split(".")[1] for r in references(stage.model_dump()) if r.startswith("stages.")]
    return list(dict.fromkeys(n for n in found if n))


def resolve(value: Any, lookup: Callable[[str], Any]) -> Any:
    """``value`` with each ``${name}`` replaced by ``lookup(name)`` (typed when it is whole)."""
    if isinstance(value, str):
        whole = _REF.fullmatch(value.strip())
        if whole:
            return lookup(whole.group(1).strip())
        return _REF.sub(lambda m: str(lookup(m.group(1).strip())), value)
    if isinstance(value, dict):
        return {k: resolve(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, lookup) for v in value]
    return value


def lookup_in(cfg: RecipeConfig, *, stages: bool = True) -> Callable[[str], Any]:
    """Resolves ``${...}`` names of ``cfg``; with ``stages=False`` a stage reference stays as
    written (what a stage's cache key holds: the path of the run directory is no part of it)."""

    def lookup(name: str) -> Any:
        parts = name.split(".")
        if parts[0] == "stages" and len(parts) == 3:
            if not stages:
                return "${" + name + "}"
            kind = KINDS[cfg.stages[parts[1]].kind]
            return output_path(cfg.out, parts[1], kind.outputs[parts[2]])
        if parts[0] == "vars" and len(parts) == 2:
            return cfg.vars[parts[1]]
        return getattr(cfg, name)

    return lookup


def load_recipe(
    path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, out: str | None = None
) -> RecipeConfig:
    """Read a recipe (YAML, then ``out``, then ``--set`` overrides) and check every stage: one
    ConfigError lists every problem found, top level and stages alike."""
    data = load_mapping(path, overrides, out=out)
    problems = config_problems(RecipeConfig, data, str(path))
    cfg = _partial(data) if problems else RecipeConfig.model_validate(data)
    problems += _stage_problems(cfg, str(path))
    _raise(problems)
    return cfg


def check_stages(cfg: RecipeConfig, source: str = "recipe") -> dict[str, BaseModel]:
    """Each stage's workflow config, validated, with references resolved and the keys the
    recipe sets (output folders) filled in; one ConfigError lists every problem."""
    _raise(_stage_problems(cfg, source))
    return {name: stage_config(cfg, name) for name in cfg.stages}


def stage_config(cfg: RecipeConfig, name: str) -> BaseModel:
    """Stage ``name``'s workflow config (see :func:`check_stages`; raises on a problem)."""
    stage = cfg.stages[name]
    kind = KINDS[stage.kind]
    data = resolve(stage.config, lookup_in(cfg))
    data |= {key: output_path(cfg.out, name, rel) for key, rel in kind.owned.items()}
    return kind.config.model_validate(data)


def _raise(problems: list[str]) -> None:
    if problems:
        raise ConfigError(
            f"{len(problems)} config problem(s): " + "; ".join(problems),
            fix="correct the keys above (docs/recipes.md lists every key of a recipe; each "
            "stage's config is its workflow's own, documented on that workflow's page).",
        )


def _partial(data: Any) -> RecipeConfig:
    """The parts of an invalid recipe that are valid, so that its stages are checked too."""
    data = data if isinstance(data, dict) else {}
    stages = data.get("stages") if isinstance(data.get("stages"), dict) else {}
    valid = {}
    for name, raw in stages.items():
        try:
            valid[str(name)] = StageConfig.model_validate(raw)
        except ValidationError:
            continue  # already reported by the top-level check
    fields = {}
    for key in (*_TOP, "vars"):
        if key in data and not config_problems(RecipeConfig, {key: data[key], "stages": {}}):
            fields[key] = data[key]
    return RecipeConfig(stages={}, **fields).model_copy(update={"stages": valid})


def _stage_problems(cfg: RecipeConfig, source: str) -> list[str]:
    problems: list[str] = []
    seen: list[str] = []
    for name, stage in cfg.stages.items():
        where = f"{source}: stages.{name}"
        if stage.kind not in KINDS:
            near = difflib.get_close_matches(stage.kind, list(KINDS), n=1)
            hint = f"did you mean '{near[0]}'?" if near else f"valid: {', '.join(KINDS)}"
            problems.append(f"{where}.kind: unknown kind '{stage.kind}' ({hint})")
        else:
            problems += _reference_problems(cfg, stage, seen, where)
            problems += _kind_problems(stage, where) + _config_problems(cfg, name, where)
        seen.append(name)
    return problems


def _reference_problems(
    cfg: RecipeConfig, stage: StageConfig, earlier: list[str], where: str
) -> list[str]:
    problems = []
    for ref in references(stage.model_dump()):
        parts = ref.split(".")
        if parts[0] == "stages":
            problems += _stage_reference_problem(cfg, ref, earlier, where)
        elif parts[0] == "vars":
            if len(parts) != 2 or parts[1] not in cfg.vars:
                problems.append(f"{where}: ${{{ref}}}: no such key in vars")
        elif ref not in _TOP or getattr(cfg, ref, None) is None:
            problems.append(
                f"{where}: ${{{ref}}}: refer to ${{model}}, ${{out}}, ${{title}}, "
                "${vars.NAME} or ${stages.NAME.OUTPUT} (set the key first)"
            )
    return problems


def _stage_reference_problem(
    cfg: RecipeConfig, ref: str, earlier: list[str], where: str
) -> list[str]:
    parts = ref.split(".")
    if len(parts) != 3:
        return [f"{where}: ${{{ref}}}: write ${{stages.NAME.OUTPUT}}"]
    _, other, output = parts
    if other not in earlier:
        later = other in cfg.stages
        why = "comes later; a stage refers to earlier ones" if later else "is no stage"
        return [f"{where}: ${{{ref}}}: '{other}' {why} (stages: {', '.join(earlier) or 'none'})"]
    kind = KINDS.get(cfg.stages[other].kind)
    if kind is not None and output not in kind.outputs:
        outputs = ", ".join(kind.outputs)
        return [f"{where}: ${{{ref}}}: a {cfg.stages[other].kind} stage's outputs are {outputs}"]
    return []


def _kind_problems(stage: StageConfig, where: str) -> list[str]:
    kind = KINDS[stage.kind]
    problems = []
    if kind.src == "required" and stage.src is None:
        problems.append(f"{where}.src: a {stage.kind} stage needs its input data (src)")
    if kind.src == "none" and stage.src is not None:
        problems.append(f"{where}.src: a {stage.kind} stage takes no src (its config names data)")
    if not kind.lm and stage.lm is not None:
        problems.append(f"{where}.lm: a {stage.kind} stage takes no lm")
    for key in kind.owned:
        if key in stage.config:
            problems.append(
                f"{where}.config.{key}: set by the recipe (to the stage's own folder); remove it"
            )
    return problems


def _config_problems(cfg: RecipeConfig, name: str, where: str) -> list[str]:
    stage = cfg.stages[name]
    kind = KINDS[stage.kind]
    known = lookup_in(cfg)

    def lookup(name: str) -> Any:  # a bad reference (reported already) stays as written
        try:
            return known(name)
        except (KeyError, AttributeError, IndexError):
            return "${" + name + "}"

    data = resolve(stage.config, lookup)
    data = {k: v for k, v in data.items() if k not in kind.owned}
    data |= {key: output_path(cfg.out, name, rel) for key, rel in kind.owned.items()}
    problems = config_problems(kind.config, data, f"{where}.config")
    if problems:
        return problems
    outputs = _outputs(cfg)  # what earlier stages will write counts as there
    workflow = kind.problems(kind.config.model_validate(data), lambda p: p in outputs or p.exists())
    return [f"{where}.config: {p}" for p in workflow]


def _outputs(cfg: RecipeConfig) -> set[Path]:
    """The paths of every stage's outputs."""
    return {
        Path(output_path(cfg.out, name, rel))
        for name, stage in cfg.stages.items()
        if stage.kind in KINDS
        for rel in KINDS[stage.kind].outputs.values()
    }
