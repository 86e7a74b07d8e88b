"""Typed configs: YAML files plus ``--set key=value`` overrides, all problems reported at once.

Each workflow has one pydantic model (``extra="forbid"``); :func:`load_config` merges a YAML
file and overrides into it and raises one :class:`~instructkit.errors.ConfigError` listing every
bad key (with the nearest valid key) and every bad value.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from instructkit.errors import ConfigError
from instructkit.io import write_atomic

__all__ = ["config_problems", "load_config", "load_mapping", "parse_overrides", "save_config"]

C = TypeVar("C", bound=BaseModel)


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set '{pair}' is not key=value.", fix="write e.g. --set lr=1e-4")
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _scalar(raw)
    return out


def _scalar(raw: str) -> Any:
    """YAML scalar, plus numbers YAML 1.1 leaves as strings (``1e-4``)."""
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k] = _merge(merged[k], v)
        elif (
            isinstance(v, dict)
            and isinstance(merged.get(k), list)
            and all(str(i).isdigit() for i in v)
        ):
            merged[k] = _merge_list(merged[k], v, k)
        else:
            merged[k] = v
    return merged


def _merge_list(base: list[Any], extra: dict[str, Any], key: str) -> list[Any]:
    """``--set tasks.0.limit=5``: override inside the list's entry 0."""
    merged = list(base)
    for index, value in extra.items():
        i = int(index)
        if i >= len(merged):
            raise ConfigError(
                f"--set {key}.{index}...: '{key}' has {len(merged)} entries "
                f"(0 to {len(merged) - 1}).",
                fix="override an existing entry, or add the entry in the config file.",
            )
        both = isinstance(value, dict) and isinstance(merged[i], dict)
        merged[i] = _merge(merged[i], value) if both else value
    return merged


def _model_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config model that holds the key at ``loc`` (``("systems", 0, "lm")`` ->
    SystemConfig), walking field annotations through lists, dicts and optionals."""
    node: Any = cls
    for part in loc[:-1]:
        node = _unwrap(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            if part not in node.model_fields:
                return None
            node = node.model_fields[part].annotation
        elif typing.get_origin(node) in (list, dict, tuple):
            node = typing.get_args(node)[-1]
        else:
            return None
    node = _unwrap(node)
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None


def _unwrap(node: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` -> X."""
    while True:
        origin = typing.get_origin(node)
        if origin is typing.Annotated:
            node = typing.get_args(node)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(node) if a is not type(None)]
            if len(args) != 1:
                return node
            node = args[0]
        else:
            return node


def _describe(cls: type[BaseModel], err: Any, source: str) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        names = list((_model_at(cls, tuple(err["loc"])) or cls).model_fields)
        near = difflib.get_close_matches(str(err["loc"][-1]), names, n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else f" (valid: {', '.join(names)})"
        return f"{source}: unknown key '{loc}'{hint}"
    return f"{source}: key '{loc}': {err['msg']} (got {err.get('input')!r})"


def load_mapping(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    **values: Any,
) -> dict[str, Any]:
    """The merged mapping :func:`load_config` validates: a YAML file, then keyword values (None:
    not given), then ``--set`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError as e:
            raise ConfigError(f"config file {path} not found.", fix="check the path.") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}".replace("\n", " ")) from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of keys to values at the top level.")
        data = loaded
    data = _merge(data, {k: v for k, v in values.items() if v is not None})
    return _merge(data, parse_overrides(overrides))


def config_problems(cls: type[BaseModel], data: Any, source: str = "config") -> list[str]:
    """Every problem of ``data`` as ``cls`` (unknown keys with the nearest valid one, bad
    values), each prefixed with ``source``; empty when it validates."""
    try:
        cls.model_validate(data)
    except ValidationError as e:
        return [_describe(cls, err, source) for err in e.errors()]
    return []


def load_config(
    cls: type[C],
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    **values: Any,
) -> C:
    """Build ``cls`` from a YAML file, then keyword values, then ``--set`` overrides."""
    data = load_mapping(path, overrides, **values)
    source = "config" if path is None else str(path)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        problems = [_describe(cls, err, source) for err in e.errors()]
        raise ConfigError(
            f"{len(problems)} config problem(s): " + "; ".join(problems),
            fix="correct the keys above (see --help or the docs for valid values).",
        ) from e


def save_config(cfg: BaseModel, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    write_atomic(path, [yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)])
