"""Per-module instruction search: tune the instruction of every predictor of a DSPy program.

A multi-stage program (extract a phrase, then classify it) has one instruction per predictor,
and only the final output has a reference. :class:`PerModule` tunes them by coordinate ascent
(as MIPRO's per-module proposals, Opsahl-Ong et al. 2024, are scored through the whole
program): one stage at a time, the others held at their current best, each candidate scored by
the *final* metric. It has DSPy's optimizer contract::

    counter = CallCounter()
    task_lm = bridge_lm(LocalLM.load("smollm2-135m-instruct"), counter=counter, role=TASK)
    opt = PerModule(task_lm, None, counter, budget=200, seed=0, history="permodule.jsonl")
    best = opt.compile(program, trainset=train, valset=val, metric=metric)
    for stage in opt.result.stages:
        stage.name, stage.instruction_after, stage.gain     # gain with only this stage changed

Choices taken:

- **Candidates per stage**: component-template instructions
  (:func:`~instructkit.optimize.templates.generate_candidates`) from a task spec built from the
  stage's signature (its input fields, its output field, the first sentence of its current
  instruction as the task), and, with a ``proposer_lm``, rewrites grounded in what that stage
  received and produced on items the program got wrong (DSPy traces,
  :func:`~instructkit.optimize.propose.rewrite_prompt`).
- **Credit assignment**: a stage's candidates are raced with only that stage's instruction
  changed, scored by the final metric. The race is successive halving
  (:func:`~instructkit.optimize.search.halving_schedule`) on a seeded order of the valset that
  alternates items the current program fails and items it passes (so the first, small rungs
  can tell candidates apart); its winner is scored on the whole valset and adopted only when it
  beats the current program there.
- **Rounds**: ``rounds`` passes over the stages (a later stage's change can make an earlier
  stage's candidate better); a round that adopts nothing ends the search when there is no
  proposer (the next round would race the same candidates in the same context).
- **Per-stage gain**: after the search, each changed stage is scored alone (the initial program
  with only that stage's new instruction) on the valset: ``gain`` = that score - the baseline.
  Gains of interacting stages need not add up to the total gain.
- **Budget**: one shared budget of task calls counted at the engine. The calls per item are
  measured (the most any item took), not assumed; the baseline and the per-stage scoring are
  reserved first; each race may spend an even share of what is left among the stages still to
  race in its round (a later round races with what the earlier ones left); no item is started
  unless its calls fit. The counter's task budget is lowered to the same limit
  while :meth:`PerModule.compile` runs, as a backstop.
- **Resume**: with ``history`` (a path, or a :class:`~instructkit.jobs.Job` the caller opened),
  every scored item and every proposer reply is a journal row. The search is a deterministic
  function of the seed and those rows, so a rerun after a kill replays them without calls and
  continues.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
from dspy.teleprompt.teleprompt import Teleprompter
from pydantic import BaseModel, ConfigDict, Field

from instructkit.config import load_config
from instructkit.errors import ConfigError
from instructkit.jobs import Job, fingerprint
from instructkit.optimize.adapter import PlainAdapter
from instructkit.optimize.bridge import PROPOSER, TASK, BudgetExceeded, CallCounter
from instructkit.optimize.metrics import MetricFn, metric_value, resolve_metric
from instructkit.optimize.propose import (
    Failure,
    proposal_problems,
    propose_rewrite,
    rewrite_prompt,
    split_sentences,
)
from instructkit.optimize.scoring import score_program
from instructkit.optimize.search import TEST, fit_halving, halving_schedule, mean
from instructkit.optimize.student import check_examples, check_wiring
from instructkit.optimize.templates import TaskSpec, describe_data, generate_candidates

__all__ = [
    "PerModule",
    "PerModuleResult",
    "PerModuleSettings",
    "ProgramEvaluator",
    "StageResult",
    "instructions_of",
    "with_instructions",
]

VAL = "val"


class PerModuleSettings(BaseModel):
    """The search's settings (see the module docstring); unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(2, ge=1)
    candidates: int = Field(6, ge=0)
    proposals: int = Field(2, ge=0)
    seed: int = 0
    labels: list[str] = []
    max_failures: int = Field(3, ge=0)
    proposer_temperature: float = Field(0.7, ge=0.0)


