"""The ``instructkit optimize program`` workflow: tune every predictor's instruction of a DSPy
program that lives in a Python file, on a dataset.

The program is ``FILE.py:OBJECT``: a ``dspy.Module`` instance, or a callable with no arguments
that returns one (a class, a factory). The data are read and split like ``optimize prompt``
(:mod:`instructkit.optimize.prompt`), :class:`~instructkit.optimize.permodule.PerModule` spends
at most ``budget`` task calls on val, and the initial and the best program are then both scored
on test and compared pairwise::

    cfg = ProgramOptConfig(program="pipeline.py:program", data="reviews.jsonl",
                           target="sentiment", labels=["positive", "negative"], out="opt")
    result = run_program_optimization(cfg)          # ProgramOptResult; writes opt/...
    result.best.instructions, result.stages[0].gain, result.test_comparison.diff

Outputs in ``out``: ``result.json`` (stable keys ``initial``/``best`` ``{instructions, val,
test}``, ``stages`` ``[{name, instruction_before, instruction_after, val_gain}]``, ``calls``
``{task, proposer, test}``, ``test_comparison`` ``{delta, ci, p}``, ``wall_s``),
``results.json`` (:class:`~instructkit.evaluate.results.EvalResults` with systems ``initial``
and ``best``, task ``program``, per-item test scores, the instructions per stage in ``meta``:
for ``eval report``/``eval compare``), ``program.json`` (the best program in DSPy's save
format, ``module.load`` reads it) and ``history.jsonl`` (one row per scored item and per
proposer reply: the :class:`~instructkit.jobs.Job` journal, so a killed run resumes without
spending a call twice). The HTML page (``report.html``) is written by
:func:`instructkit.report.program.write_program_report`, one layer up.

Bad input stops before any call: a program file that is missing, fails to import, or lacks the
object (the error names the file and the fix); a program with no predictors; a missing field;
an unknown metric; a metric that fails on a reference; a budget smaller than one evaluation of
the val set.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.saving import get_dependency_versions as dependency_versions
from pydantic import ConfigDict, Field
from tqdm.auto import tqdm

from instructkit.data.sources import SourceField, as_spec, source_name
from instructkit.errors import ConfigError
from instructkit.evaluate.results import EvalResults, paired_results
from instructkit.evaluate.stats import PairedComparison, compare_paired
from instructkit.io import write_atomic
from instructkit.jobs import Job, fingerprint
from instructkit.lm.base import LM
from instructkit.lm.options import LMOptions
from instructkit.optimize.bridge import PROPOSER, TASK, CallCounter, bridge_lm
from instructkit.optimize.permodule import (
    PerModule,
    PerModuleSettings,
    StageResult,
    instructions_of,
)
from instructkit.optimize.prompt import (
    PromptOptConfig,
    _build_lm,
    _check_metric,
    _metric,
    _proposer,
    _split,
)
from instructkit.optimize.search import TEST, mean
from instructkit.optimize.task import InstructionTask

__all__ = [
    "METHOD",
    "ProgramOptConfig",
    "ProgramOptResult",
    "ProgramOutcome",
    "load_program",
    "run_program_optimization",
]

METHOD = "permodule"  # the search behind optimize program (result.json and results.json name it)


class ProgramOptConfig(LMOptions):
    """Settings of :func:`run_program_optimization` (CLI flags, YAML keys and fields alike);
    the LM keys are :class:`~instructkit.lm.options.LMOptions`', as in ``optimize prompt``."""

    model_config = ConfigDict(extra="forbid")

    program: str
    data: SourceField  # a path, or a dataset spec (split, subset, columns, ...; docs/data.md)
    val: SourceField | None = None
    test: SourceField | None = None
    inputs: list[str] = Field(default_factory=list)
    target: str
    labels: list[str] = Field(default_factory=list)
    metric: str | None = None
    budget: int = Field(default=200, ge=1)
    seed: int = 0
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    rounds: int = Field(default=2, ge=1)
    candidates: int = Field(default=6, ge=0)
    proposals: int = Field(default=2, ge=0)
    proposer_lm: str | None = None
    max_tokens: int = Field(default=32, ge=1)
    out: str


@dataclass(frozen=True)
class ProgramOutcome:
    """A program's instructions (per predictor) and its mean scores on val and test."""

    instructions: dict[str, str]
    val: float
    test: float


@dataclass(frozen=True)
class ProgramOptResult:
    """What :func:`run_program_optimization` found; :meth:`to_dict` is ``result.json``.

    ``test_scores`` are the per-item test scores of ``initial`` and ``best``."""

    initial: ProgramOutcome
    best: ProgramOutcome
    stages: list[StageResult]
    calls: dict[str, int]
    test_comparison: PairedComparison
    wall_s: float
    metric: str
    budget: int
    sizes: dict[str, int]
    stopped: str
    out: Path
    test_scores: dict[str, list[float]]

    def to_dict(self) -> dict[str, Any]:
        c = self.test_comparison
        return {
            "initial": vars(self.initial),
            "best": vars(self.best),
            "stages": [
                {
                    "name": s.name,
                    "instruction_before": s.instruction_before,
                    "instruction_after": s.instruction_after,
                    "val_gain": s.gain,
                    "val_alone": s.alone,
                    "adopted_gain": s.adopted_gain,
                }
                for s in self.stages
            ],
            "calls": self.calls,
            "test_comparison": {"delta": c.diff, "ci": [c.ci_low, c.ci_high], "p": c.p_permutation},
            "wall_s": self.wall_s,
            "method": METHOD,
            "metric": self.metric,
            "budget": self.budget,
            "sizes": self.sizes,
            "stopped": self.stopped,
        }


