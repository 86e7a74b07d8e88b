"""The ``instructkit optimize prompt`` workflow: tune the instruction of a one-field task on data.

For users without DSPy code: a dataset (JSON/JSONL rows), the input field(s) and the target
field, optionally the labels and a task description. The data are split with a seed into
train/val/test (or ``val``/``test`` files are given), the search spends at most ``budget`` task
calls on the val set, and the initial and the best instruction are then both scored on the test
set and compared pairwise::

    cfg = PromptOptConfig(data="reviews.jsonl", inputs=["text"], target="label",
                          labels=["positive", "negative"], budget=200, out="opt")
    result = run_prompt_optimization(cfg)          # PromptOptResult; writes opt/...
    result.best.instruction, result.best.test, result.test_comparison.diff

Outputs in ``out``: ``result.json`` (stable keys ``initial``/``best`` ``{instruction, val,
test}``, ``calls`` ``{task, proposer, test}``, ``test_comparison`` ``{delta, ci, p}``,
``wall_s``), ``results.json`` (:class:`~instructkit.evaluate.results.EvalResults` with systems
``initial`` and ``best``, for ``eval report``/``eval compare``), ``history.jsonl`` (one row per
scored item: the :class:`~instructkit.jobs.Job` journal, so a killed run resumes without
spending a call twice) and ``program.json`` (the best program in DSPy's save format). The HTML
page (``report.html``) is written by :func:`instructkit.report.prompt.write_prompt_report`, one
layer up.

Methods are the entries of :data:`METHODS`, each ``method(search: Search) -> str`` returning the
instruction it found best; the workflow keeps the initial one unless the best beats it on val
(a tie keeps it).
``initial`` evaluates the given instruction only (a baseline); ``templates`` races component-
template candidates (and, with a proposer, LM-proposed instructions: :mod:`.ape`) with
successive halving (:func:`~instructkit.optimize.search.halving_schedule`); ``evolutionary`` runs
:class:`~instructkit.optimize.evolutionary.Evolutionary`'s search on the same evaluator, its
generation 0 seeded with template candidates; ``opro`` runs
:class:`~instructkit.optimize.opro.OPRO`'s steps (it needs a proposer, refused before any call
without one). Proposer replies are journaled in
``proposals.jsonl`` beside ``history.jsonl``, so a resumed run replays them without calls.
``gradient``
(:func:`~instructkit.optimize.gradient.search_gradient`) needs a local task model: a gradient-guided
token search on train items, and a soft prompt saved to ``out/soft_prompt/`` and scored on test
(``result.json`` key ``gradient``). Methods get the task LM, the train examples, the settings and
``out`` in ``search.extra``, and may leave ``search.extra["result"]``, a dict added to
``result.json``.

Bad input stops before any call: a missing field (file, row, field), a target outside the labels,
an unknown metric or method, a metric that fails on a reference, a budget smaller than one
evaluation of the val set, an invalid IFEval instruction id or kwargs (with ``metric="ifeval"``).

``metric="ifeval"``: rows hold the input(s) (the first is the prompt) and IFEval's
``instruction_id_list`` and ``kwargs`` instead of a reference; ``target`` names the reply, and
an item scores the share of its instructions the reply follows (strict,
:func:`~instructkit.optimize.metrics.ifeval_metric`).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
from pydantic import ConfigDict, Field
from tqdm.auto import tqdm

from instructkit.data.sources import (
    SourceField,
    as_spec,
    read_source_rows,
    source_label,
    source_name,
)
from instructkit.errors import ConfigError, DataFormatError
from instructkit.evaluate.results import EvalResults, paired_results
from instructkit.evaluate.stats import PairedComparison, compare_paired
from instructkit.io import BadLine, write_atomic
from instructkit.jobs import Job, fingerprint
from instructkit.lm.base import LM
from instructkit.lm.options import LMOptions, build_lm_from
from instructkit.optimize.ape import search_candidates
from instructkit.optimize.bridge import PROPOSER, TASK, CallCounter, bridge_lm
from instructkit.optimize.evolutionary import search_evolutionary
from instructkit.optimize.gradient import GradientSettings, local_model, search_gradient
from instructkit.optimize.metrics import (
    IFEVAL_FIELDS,
    ITEM_METRICS,
    MetricFn,
    check_ifeval_fields,
    ifeval_metric,
    metric_value,
    resolve_metric,
)
from instructkit.optimize.opro import search_opro
from instructkit.optimize.peers import PEER_CALLS, PEERS, min_peer_budget, search_peer
from instructkit.optimize.search import (
    TEST,
    Evaluator,
    MethodFn,
    Search,
    mean,
    search_initial,
)
from instructkit.optimize.task import InstructionTask
from instructkit.optimize.templates import TaskSpec

__all__ = [
    "METHODS",
    "InstructionOutcome",
    "PromptOptConfig",
    "PromptOptResult",
    "default_instruction",
    "run_prompt_optimization",
]

METRIC_ALIASES = {"exact": "exact_match", "lenient": "label"}
NEEDS_PROPOSER = ("opro", *PEERS)  # methods refused without a proposer model


class PromptOptConfig(LMOptions):
    """Settings of :func:`run_prompt_optimization` (CLI flags, YAML keys and fields alike); the
    LM keys of the task model are :class:`~instructkit.lm.options.LMOptions`' (``base_url``,
    ``api_key_env``, ``cache`` and ``concurrency`` apply to the proposer too)."""

    model_config = ConfigDict(extra="forbid")

    data: SourceField  # a path, or a dataset spec (split, subset, columns, ...; docs/data.md)
    val: SourceField | None = None
    test: SourceField | None = None
    inputs: list[str] = Field(min_length=1)
    target: str
    labels: list[str] = Field(default_factory=list)
    task: str | None = None
    instruction: str | None = None
    metric: str | None = None
    method: str = "templates"
    budget: int = Field(default=200, ge=1)
    seed: int = 0
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    candidates: int = Field(default=12, ge=1)
    proposer_lm: str | None = None
    max_tokens: int = Field(default=32, ge=1)
    gradient: GradientSettings = Field(default_factory=GradientSettings)
    out: str


# ------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class InstructionOutcome:
    """An instruction and its mean scores on the val and test sets."""

    instruction: str
    val: float
    test: float


@dataclass(frozen=True)
class PromptOptResult:
    """What :func:`run_prompt_optimization` found; :meth:`to_dict` is ``result.json``.

    ``calls`` counts every run of the job (a resumed run adds what it spent to what the history
    holds); ``test_scores`` are the per-item test scores of ``initial`` and ``best``."""

    initial: InstructionOutcome
    best: InstructionOutcome
    calls: dict[str, int]
    test_comparison: PairedComparison
    wall_s: float
    method: str
    metric: str
    budget: int
    sizes: dict[str, int]
    out: Path
    test_scores: dict[str, list[float]]
    extra: dict[str, Any] = field(default_factory=dict)  # a method's own results (gradient)

    def to_dict(self) -> dict[str, Any]:
        c = self.test_comparison
        return {
            "initial": vars(self.initial),
            "best": vars(self.best),
            "calls": self.calls,
            "test_comparison": {"delta": c.diff, "ci": [c.ci_low, c.ci_high], "p": c.p_permutation},
            "wall_s": self.wall_s,
            "method": self.method,
            "metric": self.metric,
            "budget": self.budget,
            "sizes": self.sizes,
            **self.extra,
        }


# The methods by name, each ``method(search: Search) -> str`` (:mod:`.search`). A new method
# is wired here.
METHODS: dict[str, MethodFn] = {
    "initial": search_initial,
    "templates": search_candidates,
    "evolutionary": search_evolutionary,
    "opro": search_opro,
    "gradient": search_gradient,
    **{name: search_peer(name) for name in PEERS},  # DSPy's COPRO, MIPROv2, GEPA
}


# ------------------------------------------------------------------------------------ the data


def _load(spec: SourceField, task: InstructionTask) -> list[dict[str, Any]]:
    """Rows of ``spec`` (a path or a dataset spec), each checked (fields, labels) with its file
    and row number."""
    rows, path = [], source_label(spec)
    for row_no, value in read_source_rows(spec):
        if isinstance(value, BadLine):
            raise DataFormatError(
                f"not valid JSON: {value.message}.", path=path, row=row_no, fix="repair the line."
            )
        try:
            task.examples([value])
        except DataFormatError as e:
            raise DataFormatError(e.reason, path=path, row=row_no, field=e.field, fix=e.fix) from e
        if task.extra == IFEVAL_FIELDS:
            check_ifeval_fields(value, task.inputs[0], path=path, row_no=row_no)
        rows.append(value)
    return rows


def _split(cfg: PromptOptConfig, task: InstructionTask) -> dict[str, list[dict[str, Any]]]:
    """train/val/test: the given files, the rest cut from ``data`` after a seeded shuffle."""
    rows = _load(cfg.data, task)
    random.Random(cfg.seed).shuffle(rows)
    parts: dict[str, list[dict[str, Any]]] = {}
    for name, path, fraction in (
        ("test", cfg.test, cfg.test_fraction),
        ("val", cfg.val, cfg.val_fraction),
    ):
        if path is not None:
            parts[name] = _load(path, task)
            continue
        cut = max(1, round(len(rows) * fraction))
        if cut >= len(rows):
            raise ConfigError(
                f"{source_name(cfg.data)} has {len(rows)} rows, too few to split off a {name} set.",
                fix=f"give more rows, or a --{name} file.",
            )
        parts[name], rows = rows[:cut], rows[cut:]
    parts["train"] = rows
    return parts


def _metric_name(cfg: PromptOptConfig) -> str:
    default = "label" if cfg.labels else "exact_match"
    return METRIC_ALIASES.get(cfg.metric or default, cfg.metric or default)


def _task(cfg: PromptOptConfig) -> InstructionTask:
    """The task; with ``ifeval`` rows carry IFEval's checks and need no reference answer."""
    ifeval = _metric_name(cfg) == "ifeval"
    return InstructionTask(
        tuple(cfg.inputs),
        cfg.target,
        tuple(cfg.labels),
        extra=IFEVAL_FIELDS if ifeval else (),
        reference=not ifeval,
    )