@dataclass(frozen=True)
class StageResult:
    """One predictor: its instruction before and after, the initial program's val score
    (``baseline``), the val score with only this stage changed (``alone``; None when the budget
    ran out first) and what its adopted changes added during the ascent (``adopted_gain``)."""

    name: str
    instruction_before: str
    instruction_after: str
    baseline: float
    alone: float | None
    adopted_gain: float

    @property
    def gain(self) -> float | None:
        """``alone - baseline``: the val gain of this stage's change by itself."""
        return None if self.alone is None else self.alone - self.baseline


@dataclass
class PerModuleResult:
    """What :meth:`PerModule.compile` found and spent; ``history`` has one row per race."""

    initial: dict[str, str]
    best: dict[str, str]
    baseline_score: float
    best_score: float
    stages: list[StageResult]
    calls: dict[str, int]
    calls_per_item: int
    stopped: str
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_time: float = 0.0

    @property
    def total_gain(self) -> float:
        return self.best_score - self.baseline_score


def instructions_of(program: Any) -> dict[str, str]:
    """``{predictor name: instruction}`` of ``program``, in predictor order."""
    return {name: str(p.signature.instructions) for name, p in program.named_predictors()}


def with_instructions(program: Any, instructions: Mapping[str, str]) -> Any:
    """A deep copy of ``program`` whose named predictors carry ``instructions``."""
    copy = program.deepcopy()
    for name, predictor in copy.named_predictors():
        if name in instructions:
            predictor.signature = predictor.signature.with_instructions(instructions[name])
    return copy


class _OutOfBudget(Exception):
    """The next item does not fit in what is left of the budget (nothing was spent on it)."""


# ---------------------------------------------------------------------------------- evaluator


