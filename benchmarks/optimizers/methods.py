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

from engines import BackstopCounter
from tasks import BenchTask, Split

from instructkit.jobs import Job, fingerprint
from instructkit.optimize import Evolutionary
from instructkit.optimize.peers import PEERS, run_peer
from instructkit.optimize.prompt import METHODS as SEARCH_METHODS
from instructkit.optimize.search import Evaluator, MethodFn, Search

BANK_SIZE = 12  # component-template candidates per predictor in the bank


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
    proposer_adapter: Any = None  # the adapter of proposer calls (None: DSPy's ChatAdapter)

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


def peer(name: str) -> Callable[[Context], Outcome]:
    """DSPy's optimizer ``name`` through :func:`instructkit.optimize.peers.run_peer` (its
    parameters planned from the budget; README.md has the table)."""

    def run(ctx: Context) -> Outcome:
        result = run_peer(
            name,
            ctx.task.program(),
            trainset=ctx.split.train,
            valset=ctx.split.val,
            metric=ctx.metric,
            task_lm=ctx.task_lm,
            proposer_lm=ctx.proposer_lm,
            budget=ctx.budget,
            seed=ctx.seed,
            calls_per_item=ctx.task.calls_per_item,
            proposer_adapter=ctx.proposer_adapter,
        )
        stopped = "budget" if ctx.counter.refused else result.stopped
        return Outcome(result.program, stopped, result.settings)

    return run


def _stopped(ctx: Context) -> str:
    return "budget" if ctx.counter.refused else "done"


METHODS: dict[str, Method] = {
    "templates": Method(searched("templates"), multi_predictor=False, ours=True),
    "evolutionary": Method(evolutionary, multi_predictor=False, ours=True),
    "opro": Method(searched("opro"), multi_predictor=False, ours=True),
    **{name: Method(peer(name), multi_predictor=True, ours=False) for name in PEERS},
}