# ---------------------------------------------------------------------------------- the program


def load_program(spec: str) -> Any:
    """The ``dspy.Module`` that ``FILE.py:OBJECT`` names (an instance, or what calling a
    no-argument callable returns). The file's folder is importable while it loads."""
    path = _program_path(spec)
    name = spec.rpartition(":")[2]
    module_name = "instructkit_program_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"{path} cannot be imported as Python.", fix="give a .py file.")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up there
    sys.path.insert(0, str(path.parent))
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ConfigError(
            f"{path} failed to import: {type(exc).__name__}: {exc}",
            fix=f"run `python {path}` to see and fix the error.",
        ) from exc
    finally:
        sys.path.remove(str(path.parent))
    return _as_module(getattr(module, name, None), name, path, module)


def _program_path(spec: str) -> Path:
    file, sep, name = spec.rpartition(":")
    if not sep or not file.endswith(".py") or not name.isidentifier():
        raise ConfigError(
            f"the program '{spec}' is not FILE.py:OBJECT.",
            fix="name the file and the object in it, e.g. pipeline.py:program.",
        )
    path = Path(file)
    if not path.is_file():
        raise ConfigError(f"the program file {path} does not exist.", fix="check the path.")
    return path


def _as_module(obj: Any, name: str, path: Path, module: Any) -> Any:
    fix = (
        f"define `{name} = YourModule()` in {path} (a dspy.Module instance), or a function or "
        "class with no arguments that returns one."
    )
    if obj is None:
        found = [k for k, v in vars(module).items() if isinstance(v, dspy.Module)]
        hint = f" (it has the dspy.Module(s) {', '.join(found)})" if found else ""
        raise ConfigError(f"{path} defines no '{name}'{hint}.", fix=fix)
    if not isinstance(obj, dspy.Module) and callable(obj) and _takes_no_arguments(obj):
        obj = obj()
    if not isinstance(obj, dspy.Module):
        raise ConfigError(
            f"{path}:{name} is a {type(obj).__name__}, not a dspy.Module or a no-argument "
            "callable that returns one.",
            fix=fix,
        )
    return obj


