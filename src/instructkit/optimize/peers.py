"""DSPy's own instruction optimizers, COPRO, MIPROv2 (0-shot) and GEPA, run under a budget of
task-model calls, so that they can be compared with ours and used from ``optimize prompt``::

    run = run_peer("gepa", student, trainset=train, valset=val, metric=metric,
                   task_lm=task, proposer_lm=proposer, budget=300, seed=0)
    run.program, run.settings, run.stopped            # "done" | "budget"

``task`` and ``proposer`` are :func:`~instructkit.optimize.bridge.bridge_lm` LMs on one
:class:`~instructkit.optimize.bridge.CallCounter` (roles ``task`` and ``proposer``). Each peer's
own parameters are set from the budget so that it plans to fit (``plan_*``; N is the val size,
c the task calls per item, E = budget // (N·c) the full val evaluations it buys):

- COPRO: the ``breadth``/``depth`` that use the most of E evaluations (it scores its candidates
  on its trainset, which is given our val);
- MIPROv2: ``auto=None``, 6 candidates, no demos, ``minibatch=False``, as many trials as fit
  after the default program's evaluation and its bootstrap sets (reserved at 6 calls each);
- GEPA: ``max_metric_calls`` = budget // c minus the most one iteration can overshoot.

The counter refuses the call that would pass the budget (the backstop): COPRO and MIPROv2 score
a refused call as a failed item and finish with their best so far; GEPA stops, and the starting
program is kept. Either way ``stopped`` is ``"budget"``. Task calls use
:class:`~instructkit.optimize.adapter.PlainAdapter` (small models follow nothing else), proposer
calls DSPy's ChatAdapter (:class:`RoutingAdapter`); their prints and logs are silenced.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy

from instructkit.errors import ConfigError, LMError
from instructkit.lm.replay import ReplayLM
from instructkit.optimize.adapter import PlainAdapter
from instructkit.optimize.bridge import PROPOSER, TASK, BudgetExceeded, bridge_lm, instructkit_cause
from instructkit.optimize.search import MethodFn, Search

__all__ = [
    "PEERS",
    "PeerRun",
    "RoutingAdapter",
    "dspy_metric",
    "min_peer_budget",
    "plan_copro",
    "plan_gepa",
    "plan_mipro",
    "run_peer",
    "search_peer",
]

PEERS = ("copro", "mipro", "gepa")
# DSPy's evaluations run items on threads, so the bridge batches their calls as it does ours
# (scoring's default is the bridge's max_batch, 16): the same engine, the same speed.
PEER_THREADS = 16
MIPRO_CANDIDATES = 6  # MIPROv2 "light" proposes 6 instructions
MIPRO_BOOTSTRAP_PER_SET = 6  # expected task calls of one bootstrap set (3 successes at ~50%)
GEPA_MINIBATCH = 3  # GEPA's default reflection minibatch
PEER_CALLS = "peer_calls"  # the job journal of a peer's replies (task and proposer), replayed


@dataclass
class PeerRun:
    """A peer's best program, why it stopped, and the parameters it was given."""

    program: Any
    stopped: str = "done"  # done | budget
    settings: dict[str, Any] = field(default_factory=dict)


class RoutingAdapter(dspy.Adapter):
    """PlainAdapter for task calls; ``proposer`` (default ChatAdapter) for the calls of an LM
    bridged with role ``proposer``."""

    def __init__(self, proposer: Any = None) -> None:
        super().__init__()
        self.task = PlainAdapter()
        self.proposer = proposer or dspy.ChatAdapter(use_json_adapter_fallback=False)

    def __call__(self, lm: Any, lm_kwargs: Any, signature: Any, demos: Any, inputs: Any) -> Any:
        engine = getattr(lm, "_engine_spec", None)
        chosen = self.proposer if getattr(engine, "role", None) == PROPOSER else self.task
        return chosen(lm, lm_kwargs, signature, demos, inputs)

    def format(self, signature: Any, demos: Any, inputs: Any) -> Any:
        return self.task.format(signature, demos, inputs)

    def parse(self, signature: Any, completion: str) -> Any:
        return self.task.parse(signature, completion)


