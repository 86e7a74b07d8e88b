"""Running a recipe: a plan of what reruns and why, cached stages, a manifest, logs and a report.

Each stage's cache key is :func:`~instructkit.jobs.content_hash` of its fingerprint
(:func:`~instructkit.jobs.fingerprint`): the stage as written (kind, src, lm, config, with
``${model}``/``${vars...}`` resolved and ``${stages...}`` left as written), the keys of the
stages it refers to, the content of every existing file its config names, and the code version
(:func:`code_version`). :func:`plan_recipe` compares them with the manifest of the last run:

* ``run``: ``no cached output``, ``config changed: train.lr 0.001 -> 0.0003``,
  ``input changed: train`` (an upstream key), ``file changed: data.jsonl``, ``code changed``,
  ``input reruns: train`` (an upstream stage runs now), ``resuming an interrupted run`` (or
  ``resuming after a failure``),
  ``forced (--from X)``, ``selected (--only X)``, ``cached output missing``;
* ``skip``: ``cached``, or ``not selected (--only X)``.

:func:`run_recipe` runs the plan in order. A stage starts in an empty folder unless it resumes
the same key (then the workflow's own resume applies: checkpoints, journals); it is marked done
in ``RUN_DIR/manifest.json`` (replaced atomically) only once it finished, so a killed run
resumes at that stage. RUN_DIR holds ``config.yaml`` (the recipe as run), ``manifest.json``
(stage -> kind, key, status, seconds, fingerprint, outputs), ``stages/NAME/`` (the outputs,
``stage.yaml``: the workflow config as run, ``log.txt``: what the stage printed) and
``report.html`` (the last report stage's page, else one over every eval stage's results).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, TextIO

import yaml
from pydantic import BaseModel

from instructkit.config import save_config
from instructkit.errors import ConfigError
from instructkit.io import write_atomic
from instructkit.jobs import content_hash, fingerprint
from instructkit.lm.base import LM
from instructkit.lm.options import LMOptions
from instructkit.recipe.kinds import KINDS, StageRun
from instructkit.recipe.spec import (
    RecipeConfig,
    check_stages,
    lookup_in,
    output_path,
    resolve,
    upstream,
)

__all__ = ["PlanStep", "RecipeResult", "code_version", "plan_recipe", "run_recipe"]

_PACKAGE = Path(__file__).resolve().parents[1]
_SOURCE_SUFFIXES = {".py", ".yaml", ".jsonl", ".txt", ".json"}
_LM_KINDS = ("self_instruct", "evol", "optimize")  # the kinds that take an LM from run_recipe


@dataclass
class PlanStep:
    """What happens to one stage, and why."""

    stage: str
    action: Literal["run", "skip"]
    reason: str
    key: str = ""
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, str]:
        return {"stage": self.stage, "action": self.action, "reason": self.reason}


@dataclass
class RecipeResult:
    """A finished run: the plan it followed, the stages that ran and were skipped."""

    out: Path
    plan: list[PlanStep]
    ran: list[str]
    skipped: list[str]
    seconds: dict[str, float]
    report: Path | None


def code_version() -> str:
    """instructkit's version plus a hash of the package's source and resource files."""
    try:
        version = metadata.version("instructkit")
    except metadata.PackageNotFoundError:
        version = "unknown"
    h = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*")):
        if path.suffix in _SOURCE_SUFFIXES and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(_PACKAGE)).encode() + b"\0" + path.read_bytes())
    return f"{version}+{h.hexdigest()[:12]}"


def manifest_path(out: str | Path) -> Path:
    return Path(out) / "manifest.json"


def read_manifest(out: str | Path) -> dict[str, Any]:
    """The run directory's manifest (empty when there is none yet)."""
    path = manifest_path(out)
    if not path.exists():
        return {"stages": {}}
    return dict(json.loads(path.read_text("utf-8")))