def _metric(cfg: PromptOptConfig, task: InstructionTask) -> tuple[str, MetricFn]:
    name = _metric_name(cfg)
    if name == "label":
        if not task.labels:
            raise ConfigError("the metric 'lenient' needs labels.", fix="give --labels a,b,...")
        return "label", task.label_metric()
    if name == "ifeval":
        return "ifeval", ifeval_metric(task.inputs[0], task.target)
    if name not in ITEM_METRICS:
        raise ConfigError(
            f"unknown metric '{cfg.metric}' for optimize prompt.",
            fix=f"use exact, lenient (needs labels), ifeval or one of {', '.join(ITEM_METRICS)}.",
        )
    return resolve_metric(name, task.target)


def _check_metric(metric: tuple[str, MetricFn], examples: Sequence[Any]) -> None:
    """The metric runs on each example's own reference before any call (a failure names it)."""
    for i, example in enumerate(examples):
        metric_value(metric[1], metric[0], example, dspy.Prediction(**example.labels()), i)


def _method(cfg: PromptOptConfig, proposer_lm: LM | None) -> MethodFn:
    if cfg.method in NEEDS_PROPOSER and cfg.proposer_lm is None and proposer_lm is None:
        raise ConfigError(
            f"the method '{cfg.method}' needs a proposer model that writes the instructions.",
            fix="pass --proposer-lm BACKEND[:MODEL] (e.g. openai:gpt-4o-mini), or use "
            "--method templates or evolutionary, which work without one.",
        )
    if cfg.method in METHODS:
        return METHODS[cfg.method]
    raise ConfigError(f"unknown method '{cfg.method}'.", fix=f"use one of: {', '.join(METHODS)}.")