class ProgramEvaluator:
    """Scores instruction settings of one program item by item through a journal.

    A row holds the phase, the instructions, the item index, the score, the calls, the final
    outputs and the trace (what each predictor received and produced); a ``test`` row also
    keeps the item's fields (``example``, for the report's examples). An item already in the
    journal is read back, not called again. ``limit`` (phase ``val``) stops a new item whose
    calls (the most measured so far) would not fit.
    """

    def __init__(
        self, job: Any, student: Any, metric: tuple[str, MetricFn], adapter: Any = None
    ) -> None:
        self.job, self.student, self.metric = job, student, metric
        self.adapter = adapter if adapter is not None else PlainAdapter()
        self.names = list(instructions_of(student))
        self._done: dict[tuple[str, tuple[str, ...], int], dict[str, Any]] = {
            (r["phase"], self._key(r["instructions"]), int(r["item"])): r
            for r in job.records
            if "item" in r
        }
        self._programs: dict[tuple[str, ...], Any] = {}
        self._used: dict[tuple[tuple[str, ...], int], dict[str, Any]] = {}
        self.limit: int | None = None
        self.lost = int(getattr(job, "state", {}).get("lost_calls", 0))
        self.on_call: Callable[[int], None] | None = None

    def _key(self, instructions: Mapping[str, str]) -> tuple[str, ...]:
        return tuple(instructions[n] for n in self.names)

    def spent(self, phase: str = VAL) -> int:
        """Calls spent on ``phase`` in the journal (for ``val``, plus calls of items cut by the
        budget): this run's and the earlier runs'."""
        done = sum(int(r["calls"]) for r in self.job.records if r.get("phase") == phase)
        return done + (self.lost if phase == VAL else 0)

    @property
    def used(self) -> int:
        """Calls of the val items this run has asked for so far, replayed ones included: what
        an unkilled run had spent at the same point (plans and the limit use this)."""
        return sum(int(r["calls"]) for r in self._used.values())

    @property
    def calls_per_item(self) -> int:
        """The most calls one val item this run asked for took (at least 1)."""
        return max([1, *(int(r["calls"]) for r in self._used.values())])

    def rows(
        self,
        instructions: Mapping[str, str],
        items: Sequence[int],
        examples: Sequence[Any],
        lm: Any,
        phase: str = VAL,
    ) -> list[dict[str, Any]]:
        """The rows of ``instructions`` on ``items`` (indices of ``examples``), scoring the
        missing ones (raises :class:`_OutOfBudget` before an item that does not fit)."""
        key = self._key(instructions)
        return [self._row(key, instructions, i, examples, lm, phase) for i in items]

    def scores(
        self, instructions: Mapping[str, str], items: Sequence[int], examples: Sequence[Any],
        lm: Any, phase: str = VAL,
    ) -> list[float]:  # fmt: skip
        return [float(r["score"]) for r in self.rows(instructions, items, examples, lm, phase)]

    def _row(
        self,
        key: tuple[str, ...],
        instructions: Mapping[str, str],
        i: int,
        examples: Sequence[Any],
        lm: Any,
        phase: str,
    ) -> dict[str, Any]:
        done = self._done.get((phase, key, i))
        if done is not None:
            if phase == VAL:
                self._used[(key, i)] = done
            return done
        if phase == VAL and self.limit is not None:
            if self.used + self.calls_per_item > self.limit:
                raise _OutOfBudget
        row = self._score(key, instructions, examples[i], lm)
        row.update(phase=phase, item=i)
        if phase == TEST:
            row["example"] = dict(examples[i].items())
        self.job.append([row])
        self._done[(phase, key, i)] = row
        if phase == VAL:
            self._used[(key, i)] = row
        if self.on_call is not None:
            self.on_call(int(row["calls"]))
        return row

    def _score(
        self, key: tuple[str, ...], instructions: Mapping[str, str], example: Any, lm: Any
    ) -> dict[str, Any]:
        if key not in self._programs:
            self._programs[key] = with_instructions(self.student, instructions)
        program = self._programs[key]
        stage_of = {id(p): name for name, p in program.named_predictors()}
        counter, role = lm.engine.counter, lm.engine.role
        before = counter.count(role)
        with dspy.context(trace=[]):
            try:
                item = score_program(
                    program, [example], self.metric[1], lm=lm, adapter=self.adapter,
                    name=self.metric[0],
                ).items[0]  # fmt: skip
            except BudgetExceeded as exc:
                self.lost += counter.count(role) - before  # spent on an item that did not finish
                self.job.save_state(lost_calls=self.lost)
                raise _OutOfBudget from exc
            trace = [
                {"stage": stage_of.get(id(p), "?"), "inputs": _plain(ins), "outputs": _plain(out)}
                for p, ins, out in dspy.settings.trace
            ]
        return {
            "instructions": dict(instructions),
            "score": item.score,
            "calls": counter.count(role) - before,
            "error": item.error,
            "outputs": _plain(item.outputs or {}),
            "trace": trace,
        }


def _plain(values: Any) -> dict[str, str]:
    items = values.items() if hasattr(values, "items") else []
    return {str(k): str(v) for k, v in items}


# ----------------------------------------------------------------------------------- optimizer


