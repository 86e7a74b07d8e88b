"""The methods the benchmark compares, each given the same budget of task-model calls.

``METHODS[name] = Method(run, multi_predictor, ours)``; ``run(ctx: Context) -> Outcome``.
Ours: ``templates`` (and any other ``instructkit.optimize.prompt.METHODS`` entry, a function
``method(search) -> str``: adding one is the line ``"opro": searched("opro")``) and
``evolutionary``. Peers: DSPy's ``copro``, ``mipro`` (MIPROv2, 0-shot: no demos) and ``gepa``.

Every method runs inside ``dspy.context(lm=ctx.task_lm, adapter=ctx.adapter)``; the counter
behind ``ctx.task_lm`` refuses the call that would pass the budget (the backstop). Each peer's
own parameters are set from the budget so that it plans to fit (``plan_*``; README.md has the
table). A peer stopped by the backstop keeps what it had: COPRO and MIPROv2 score a refused
call as a failed item and go on with their best so far; GEPA stops with an error, and the
benchmark then records its starting program.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
from engines import BackstopCounter
from tasks import BenchTask, Split

from instructkit.jobs import Job, fingerprint
from instructkit.optimize import Evolutionary
from instructkit.optimize.prompt import METHODS as SEARCH_METHODS
from instructkit.optimize.search import Evaluator, MethodFn, Search

BANK_SIZE = 12  # component-template candidates per predictor in the bank
MIPRO_CANDIDATES = 6  # MIPROv2 "light" proposes 6 instructions
MIPRO_BOOTSTRAP_PER_SET = 6  # expected task calls of one bootstrap set (3 successes at ~50%)
GEPA_MINIBATCH = 3  # GEPA's default reflection minibatch


@dataclass
class Context:
    """What a method gets: the task and split, the budget (task calls), the models, the bank."""

    task: BenchTask
    split: Split
    budget: int
    seed: int
    counter: BackstopCounter
    task_lm: Any
    proposer_lm: Any
    metric: Callable[..., float]
    bank: list[list[str]]
    workdir: Path

    @property
    def eval_cost(self) -> int:
        """Task calls of one evaluation on all of val."""
        return len(self.split.val) * self.task.calls_per_item


@dataclass
class Outcome:
    program: Any
    stopped: str = "done"  # done | budget
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    run: Callable[[Context], Outcome]
    multi_predictor: bool
    ours: bool


# ------------------------------------------------------------------------------------- ours


def searched(name: str) -> Callable[[Context], Outcome]:
    """A ``instructkit optimize prompt`` method (``method(search) -> str``) as a benchmark run:
    the initial instruction is scored on all of val first, as the workflow does."""
    fn: MethodFn = SEARCH_METHODS[name]

    def run(ctx: Context) -> Outcome:
        itask = ctx.task.instruction_task()
        path = ctx.workdir / f"{name}.jsonl"
        journals = {"proposals": ctx.workdir / f"{name}.proposals.jsonl"}
        job = Job(path, fingerprint({"method": name}), fresh=True, journals=journals)
        examples = {"val": ctx.split.val}
        ev = Evaluator(
            job, itask, (ctx.metric.__name__, ctx.metric), {"val": ctx.task_lm}, examples
        )
        initial = ctx.task.initial[0]
        initial_val = ev.mean(initial)
        search = Search(
            task=itask,
            initial=initial,
            spec=ctx.task.spec(0, ctx.split.train),
            evaluator=ev,
            n_val=len(ctx.split.val),
            budget_left=ctx.budget - ev.spent(),
            seed=ctx.seed,
            candidates=BANK_SIZE,
            proposer=ctx.proposer_lm,
        )
        best = fn(search)
        n = len(ctx.split.val)
        scored = {r["item"]: r["score"] for r in job.records if r["instruction"] == best}
        if best != initial and len(scored) == n and sum(scored.values()) / n <= initial_val:
            best = initial  # the workflow keeps the initial one unless beaten on val
        return Outcome(ctx.task.program([best]), settings={"candidates": BANK_SIZE})

    return run


def evolutionary(ctx: Context) -> Outcome:
    """``Evolutionary`` with the bank (or e2e) proposer for its LM mutations."""
    settings = {
        "population": 6,
        "minibatch": min(16, len(ctx.split.val) // 2),
        "generations": 50,
        "patience": 3,
    }
    opt = Evolutionary(
        ctx.task_lm,
        ctx.proposer_lm,
        ctx.counter,
        ctx.budget,
        seed=ctx.seed,
        labels=list(ctx.task.labels),
        progress=False,
        **settings,
    )
    best = opt.compile(
        ctx.task.program(), trainset=ctx.split.train, valset=ctx.split.val, metric=ctx.metric
    )
    stopped = "budget" if ctx.counter.refused else "done"
    return Outcome(best, stopped, {**settings, "stopped": opt.result.stopped})


# ------------------------------------------------------------------------------------- peers

# DSPy's evaluations run items on threads, so the bridge batches their calls as it does ours
# (scoring's default is the bridge's max_batch, 16): the same engine, the same speed.
PEER_THREADS = 16


def plan_copro(evals: int, predictors: int) -> tuple[int, int]:
    """COPRO's (breadth, depth) using most of ``evals`` full val evaluations.

    COPRO scores ``breadth`` candidates per depth on its whole trainset (our val); with several
    predictors it re-scores every candidate so far at each depth, per predictor."""

    def cost(b: int, d: int) -> int:
        return b * d if predictors == 1 else predictors * b * d * (d + 1) // 2

    plans = []
    for d in (1, 2, 3):
        b = evals // cost(1, d)
        if b >= 2:
            plans.append((cost(b, d), d, b))
    if not plans:
        return 2, 1  # does not fit: the backstop stops it
    _, d, b = max(plans)
    return b, d


def copro(ctx: Context) -> Outcome:
    breadth, depth = plan_copro(ctx.budget // ctx.eval_cost, len(ctx.task.stages))
    opt = dspy.COPRO(
        prompt_model=ctx.proposer_lm,
        metric=ctx.metric,
        breadth=breadth,
        depth=depth,
        init_temperature=1.4,
    )
    eval_kwargs = {"num_threads": PEER_THREADS, "display_progress": False}
    best = opt.compile(ctx.task.program(), trainset=ctx.split.val, eval_kwargs=eval_kwargs)
    return Outcome(best, _stopped(ctx), {"breadth": breadth, "depth": depth})


def plan_mipro(budget: int, eval_cost: int, calls_per_item: int) -> int:
    """MIPROv2 trials (``minibatch=False``: each trial one full val evaluation) after the
    default program's evaluation and the expected cost of its bootstrap sets."""
    bootstrap = (MIPRO_CANDIDATES + 2) * MIPRO_BOOTSTRAP_PER_SET * calls_per_item
    return max(1, (budget - bootstrap - eval_cost) // eval_cost)


def mipro(ctx: Context) -> Outcome:
    trials = plan_mipro(ctx.budget, ctx.eval_cost, ctx.task.calls_per_item)
    opt = dspy.MIPROv2(
        metric=ctx.metric,
        prompt_model=ctx.proposer_lm,
        task_model=ctx.task_lm,
        auto=None,
        num_candidates=MIPRO_CANDIDATES,
        max_bootstrapped_demos=0,
        max_labeled_demos=0,
        num_threads=PEER_THREADS,
        max_errors=10**9,
        seed=ctx.seed + 1,  # MIPROv2 ignores seed=0 (``seed or self.seed``)
        verbose=False,
    )
    best = opt.compile(
        ctx.task.program(),
        trainset=ctx.split.train,
        valset=ctx.split.val,
        num_trials=trials,
        minibatch=False,  # a val set under 35 items
    )
    return Outcome(best, _stopped(ctx), {"num_candidates": MIPRO_CANDIDATES, "trials": trials})


def plan_gepa(budget: int, n_val: int, calls_per_item: int) -> int:
    """GEPA's ``max_metric_calls``: GEPA checks its budget before an iteration, and one
    iteration may spend two minibatches, a merge subsample and a full val evaluation."""
    slack = n_val + 2 * GEPA_MINIBATCH + 5
    return max(1, budget // calls_per_item - slack)


def gepa(ctx: Context) -> Outcome:
    calls = plan_gepa(ctx.budget, len(ctx.split.val), ctx.task.calls_per_item)
    opt = dspy.GEPA(
        metric=ctx.metric,
        reflection_lm=ctx.proposer_lm,
        max_metric_calls=calls,
        reflection_minibatch_size=GEPA_MINIBATCH,
        num_threads=PEER_THREADS,
        seed=ctx.seed,
    )
    best = opt.compile(ctx.task.program(), trainset=ctx.split.train, valset=ctx.split.val)
    return Outcome(best, _stopped(ctx), {"max_metric_calls": calls})


def _stopped(ctx: Context) -> str:
    return "budget" if ctx.counter.refused else "done"


METHODS: dict[str, Method] = {
    "templates": Method(searched("templates"), multi_predictor=False, ours=True),
    "evolutionary": Method(evolutionary, multi_predictor=False, ours=True),
    "opro": Method(searched("opro"), multi_predictor=False, ours=True),
    "copro": Method(copro, multi_predictor=True, ours=False),
    "mipro": Method(mipro, multi_predictor=True, ours=False),
    "gepa": Method(gepa, multi_predictor=True, ours=False),
}