def _takes_no_arguments(fn: Any) -> bool:
    try:
        inspect.signature(fn).bind()
    except (TypeError, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------------- the workflow


def run_program_optimization(
    cfg: ProgramOptConfig,
    *,
    lm: LM | None = None,
    proposer_lm: LM | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> ProgramOptResult:
    """Tune every predictor's instruction of ``cfg.program`` under ``cfg.budget`` val calls
    (module doc). ``lm``/``proposer_lm`` replace the models ``cfg.lm``/``cfg.proposer_lm``
    name; ``fresh`` discards the history of an earlier run instead of resuming it."""
    start = time.monotonic()
    student = load_program(cfg.program)
    initial = instructions_of(student)
    if not initial:
        raise ConfigError(
            f"the program {cfg.program} has no predictors whose instructions could be tuned.",
            fix="give a DSPy module that contains dspy.Predict (or modules built on it).",
        )
    prompt_cfg = _prompt_config(cfg, student)
    task = InstructionTask(tuple(prompt_cfg.inputs), cfg.target, tuple(cfg.labels))
    metric = _metric(prompt_cfg, task)
    parts = _split(prompt_cfg, task)
    examples = {name: task.examples(rows) for name, rows in parts.items() if rows}
    _check_metric(metric, [*examples["val"], *examples["test"]])
    _check_budget(cfg, len(examples["val"]), len(initial))

    job = Job(Path(cfg.out) / "history.jsonl", _fingerprint(cfg), fresh=fresh)
    counter = CallCounter()
    model = _build_lm(cfg.spec, prompt_cfg, lm)
    task_lm = bridge_lm(model, counter=counter, role=TASK, max_tokens=cfg.max_tokens)
    test_lm = bridge_lm(model, counter=counter, role=TEST, max_tokens=cfg.max_tokens)
    settings = PerModuleSettings(
        rounds=cfg.rounds, candidates=cfg.candidates, proposals=cfg.proposals, seed=cfg.seed,
        labels=cfg.labels,
    )  # fmt: skip
    proposer = _proposer(prompt_cfg, proposer_lm, counter)
    opt = PerModule(task_lm, proposer, counter, cfg.budget, settings, history=job)
    n_test = len(examples["test"])
    bar = tqdm(total=cfg.budget + 2 * n_test * len(initial), desc="optimize program",
               initial=sum(int(r["calls"]) for r in job.records if "item" in r), unit="call",
               disable=not progress)  # fmt: skip
    opt.on_call = bar.update
    best_program = opt.compile(
        student,
        trainset=examples.get("train") or examples["val"],
        valset=examples["val"],
        metric=metric[1],
    )
    found = opt.result
    evaluator = opt.evaluator
    assert found is not None and evaluator is not None  # set by compile
    a = evaluator.scores(initial, range(n_test), examples["test"], test_lm, TEST)
    b = evaluator.scores(found.best, range(n_test), examples["test"], test_lm, TEST)
    bar.close()
    wall = float(job.state.get("wall_s", 0.0)) + time.monotonic() - start
    job.save_state(wall_s=wall)
    result = ProgramOptResult(
        initial=ProgramOutcome(found.initial, found.baseline_score, mean(a)),
        best=ProgramOutcome(found.best, found.best_score, mean(b)),
        stages=found.stages,
        calls={
            "task": found.calls[TASK],
            "proposer": found.calls[PROPOSER],
            "test": evaluator.spent(TEST),
        },
        test_comparison=compare_paired(a, b, seed=cfg.seed),
        wall_s=wall,
        metric=metric[0],
        budget=cfg.budget,
        sizes={k: len(v) for k, v in parts.items()},
        stopped=found.stopped,
        out=Path(cfg.out),
        test_scores={"initial": a, "best": b},
    )
    _write_outputs(cfg, best_program, result)
    return result


def _check_budget(cfg: ProgramOptConfig, n_val: int, n_predictors: int) -> None:
    """Before the job opens (a refused budget leaves nothing to resume): the budget covers one
    evaluation of val, estimated as one call per predictor and item."""
    if cfg.budget < n_val * n_predictors:
        raise ConfigError(
            f"the budget of {cfg.budget} calls is smaller than one evaluation of the {n_val} "
            f"val items by the {n_predictors} predictors ({n_val * n_predictors} calls).",
            fix=f"raise --budget to at least {n_val * n_predictors} (several times that to "
            "search), or use a smaller val set.",
        )


def _prompt_config(cfg: ProgramOptConfig, student: Any) -> PromptOptConfig:
    """The data settings as ``optimize prompt`` reads them (its loader, split and metrics);
    the inputs default to the first predictor's input fields."""
    inputs = cfg.inputs or list(student.predictors()[0].signature.input_fields)
    return PromptOptConfig(
        data=cfg.data, val=cfg.val, test=cfg.test, inputs=inputs, target=cfg.target,
        labels=cfg.labels, metric=cfg.metric, budget=cfg.budget, seed=cfg.seed,
        val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, lm=cfg.lm,
        model=cfg.model, base_url=cfg.base_url, api_key_env=cfg.api_key_env, cache=cfg.cache,
        concurrency=cfg.concurrency, proposer_lm=cfg.proposer_lm,
        max_tokens=cfg.max_tokens, out=cfg.out,
    )  # fmt: skip


def _fingerprint(cfg: ProgramOptConfig) -> dict[str, Any]:
    """What must not change for a run to resume: the settings (not where the output and the
    cache are, nor the server URL) and the contents of the program and data files."""
    files = {"data": cfg.data, "val_file": cfg.val, "test_file": cfg.test}
    paths = {k: Path(as_spec(v).path) for k, v in files.items() if v is not None}
    paths["program_file"] = Path(cfg.program.rpartition(":")[0])
    exclude = ("out", "cache", "base_url", "api_key_env", "concurrency")
    return fingerprint(cfg, exclude=exclude, **paths)


def _results(cfg: ProgramOptConfig, result: ProgramOptResult) -> EvalResults:
    """The test comparison as :class:`EvalResults` (systems initial and best, task program;
    the instructions per stage in ``meta``)."""
    return paired_results(
        f"optimize program ({METHOD}) {Path(cfg.program).name} on "
        f"{Path(source_name(cfg.data)).name}",
        "program",
        result.metric,
        result.test_scores,
        result.test_comparison,
        meta={
            "initial": result.initial.instructions,
            "best": result.best.instructions,
            "calls": result.calls,
            "method": METHOD,
            "lm": cfg.spec,
            "program": cfg.program,
        },
    )


def _write_outputs(cfg: ProgramOptConfig, program: Any, result: ProgramOptResult) -> None:
    """program.json (what ``module.save("program.json")`` writes, so ``module.load`` reads it),
    results.json, then result.json, each atomically (result.json last: its presence means the
    run finished)."""
    out = Path(cfg.out)
    state = {**program.dump_state(), "metadata": {"dependency_versions": dependency_versions()}}
    write_atomic(out / "program.json", [json.dumps(state, indent=2, ensure_ascii=False)])
    write_atomic(out / "results.json", [_results(cfg, result).model_dump_json(indent=2)])
    write_atomic(out / "result.json", [json.dumps(result.to_dict(), indent=2, ensure_ascii=False)])