def default_instruction(cfg: PromptOptConfig) -> str:
    """The instruction built from the task description and the labels."""
    text = _description(cfg)
    text = text[:1].upper() + text[1:].rstrip(".") + "."
    if cfg.labels:
        text += f" Answer with one of: {', '.join(cfg.labels)}."
    return text


def _description(cfg: PromptOptConfig) -> str:
    return cfg.task or f"give the {cfg.target} for the {' and '.join(cfg.inputs)}"


def _build_lm(spec: str, cfg: PromptOptConfig, lm: LM | None) -> LM:
    """``lm`` when given (tests, Python callers), else the LM that ``spec`` names."""
    if lm is not None:
        return lm
    served = cfg.model_dump(include={"base_url", "api_key_env", "cache", "concurrency"})
    return build_lm_from(LMOptions(lm=spec, **served))


# ---------------------------------------------------------------------------------- the outputs


def _results(cfg: PromptOptConfig, result: PromptOptResult) -> EvalResults:
    """The test comparison as :class:`EvalResults` (systems initial and best, task prompt)."""
    return paired_results(
        f"optimize prompt ({cfg.method}) on {Path(source_name(cfg.data)).name}",
        "prompt",
        result.metric,
        result.test_scores,
        result.test_comparison,
        meta={
            "initial": result.initial.instruction,
            "best": result.best.instruction,
            "calls": result.calls,
            "method": cfg.method,
            "lm": cfg.spec,
        },
    )