def dspy_metric(metric: Callable[[Any, Any], float], name: str) -> Callable[..., float]:
    """``metric(example, prediction)`` as the metric DSPy's optimizers call: MIPROv2 passes a
    trace (3 arguments), GEPA five."""

    def scored(example: Any, prediction: Any, *trace: Any) -> float:
        return float(metric(example, prediction))

    scored.__name__ = name
    return scored


# ------------------------------------------------------------------------------------- plans


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


def plan_mipro(budget: int, eval_cost: int, calls_per_item: int) -> int:
    """MIPROv2 trials (``minibatch=False``: each trial one full val evaluation) after the
    default program's evaluation and the expected cost of its bootstrap sets."""
    bootstrap = (MIPRO_CANDIDATES + 2) * MIPRO_BOOTSTRAP_PER_SET * calls_per_item
    return max(1, (budget - bootstrap - eval_cost) // eval_cost)


def plan_gepa(budget: int, n_val: int, calls_per_item: int) -> int:
    """GEPA's ``max_metric_calls``: GEPA checks its budget before an iteration, and one
    iteration may spend two minibatches, a merge subsample and a full val evaluation."""
    slack = n_val + 2 * GEPA_MINIBATCH + 5
    return max(1, budget // calls_per_item - slack)


def min_peer_budget(name: str, n_val: int, calls_per_item: int = 1) -> int:
    """The fewest task calls with which ``name``'s plan does any search: COPRO two candidates,
    MIPROv2 one trial past its bootstrap, GEPA one iteration past its slack."""
    eval_cost = n_val * calls_per_item
    if name == "copro":
        return 2 * eval_cost
    if name == "mipro":
        bootstrap = (MIPRO_CANDIDATES + 2) * MIPRO_BOOTSTRAP_PER_SET * calls_per_item
        return bootstrap + 2 * eval_cost
    return (n_val + 2 * GEPA_MINIBATCH + 5 + 2 * GEPA_MINIBATCH) * calls_per_item


# ------------------------------------------------------------------------------------- runs


def run_peer(
    name: str,
    student: Any,
    *,
    trainset: Sequence[Any],
    valset: Sequence[Any],
    metric: Callable[..., float],
    task_lm: Any,
    proposer_lm: Any,
    budget: int,
    seed: int,
    calls_per_item: int = 1,
    proposer_adapter: Any = None,
) -> PeerRun:
    """Run the peer ``name`` on ``student`` within ``budget`` task calls (module doc)."""
    runs = {"copro": _copro, "mipro": _mipro, "gepa": _gepa}
    if name not in runs:
        raise ConfigError(f"unknown DSPy optimizer '{name}'.", fix=f"use one of {PEERS}.")
    counter = task_lm._engine_spec.counter
    start, saved = counter.count(TASK), dict(counter.budgets)
    counter.budgets[TASK] = min(start + budget, saved.get(TASK, start + budget))  # backstop
    adapter = RoutingAdapter(proposer_adapter)
    try:
        with _quiet(), dspy.context(lm=task_lm, adapter=adapter, max_errors=10**9):
            run = _PeerInputs(
                student, list(trainset), list(valset), metric, task_lm, proposer_lm, budget,
                seed, calls_per_item,
            )  # fmt: skip
            program, settings = runs[name](run)
    except Exception as exc:
        cause = instructkit_cause(exc)
        if isinstance(cause, BudgetExceeded):
            return PeerRun(student, "budget", {"error": str(exc).splitlines()[0][:300]})
        if cause is not None:  # e.g. the model failed: our own error, with its fix
            raise cause from exc
        raise LMError(
            f"DSPy's {name} stopped: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}",
            fix="the proposer must follow DSPy's ChatAdapter format (fields in [[ ## name ## ]] "
            "sections): use a capable instruction-following model for --proposer-lm.",
        ) from exc
    finally:
        counter.budgets.clear()
        counter.budgets.update(saved)
    spent = counter.count(TASK) - start
    if _instructions(program) == _instructions(student):  # e.g. GEPA's proposer unparsed
        settings["note"] = "ended with its starting instructions"
    return PeerRun(program, "budget" if spent >= budget else "done", settings)


def _instructions(program: Any) -> list[str]:
    return [str(p.signature.instructions) for p in program.predictors()]


def search_peer(name: str) -> MethodFn:
    """The peer ``name`` as an ``optimize prompt`` method (``method(search) -> str``).

    It spends what is left of the budget minus one val evaluation, which is kept for the
    workflow's scoring of the instruction it returns. The peer keeps no history of its own, so
    its task and proposer replies go to the job's ``peer_calls`` journal through
    :class:`~instructkit.lm.replay.ReplayLM`: re-run after a kill with the same seed, it asks
    the same questions and gets the journaled replies back without a call. ``search.extra``
    must hold ``lm``, ``proposer_model``, ``job``, ``counter``, ``train`` and ``max_tokens``.
    A model that fails stops the run with its error once the peer returns (DSPy's evaluations
    score a failed call as a wrong answer and go on), so a rerun resumes from the journal."""

    def method(search: Search) -> str:
        ev, x = search.evaluator, search.extra
        model = ReplayLM(x["lm"], x["job"], PEER_CALLS, tag=TASK, on_reply=ev.on_call)
        task_lm = bridge_lm(model, counter=x["counter"], role=TASK, max_tokens=x["max_tokens"])
        proposer = ReplayLM(x["proposer_model"], x["job"], PEER_CALLS, tag=PROPOSER)
        run = run_peer(
            name,
            search.task.program(search.initial),
            trainset=x["train"],
            valset=ev.examples["val"],
            metric=dspy_metric(ev.metric[1], ev.metric[0]),
            task_lm=task_lm,
            proposer_lm=bridge_lm(proposer, counter=x["counter"], role=PROPOSER),
            budget=search.budget_left - search.n_val,
            seed=search.seed,
        )
        for lm in (model, proposer):  # DSPy scored a failed call as a wrong answer: stop here,
            if lm.failure is not None:  # with every reply so far journaled for the rerun
                raise lm.failure
        x["result"] = {"peer": {"optimizer": name, "stopped": run.stopped, **run.settings}}
        return str(run.program.predictors()[0].signature.instructions)

    return method


Plan = tuple[Any, dict[str, Any]]


@dataclass(frozen=True)
class _PeerInputs:
    """What every peer runner reads (``c``: task calls per item)."""

    student: Any
    train: list[Any]
    val: list[Any]
    metric: Any
    task: Any
    proposer: Any
    budget: int
    seed: int
    c: int


def _copro(r: _PeerInputs) -> Plan:
    breadth, depth = plan_copro(r.budget // (len(r.val) * r.c), len(r.student.predictors()))
    opt = dspy.COPRO(
        prompt_model=r.proposer, metric=r.metric, breadth=breadth, depth=depth, init_temperature=1.4
    )
    eval_kwargs = {"num_threads": PEER_THREADS, "display_progress": False}
    best = opt.compile(r.student, trainset=r.val, eval_kwargs=eval_kwargs)
    return best, {"breadth": breadth, "depth": depth}


def _mipro(r: _PeerInputs) -> Plan:
    trials = plan_mipro(r.budget, len(r.val) * r.c, r.c)
    opt = dspy.MIPROv2(
        metric=r.metric,
        prompt_model=r.proposer,
        task_model=r.task,
        auto=None,
        num_candidates=MIPRO_CANDIDATES,
        max_bootstrapped_demos=0,
        max_labeled_demos=0,
        num_threads=PEER_THREADS,
        max_errors=10**9,
        seed=r.seed + 1,  # MIPROv2 ignores seed=0 (``seed or self.seed``)
        verbose=False,
    )
    best = opt.compile(
        r.student, trainset=r.train or r.val, valset=r.val, num_trials=trials, minibatch=False
    )
    return best, {"num_candidates": MIPRO_CANDIDATES, "trials": trials}


def _gepa(r: _PeerInputs) -> Plan:
    calls = plan_gepa(r.budget, len(r.val), r.c)
    opt = dspy.GEPA(
        metric=r.metric,
        reflection_lm=r.proposer,
        max_metric_calls=calls,
        reflection_minibatch_size=GEPA_MINIBATCH,
        num_threads=PEER_THREADS,
        seed=r.seed,
    )
    best = opt.compile(r.student, trainset=r.train or r.val, valset=r.val)
    return best, {"max_metric_calls": calls}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """COPRO prints its proposer's history on every candidate, GEPA a progress bar, all log
    every candidate: silence them (what matters is in the result)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with open(os.devnull, "w") as null:
            with contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
                yield
    finally:
        logging.disable(previous)