def _write_manifest(out: Path, manifest: Mapping[str, Any]) -> None:
    write_atomic(manifest_path(out), [json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"])


def _stage_fingerprint(
    cfg: RecipeConfig, name: str, keys: Mapping[str, str], code: str
) -> dict[str, Any]:
    stage = cfg.stages[name]
    written = resolve(stage.model_dump(mode="json"), lookup_in(cfg, stages=False))
    inputs: dict[str, Any] = {f"stage {up}": keys[up] for up in upstream(stage)}
    run_dir = Path(cfg.out).resolve()
    for text in _strings(resolve(stage.model_dump(mode="json"), lookup_in(cfg))):
        path = Path(text)
        if path.is_file() and run_dir not in path.resolve().parents:
            inputs[f"file {text}"] = path  # hashed by content
    return fingerprint(written, code=code, **inputs)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": [1, 2]}}`` -> ``{"a.b.0": 1, "a.b.1": 2}`` (the keys ``--set`` takes)."""
    if isinstance(value, dict | list) and value:
        out: dict[str, Any] = {}
        for k, v in value.items() if isinstance(value, dict) else enumerate(value):
            out |= _flat(v, f"{prefix}{k}.")
        return out
    return {prefix[:-1]: value}


def _why(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """What differs between two stage fingerprints, most telling first."""
    before, after = _flat(old.get("config", {})), _flat(new.get("config", {}))
    changed = []
    for key in sorted(set(before) | set(after), key=lambda k: (k.startswith("config."), k)):
        if before.get(key) != after.get(key):
            shown = key.removeprefix("config.")
            changed.append(f"{shown} {before.get(key)!r} -> {after.get(key)!r}".replace("'", ""))
    reasons = [f"config changed: {', '.join(changed)}"] if changed else []
    old_in, new_in = old.get("inputs", {}), new.get("inputs", {})
    for prefix, label in (("stage ", "input changed"), ("file ", "file changed")):
        names = sorted(
            k.removeprefix(prefix)
            for k in set(old_in) | set(new_in)
            if k.startswith(prefix) and old_in.get(k) != new_in.get(k)
        )
        reasons += [f"{label}: {', '.join(names)}"] if names else []
    if old_in.get("code") != new_in.get("code"):
        reasons.append("code changed")
    return "; ".join(reasons) or "fingerprint format changed"


def plan_recipe(
    cfg: RecipeConfig,
    *,
    from_stage: str | None = None,
    only: str | None = None,
    code: str | None = None,
) -> list[PlanStep]:
    """What :func:`run_recipe` would do with each stage, and why (nothing runs)."""
    _check_selection(cfg, from_stage, only)
    code = code or code_version()
    saved = read_manifest(cfg.out)["stages"]
    keys: dict[str, str] = {}
    plan: list[PlanStep] = []
    runs: set[str] = set()
    for name, stage in cfg.stages.items():
        fp = _stage_fingerprint(cfg, name, keys, code)
        keys[name] = content_hash(fp)
        ups = upstream(stage)
        if only is not None:
            action, reason = _only(cfg, name, only, ups, saved, keys)
        else:
            reason = _reason(cfg, name, saved.get(name), keys[name], fp, from_stage, ups, runs)
            action = "skip" if reason == "cached" else "run"
        if action == "run":
            runs.add(name)
        plan.append(PlanStep(name, action, reason, keys[name], fp))
    return plan


def _check_selection(cfg: RecipeConfig, from_stage: str | None, only: str | None) -> None:
    if from_stage is not None and only is not None:
        raise ConfigError("--from and --only exclude each other.", fix="give one of them.")
    for flag, name in (("--from", from_stage), ("--only", only)):
        if name is not None and name not in cfg.stages:
            raise ConfigError(
                f"{flag} {name}: no such stage (stages: {', '.join(cfg.stages)}).",
                fix="name one of the recipe's stages.",
            )


def _reason(
    cfg: RecipeConfig,
    name: str,
    old: Mapping[str, Any] | None,
    key: str,
    fp: Mapping[str, Any],
    from_stage: str | None,
    ups: list[str],
    runs: set[str],
) -> str:
    if name == from_stage:
        return f"forced (--from {from_stage})"
    if old is None:
        return "no cached output"
    if old.get("key") != key:
        return _why(old.get("fingerprint", {}), fp)
    if old.get("status") == "failed":
        return "resuming after a failure"
    if old.get("status") != "done":
        return "resuming an interrupted run"
    rerun = [u for u in ups if u in runs]
    if rerun:
        return f"input reruns: {', '.join(rerun)}"
    if not Path(output_path(cfg.out, name, ".")).is_dir():
        return "cached output missing"
    return "cached"


def _only(
    cfg: RecipeConfig,
    name: str,
    only: str,
    ups: list[str],
    saved: Mapping[str, Any],
    keys: Mapping[str, str],
) -> tuple[Literal["run", "skip"], str]:
    if name != only:
        return "skip", f"not selected (--only {only})"
    missing = [
        u for u in ups if saved.get(u, {}).get("key") != keys[u] or saved[u]["status"] != "done"
    ]
    if missing:
        raise ConfigError(
            f"--only {only}: its input stage(s) {', '.join(missing)} have no cached output for "
            "the recipe as it is now.",
            fix=f"run them first (instructkit run RECIPE --from {missing[0]}), or drop --only.",
        )
    return "run", f"selected (--only {only})"


def run_recipe(
    cfg: RecipeConfig,
    *,
    from_stage: str | None = None,
    only: str | None = None,
    lms: Mapping[str, LM] | None = None,
    progress: bool = True,
) -> RecipeResult:
    """Run the stages that the plan says to run, in order (see the module docstring).

    ``lms`` (stage name -> LM, e.g. a ``ScriptedLM``) answers for a synthesis stage instead of
    the LM its ``lm:`` names (for an optimize stage: instead of its config's task model).
    Every stage's config is checked before anything runs."""
    configs = check_stages(cfg)
    strangers = sorted(set(lms or {}) - {n for n, s in cfg.stages.items() if s.kind in _LM_KINDS})
    if strangers:
        raise ConfigError(
            f"lms names {', '.join(strangers)}, which is no synthesis or optimize stage.",
            fix="key lms by the names of the recipe's self_instruct, evol or optimize stages.",
        )
    plan = plan_recipe(cfg, from_stage=from_stage, only=only)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    recipe = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    write_atomic(out / "config.yaml", [recipe])
    manifest = read_manifest(out)
    manifest["code"] = code_version()
    seconds: dict[str, float] = {}
    for step in plan:
        print(f"[{step.stage}] {step.action}: {step.reason}")
        if step.action == "run":
            run = StageRun(step.stage, out / "stages" / step.stage, configs[step.stage],
                           progress=progress)  # fmt: skip
            seconds[step.stage] = _run_stage(cfg, step, run, manifest, (lms or {}).get(step.stage))
    ran = [s.stage for s in plan if s.action == "run"]
    report = _run_report(cfg, rebuild=bool(ran))
    if report is not None:
        manifest["report"] = str(report.relative_to(out))
        _write_manifest(out, manifest)
    skipped = [s.stage for s in plan if s.action == "skip"]
    print(f"ran {len(ran)} stage(s), skipped {len(skipped)}; run directory {out}")
    return RecipeResult(out, plan, ran, skipped, seconds, report)


def _run_stage(
    cfg: RecipeConfig, step: PlanStep, run: StageRun, manifest: dict[str, Any], lm: LM | None
) -> float:
    """Run one stage in its folder; mark it done in the manifest only once it finished."""
    out, stage = Path(cfg.out), cfg.stages[step.stage]
    old = manifest["stages"].get(step.stage, {})
    resume = old.get("key") == step.key and old.get("status") != "done"
    if not resume or step.reason.startswith("forced"):
        shutil.rmtree(run.folder, ignore_errors=True)
    run.folder.mkdir(parents=True, exist_ok=True)
    run.src = resolve(stage.src, lookup_in(cfg))
    if stage.lm is not None:  # ${model}, ${vars...} in lm: resolved as in src and config
        run.lm_options = LMOptions.model_validate(resolve(stage.lm.model_dump(), lookup_in(cfg)))
    run.lm = lm
    entry: dict[str, Any] = {"kind": stage.kind, "key": step.key, "status": "running"}
    entry |= {"started": _now(), "fingerprint": step.fingerprint}
    entry["outputs"] = {
        k: str(Path(output_path(out, step.stage, v)).relative_to(out))
        for k, v in KINDS[stage.kind].outputs.items()
    }
    manifest["stages"][step.stage] = entry
    _write_manifest(out, manifest)
    save_config(_as_model(run.config), run.folder / "stage.yaml")
    started = time.perf_counter()
    with _logged(run.folder / "log.txt"):
        try:
            KINDS[stage.kind].run(run)
        except BaseException as e:
            print(f"error: stage {step.stage} failed: {e!r}", file=sys.stderr)  # into log.txt
            entry["status"] = "failed"
            _write_manifest(out, manifest)
            raise
    entry |= {"status": "done", "seconds": round(time.perf_counter() - started, 2)}
    entry["finished"] = _now()
    _write_manifest(out, manifest)  # the stage is done from here on
    return float(entry["seconds"])


def _as_model(value: Any) -> BaseModel:
    assert isinstance(value, BaseModel)
    return value


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _run_report(cfg: RecipeConfig, *, rebuild: bool) -> Path | None:
    """RUN_DIR/report.html: the last report stage's page, else one over every eval stage's
    results (None when the recipe has neither)."""
    from instructkit.report import write_report

    target = Path(cfg.out) / "report.html"
    if target.exists() and not rebuild:
        return target
    names = [n for n, s in cfg.stages.items() if s.kind == "report"]
    if names:
        page = Path(output_path(cfg.out, names[-1], KINDS["report"].outputs["html"]))
        if not page.exists():
            return None
        write_atomic(target, [page.read_text("utf-8")])
        return target
    results = [
        Path(output_path(cfg.out, n, KINDS["eval"].outputs["results"]))
        for n, s in cfg.stages.items()
        if s.kind == "eval"
    ]
    results = [p for p in results if p.exists()]
    return write_report(results, target) if results else None


class _Tee:
    """Writes to the console and the stage's log file."""

    def __init__(self, console: TextIO, log: TextIO) -> None:
        self.console, self.log = console, log

    def write(self, text: str) -> int:
        self.log.write(text)
        return self.console.write(text)

    def flush(self) -> None:
        self.log.flush()
        self.console.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


@contextmanager
def _logged(path: Path) -> Iterator[None]:
    with path.open("a", encoding="utf-8") as log:
        with redirect_stdout(_Tee(sys.stdout, log)), redirect_stderr(_Tee(sys.stderr, log)):
            yield