class PerModule(Teleprompter):
    """Coordinate ascent over the instructions of every predictor (see the module docstring).

    ``task_lm`` must be a :func:`~instructkit.optimize.bridge.bridge_lm` counted by ``counter``
    under the task role; ``proposer_lm`` (role proposer) is optional. ``budget`` is in task
    calls. ``history`` is a journal path or an open :class:`~instructkit.jobs.Job`. After
    :meth:`compile`, ``self.result`` is the :class:`PerModuleResult` and ``self.evaluator`` the
    :class:`ProgramEvaluator` (a workflow scores the test set with it, in the same journal).
    """

    def __init__(
        self,
        task_lm: Any,
        proposer_lm: Any | None,
        counter: CallCounter,
        budget: int,
        settings: PerModuleSettings | None = None,
        *,
        adapter: Any = None,
        history: str | Path | Job | None = None,
        fresh: bool = False,
        **overrides: Any,
    ) -> None:
        super().__init__()
        base = (settings or PerModuleSettings()).model_dump()
        self.settings = load_config(PerModuleSettings, **{**base, **overrides})
        self.task_lm, self.proposer_lm, self.counter = task_lm, proposer_lm, counter
        self.budget = budget
        self.adapter = adapter if adapter is not None else PlainAdapter()
        self.history, self.fresh = history, fresh
        self.result: PerModuleResult | None = None
        self.evaluator: ProgramEvaluator | None = None
        self.on_call: Callable[[int], None] | None = None
        check_wiring(self, "PerModule")

    def compile(
        self,
        student: Any,
        *,
        trainset: Sequence[Any],
        valset: Sequence[Any] | None = None,
        metric: str | MetricFn,
        teacher: Any = None,
    ) -> Any:
        """A deep copy of ``student`` whose predictors carry the best instructions found.

        Every check (predictors, examples, metric, budget, LM wiring) runs before any call.
        """
        if teacher is not None:
            raise ConfigError(
                "PerModule searches instructions and takes no teacher program.",
                fix="pass trainset=, valset= and metric= only.",
            )
        started = time.monotonic()
        saved = dict(self.counter.budgets)  # the search lowers the task budget as a backstop
        try:
            search = _Ascent(self, student, list(trainset), list(valset or trainset), metric)
            best = search.run()
            self.result = search.result(best, time.monotonic() - started)
        finally:
            self.counter.budgets.clear()
            self.counter.budgets.update(saved)
        return with_instructions(student, best)


# --------------------------------------------------------------------------------- the search