def _write_outputs(cfg: PromptOptConfig, task: InstructionTask, result: PromptOptResult) -> None:
    """program.json, results.json and result.json, each atomically (result.json last: its
    presence means the run finished)."""
    out = Path(cfg.out)
    state = task.program(result.best.instruction).dump_state()
    write_atomic(out / "program.json", [json.dumps(state, indent=2, ensure_ascii=False)])
    write_atomic(out / "results.json", [_results(cfg, result).model_dump_json(indent=2)])
    write_atomic(out / "result.json", [json.dumps(result.to_dict(), indent=2, ensure_ascii=False)])


# ---------------------------------------------------------------------------------- the workflow


def run_prompt_optimization(
    cfg: PromptOptConfig,
    *,
    lm: LM | None = None,
    proposer_lm: LM | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> PromptOptResult:
    """Search an instruction for ``cfg``'s task under ``cfg.budget`` val calls (module doc).

    ``lm``/``proposer_lm`` replace the models ``cfg.lm``/``cfg.proposer_lm`` name; ``fresh``
    discards the history of an earlier run instead of resuming it."""
    start = time.monotonic()
    method = _method(cfg, proposer_lm)
    task = _task(cfg)
    metric = _metric(cfg, task)
    parts = _split(cfg, task)
    examples = {name: task.examples(rows) for name, rows in parts.items() if rows}
    _check_metric(metric, [*examples["val"], *examples["test"]])
    _check_budget(cfg, len(examples["val"]))
    initial = cfg.instruction or default_instruction(cfg)

    out = Path(cfg.out)
    journals = {  # proposer replies, and a DSPy optimizer's replies: replayed on resume
        "proposals": out / "proposals.jsonl",
        PEER_CALLS: out / f"{PEER_CALLS}.jsonl",
    }
    job = Job(out / "history.jsonl", _fingerprint(cfg), fresh=fresh, journals=journals)
    counter = CallCounter(budgets={TASK: cfg.budget - _spent(job.records, "val")})
    model = _build_lm(cfg.spec, cfg, lm)
    if cfg.method == "gradient":  # it reads the weights: refuse another LM before any call
        local_model(model)
    lms = {
        "val": bridge_lm(model, counter=counter, role=TASK, max_tokens=cfg.max_tokens),
        TEST: bridge_lm(model, counter=counter, role=TEST, max_tokens=cfg.max_tokens),
    }
    spent = _spent(job.records, "val") + _spent(job.records, TEST)
    bar = tqdm(
        total=cfg.budget + 2 * len(examples["test"]), initial=spent, desc="optimize",
        unit="call", disable=not progress,
    )  # fmt: skip
    evaluator = Evaluator(job, task, metric, lms, examples, on_call=bar.update)
    proposer_model = _proposer_model(cfg, proposer_lm)
    proposer = _proposer(cfg, proposer_model, counter)

    initial_rows = evaluator.rows(initial, range(len(examples["val"])))
    initial_val = mean([float(r["score"]) for r in initial_rows])
    # What the method may spend is fixed by the initial's cost, not by what earlier runs spent:
    # a resumed run must plan the same search to replay it from the history.
    left = cfg.budget - _spent(initial_rows, "val")
    spec = _spec(cfg, parts["train"] or parts["val"])
    n_val = len(examples["val"])
    search = Search(task, initial, spec, evaluator, n_val, left, cfg.seed, cfg.candidates, proposer)
    search.extra.update(
        lm=model, train=examples.get("train", []), gradient=cfg.gradient, out=Path(cfg.out),
        max_tokens=cfg.max_tokens, proposer_model=proposer_model, job=job, counter=counter,
    )  # fmt: skip
    best = method(search)
    if evaluator.mean(best) <= initial_val:  # a tie on val keeps the initial instruction
        best = initial

    n_test = range(len(examples["test"]))
    a, b = evaluator.scores(initial, n_test, TEST), evaluator.scores(best, n_test, TEST)
    wall = float(job.state.get("wall_s", 0.0)) + time.monotonic() - start
    job.save_state(wall_s=wall)
    result = PromptOptResult(
        initial=InstructionOutcome(initial, initial_val, mean(a)),
        best=InstructionOutcome(best, evaluator.mean(best), mean(b)),
        calls={
            "task": _spent(job.records, "val") + _peer_calls(job, TASK),
            "proposer": sum(int(r["calls"]) for r in job.records_of("proposals"))
            + _peer_calls(job, PROPOSER),
            "test": _spent(job.records, TEST),
        },
        test_comparison=compare_paired(a, b, seed=cfg.seed),
        wall_s=wall,
        method=cfg.method,
        metric=metric[0],
        budget=cfg.budget,
        sizes={k: len(v) for k, v in parts.items()},
        out=Path(cfg.out),
        test_scores={"initial": a, "best": b},
        extra=search.extra.get("result", {}),
    )
    bar.close()
    _write_outputs(cfg, task, result)
    return result


def _check_budget(cfg: PromptOptConfig, n_val: int) -> None:
    if cfg.budget < n_val:
        raise ConfigError(
            f"the budget of {cfg.budget} calls is smaller than one evaluation of the "
            f"{n_val} val items.",
            fix=f"raise --budget to at least {n_val}, or use a smaller val set.",
        )
    if cfg.method in PEERS:  # the initial's and the pick's val evaluations, and the peer's own
        least = 2 * n_val + min_peer_budget(cfg.method, n_val)
        if cfg.budget < least:
            raise ConfigError(
                f"the budget of {cfg.budget} calls leaves DSPy's {cfg.method} no search: it "
                f"needs {least} with {n_val} val items (two val evaluations and its own plan).",
                fix=f"raise --budget to at least {least}, or use a smaller val set.",
            )


def _spec(cfg: PromptOptConfig, rows: Sequence[dict[str, Any]]) -> TaskSpec:
    """The task spec the template candidates are filled from (a few rows as examples)."""
    examples = rows[:8] if _metric_name(cfg) != "ifeval" else []  # ifeval rows hold no answer
    return TaskSpec(_description(cfg), cfg.inputs, cfg.target, cfg.labels, examples=examples)


def _fingerprint(cfg: PromptOptConfig) -> dict[str, Any]:
    """What must not change for a run to resume: the settings (not where the output and the
    cache are, nor the server URL) and the contents of the data files."""
    files = {"data": cfg.data, "val_file": cfg.val, "test_file": cfg.test}
    paths = {k: Path(as_spec(v).path) for k, v in files.items() if v is not None}
    exclude = ("out", "cache", "base_url", "api_key_env", "concurrency")
    return fingerprint(cfg, exclude=exclude, **paths)


def _spent(rows: Sequence[dict[str, Any]], phase: str) -> int:
    return sum(int(r["calls"]) for r in rows if r["phase"] == phase)


def _proposer_model(cfg: PromptOptConfig, given: LM | None) -> LM | None:
    """The proposer model ``cfg.proposer_lm`` names, else ``given`` (None: there is none)."""
    return _build_lm(cfg.proposer_lm, cfg, given) if cfg.proposer_lm else given


def _proposer(cfg: PromptOptConfig, given: LM | None, counter: CallCounter) -> Any:
    """The proposer model as a counted DSPy LM (role ``proposer``), or None."""
    model = _proposer_model(cfg, given)
    return bridge_lm(model, counter=counter, role=PROPOSER) if model is not None else None


def _peer_calls(job: Job, role: str) -> int:
    """Calls a DSPy optimizer made as ``role``: its journaled replies (one per call, in this
    run and the runs before it; replayed ones are not asked again)."""
    return sum(r.get("tag") == role for r in job.records_of(PEER_CALLS))