class _Ascent:
    """One run of :meth:`PerModule.compile`: checks, journal, races, adoption, per-stage gains."""

    def __init__(
        self,
        opt: PerModule,
        student: Any,
        trainset: list[Any],
        valset: list[Any],
        metric: str | MetricFn,
    ) -> None:
        self.opt, self.cfg, self.student = opt, opt.settings, student
        self.initial = _predictors(student)
        self.names = list(self.initial)
        self.trainset, self.valset = trainset, valset
        check_examples(valset, "valset" if valset is not trainset else "trainset")
        check_examples(trainset, "trainset")
        self.metric = _check_metric(metric, valset, student)
        self.estimate = len(valset) * len(self.names)  # one predictor call per stage and item
        _check_budget(opt, len(valset), self.estimate)
        self.job = _open_job(opt, self)
        self.evaluator = opt.evaluator = ProgramEvaluator(
            self.job, student, self.metric, opt.adapter
        )
        self.evaluator.on_call = opt.on_call
        self.evaluator.limit = opt.budget
        limit = opt.counter.count(TASK) + opt.budget - self.evaluator.spent()
        opt.counter.budgets[TASK] = min(limit, opt.counter.budgets.get(TASK, limit))  # backstop
        self.order = random.Random(self.cfg.seed).sample(range(len(valset)), len(valset))
        self.proposals = {
            int(r["number"]): r for r in self.job.records if r.get("phase") == PROPOSER
        }
        self.proposal_no = 0
        self.races: list[dict[str, Any]] = []
        self.adopted = dict.fromkeys(self.names, 0.0)
        self.stopped = "rounds"
        self.baseline = self.best_score = 0.0

    # -- the run, top to bottom

    def run(self) -> dict[str, str]:
        try:
            self.baseline = self._full(self.initial)
        except _OutOfBudget:
            raise BudgetExceeded(
                f"the budget of {self.opt.budget} task calls ran out while scoring the initial "
                f"program on the {len(self.valset)} valset items (it makes more calls per item "
                "than it has predictors).",
                fix="raise the budget to several evaluations of the valset.",
            ) from None
        current, score = dict(self.initial), self.baseline
        slots = [(r, k, name) for r in range(self.cfg.rounds) for k, name in enumerate(self.names)]
        try:
            for rnd, k, name in slots:
                budget = self._slot_budget(len(self.names) - k)
                if budget < len(self.valset):  # not even the winner's full score would fit
                    self.races.append(_race_row(rnd, name, [], None, 0.0, score, False))
                    self.stopped = "budget"
                    continue
                pool = self._pool(name, current)
                winner, full = self._race(name, current, pool, budget)
                adopted = winner is not None and full > score
                self.races.append(_race_row(rnd, name, pool, winner, full, score, adopted))
                if adopted and winner is not None:
                    self.adopted[name] += full - score
                    current, score = {**current, name: winner}, full
                if name == self.names[-1] and self._converged(rnd):
                    self.stopped = "converged"
                    break
        except _OutOfBudget:
            self.stopped = "budget"
        self.best_score = score
        return current

    def _slot_budget(self, stages_left: int) -> int:
        """Item evaluations the next race may spend: an even share, among the stages still to
        race in this round, of what is left after the reserve for scoring each stage alone at
        the end (a later round races with what the earlier ones left)."""
        reserve = len(self.valset) * max(0, len(self.names) - 1) * self.evaluator.calls_per_item
        left = self.opt.budget - self.evaluator.used - reserve
        return max(0, left // stages_left) // self.evaluator.calls_per_item

    def _race(
        self, name: str, current: dict[str, str], pool: list[str], budget: int
    ) -> tuple[str | None, float]:
        """Successive halving over ``pool`` (stage ``name`` changed only); the winner and its
        full-valset score, or (None, 0) when no candidate can race."""
        n, base = fit_halving(len(pool), len(self.valset), budget)
        arms, order = pool[:n], self._race_order(current)
        for survivors, items in halving_schedule(n, len(self.valset), base) if n else []:
            shown = order[:items]
            means = {a: mean(self._scores({**current, name: a}, shown)) for a in arms[:survivors]}
            arms = sorted(arms[:survivors], key=lambda a: -means[a])
        if not arms:
            return None, 0.0
        return arms[0], self._full({**current, name: arms[0]})

    def _race_order(self, current: Mapping[str, str]) -> list[int]:
        """Val items in a seeded order, alternating items the current program fails and items
        it passes: the first rungs then hold the items where a change can show (on passed items
        alone every candidate ties, and ties keep the pool's order)."""
        scores = self._scores(current, range(len(self.valset)))  # known: no call
        failed = [i for i in self.order if scores[i] < 1.0]
        passed = [i for i in self.order if scores[i] >= 1.0]
        mixed = [i for pair in zip(failed, passed, strict=False) for i in pair]
        short = min(len(failed), len(passed))
        return mixed + failed[short:] + passed[short:]

    def _scores(self, instructions: Mapping[str, str], items: Sequence[int]) -> list[float]:
        return self.evaluator.scores(instructions, items, self.valset, self.opt.task_lm)

    def _full(self, instructions: Mapping[str, str]) -> float:
        return mean(self._scores(instructions, range(len(self.valset))))

    def _converged(self, rnd: int) -> bool:
        """Round ``rnd`` raced every stage (none skipped for budget) and adopted nothing, and no
        proposer brings new candidates: a next round would race the same ones in the same
        program."""
        adopted = any(r["adopted"] for r in self.races if r["round"] == rnd)
        return self.opt.proposer_lm is None and self.stopped != "budget" and not adopted

    # -- candidates

    def _pool(self, name: str, current: dict[str, str]) -> list[str]:
        """Template candidates, then (with a proposer) rewrites from this stage's traces;
        without the current instruction or repeats."""
        pool = _templates(self._spec(name, current[name]), self.cfg.candidates, self.cfg.seed)
        if self.opt.proposer_lm is not None:
            pool += [self._propose(name, current) for _ in range(self.cfg.proposals)]
        required = [self._output(name)]
        kept = [
            t for t in pool if t and not proposal_problems(t, required=required, max_chars=2000)
        ]
        return [t for t in dict.fromkeys(kept) if t != current[name]]

    def _output(self, name: str) -> str:
        return str(list(self._predictor(name).signature.output_fields)[-1])

    def _predictor(self, name: str) -> Any:
        return dict(self.student.named_predictors())[name]

    def _spec(self, name: str, instruction: str) -> TaskSpec | None:
        """The stage as a task spec: its fields, its instruction's first sentence as the task,
        example rows from the trainset when the data holds the stage's fields."""
        sig = self._predictor(name).signature
        inputs, output = list(sig.input_fields), self._output(name)
        first = (split_sentences(instruction)[:1] or ["do the task"])[0].rstrip(".")
        rows = [dict(e.items()) for e in self.trainset]
        rows = [r for r in rows if all(r.get(k) is not None for k in (*inputs, output))][:8]
        labels = self.cfg.labels if rows else []
        try:
            return TaskSpec(first[:1].lower() + first[1:], inputs, output, labels, examples=rows)
        except ConfigError:
            return None

    def _propose(self, name: str, current: dict[str, str]) -> str:
        """A proposer rewrite of stage ``name``'s instruction, grounded in what the stage got
        and gave on failing items (journaled replies are replayed)."""
        number = self.proposal_no
        self.proposal_no += 1
        if number in self.proposals:
            return str(self.proposals[number]["text"])
        rows = self.evaluator.rows(current, range(len(self.valset)), self.valset, self.opt.task_lm)
        failures = _failures(rows, name, self.valset, self.cfg.max_failures)
        spec = self._spec(name, current[name])
        summary = describe_data(spec) if spec and spec.examples else f"Stage {name} of the program."
        prompt = rewrite_prompt(current[name], failures, summary, structure=self._structure(name))
        before = self.opt.counter.count(PROPOSER)
        seed = random.Random(self.cfg.seed * 1_000_003 + number).randrange(2**31)
        try:
            text = propose_rewrite(
                self.opt.proposer_lm, prompt, seed=seed, temperature=self.cfg.proposer_temperature
            )
        except BudgetExceeded:
            text = ""  # the proposer's own budget ran out: templates only from now
        calls = self.opt.counter.count(PROPOSER) - before
        row = {"phase": PROPOSER, "number": number, "stage": name, "text": text, "calls": calls}
        self.job.append([row])
        self.proposals[number] = row
        return text

    def _structure(self, name: str) -> str:
        parts = []
        for stage, p in self.student.named_predictors():
            sig = p.signature
            ins, outs = ", ".join(sig.input_fields), ", ".join(sig.output_fields)
            mark = "  <- the stage to improve" if stage == name else ""
            parts.append(f"{stage}: {type(p).__name__}({ins} -> {outs}){mark}")
        return "a pipeline of stages, in order:\n" + "\n".join(parts)

    # -- result

    def _alone(self, name: str, after: str) -> float | None:
        """The val score of the initial program with only ``name`` changed (None: no budget)."""
        if after == self.initial[name]:
            return self.baseline
        try:
            return self._full({**self.initial, name: after})
        except _OutOfBudget:
            return None

    def result(self, best: dict[str, str], wall: float) -> PerModuleResult:
        stages = [
            StageResult(
                name, self.initial[name], best[name], self.baseline,
                self._alone(name, best[name]), self.adopted[name],
            )
            for name in self.names
        ]  # fmt: skip
        proposer = sum(int(r["calls"]) for r in self.job.records if r.get("phase") == PROPOSER)
        return PerModuleResult(
            initial=dict(self.initial),
            best=dict(best),
            baseline_score=self.baseline,
            best_score=self.best_score,
            stages=stages,
            calls={TASK: self.evaluator.used + self.evaluator.lost, PROPOSER: proposer},
            calls_per_item=self.evaluator.calls_per_item,
            stopped=self.stopped,
            history=list(self.races),
            wall_time=wall,
        )


def _race_row(
    rnd: int, name: str, pool: list[str], winner: str | None, full: float, score: float,
    adopted: bool,
) -> dict[str, Any]:  # fmt: skip
    return {
        "round": rnd,
        "stage": name,
        "candidates": len(pool),
        "winner": winner,
        "winner_val": full if winner is not None else None,
        "current_val": score,
        "adopted": adopted,
    }


def _templates(spec: TaskSpec | None, n: int, seed: int) -> list[str]:
    if spec is None or n == 0:
        return []
    try:
        return [c.text for c in generate_candidates(spec, n, seed=seed)]
    except ConfigError:
        return []


def _failures(
    rows: Sequence[Mapping[str, Any]], name: str, examples: Sequence[Any], limit: int
) -> list[Failure]:
    """What stage ``name`` received and produced on items the program got wrong; ``expected``
    is the item's reference (of the final output)."""
    out: list[Failure] = []
    for row in rows:
        if float(row["score"]) >= 1.0 or len(out) >= limit:
            continue
        steps = [t for t in row["trace"] if t["stage"] == name]
        reference = "; ".join(f"{k}: {v}" for k, v in examples[int(row["item"])].labels().items())
        for step in steps[:1]:
            got = "; ".join(f"{k}: {v}" for k, v in step["outputs"].items()) or str(row["error"])
            out.append(Failure(step["inputs"], f"final {reference}", got))
    return out


# --------------------------------------------------------------------------- checks and setup


def _predictors(student: Any) -> dict[str, str]:
    found = instructions_of(student) if hasattr(student, "named_predictors") else {}
    if not found:
        raise ConfigError(
            f"the program {type(student).__name__} has no predictors whose instructions could "
            "be optimized.",
            fix="give a DSPy module that contains dspy.Predict (or modules built on it).",
        )
    return found


def _check_metric(
    metric: str | MetricFn, valset: Sequence[Any], student: Any
) -> tuple[str, MetricFn]:
    """(name, fn); a metric given by name scores the last predictor's last output field."""
    last = list(student.predictors()[-1].signature.output_fields)[-1]
    name, fn = resolve_metric(metric, target=last)
    metric_value(fn, name, valset[0], dspy.Prediction(**valset[0].labels()), 0)
    return name, fn


def _check_budget(opt: PerModule, n_val: int, estimate: int) -> None:
    if opt.budget < estimate:
        raise BudgetExceeded(
            f"a budget of {opt.budget} task calls is smaller than one evaluation of the "
            f"{n_val} valset items ({estimate} calls: one per predictor and item).",
            fix=f"raise the budget to at least {estimate}; several times that to search.",
        )
    opt.counter.require(estimate, TASK, "one evaluation of the valset")


def _open_job(opt: PerModule, search: _Ascent) -> Any:
    if isinstance(opt.history, Job):
        return opt.history
    if opt.history is None:
        return _MemoryJob()
    fp = fingerprint(
        opt.settings,
        valset=[dict(e.items()) for e in search.valset],
        trainset=[dict(e.items()) for e in search.trainset],
        program=json.dumps(
            {n: str(p.signature) for n, p in search.student.named_predictors()}, sort_keys=True
        ),
        instructions=search.initial,
        metric=search.metric[0],
        budget=opt.budget,
        task_lm=getattr(opt.task_lm, "model", ""),
        proposer_lm=getattr(opt.proposer_lm, "model", None),
    )
    return Job(Path(opt.history), fp, fresh=opt.fresh)


class _MemoryJob:
    """The journal interface of :class:`~instructkit.jobs.Job` in memory (no ``history``)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {}

    def append(self, rows: list[dict[str, Any]], *, to: str = "out") -> None:
        self.records.extend(rows)

    def save_state(self, **state: Any) -> None:
        self.state.update(state)
