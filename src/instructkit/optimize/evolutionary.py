"""Evolutionary instruction search, a DSPy optimizer with a task-call budget it never exceeds.

A genetic algorithm over the instruction of a program's predictor, after EvoPrompt (Guo et al.
2023, "Connecting Large Language Models with Evolutionary Algorithms Yields Powerful Prompt
Optimizers") and Promptbreeder (Fernando et al. 2023), with LM mutations grounded as in APE
(Zhou et al. 2022). It has DSPy's optimizer contract, so it drops in where COPRO or MIPROv2
would::

    counter = CallCounter()
    task_lm = bridge_lm(LocalLM.load("smollm2-135m-instruct"), counter=counter, role=TASK)
    opt = Evolutionary(task_lm, None, counter, budget=2000, seed=0, history="evo.jsonl")
    best = opt.compile(dspy.Predict("text -> label"), trainset=train, valset=val, metric=m)
    opt.result.best_instruction, opt.result.best_score, opt.result.history

Choices taken:

- **Fitness** on a seeded minibatch of the valset (the trainset when there is no valset), a new
  minibatch each generation and the same one for every candidate of it; the best ``elite``
  candidates of a generation by minibatch score are then scored on the full valset, and only
  full scores decide the elite and the result (the student's own instruction is scored in full
  first, as the baseline, so the result is never worse than it on the valset).
- **Selection**: tournament of ``tournament`` (fitness: full score, else minibatch score) with
  elitism: the ``elite`` best by full score survive every generation.
- **Crossover** (rate ``crossover_rate``): one-point, at sentence level, between two parents
  (EvoPrompt's GA asks an LM to cross over; a sentence cut costs no call and keeps whole
  sentences).
- **Mutation**: with a ``proposer_lm``, the proposer rewrites the instruction from a data
  summary, the program's structure and up to ``max_failures`` items it got wrong (inputs,
  expected, got) -- :mod:`instructkit.optimize.propose`; without one (or when its proposal is
  refused), a text operator: swap a sentence for a component-template sentence
  (:mod:`instructkit.optimize.templates`), insert one, or drop one. So the search also works
  with no usable proposer (SmolLM2-135M proposing for itself scored 0 on 8 of 8 proposals).
- **Validity and novelty**: a child is refused when it is empty, longer than ``max_chars``,
  drops the output field or a label its parent named, was evaluated before (after
  normalization), or is a near duplicate of an evaluated one (ROUGE-L >= ``novelty``;
  0.9, looser than Self-Instruct's 0.7, because a one-sentence edit must stay possible).
- **Scoring**: through the :class:`~instructkit.optimize.search.Evaluator` of
  ``instructkit optimize prompt`` (one journal row per scored item), so an instruction scored
  on a minibatch is only scored on the items it lacks when it is scored in full.
- **Budget**: before every evaluation the search checks that its new items times the most
  calls per item measured so far (1 at first) fit in what is left of ``budget`` and stops
  cleanly when they do not; the counter's budget for the task role is lowered to the same
  limit while ``compile`` runs, as a backstop (:class:`~instructkit.optimize.budget.Tally`).
- **Stopping**: ``generations`` generations, ``patience`` generations without a better full
  score, or the budget.
- **Resume**: with ``history=PATH`` the evaluator's journal is a :class:`~instructkit.jobs.Job`
  file (in memory without it: ``Job(None, fp)``) and every proposer reply a row of
  ``PATH.proposals.jsonl``. The search is a deterministic function of the seed and those rows,
  so a rerun replays the journaled rows without calling any model and continues where the
  killed run stopped, ending where an unkilled run would. Only the item in flight at the kill
  is spent again.
- **Command line**: :func:`search_evolutionary` is the ``evolutionary`` method of
  ``instructkit optimize prompt``, on the workflow's evaluator and history.
- **Scope**: one predictor. A program with more raises ConfigError (per-module search is a
  separate optimizer).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm.auto import tqdm

from instructkit.data.similarity import normalize_for_exact, rouge_l_f, rouge_tokens
from instructkit.errors import ConfigError
from instructkit.optimize.bridge import PROPOSER, TASK, BudgetExceeded
from instructkit.optimize.budget import ProposerReplies, Tally
from instructkit.optimize.propose import (
    Failure,
    crossover_sentences,
    mentions,
    mutate_text,
    proposal_problems,
    rewrite_prompt,
    split_sentences,
)
from instructkit.optimize.search import Search
from instructkit.optimize.student import (
    InstructionOptimizer,
    SearchSetup,
    search_setup,
)
from instructkit.optimize.templates import (
    TaskSpec,
    describe_data,
    generate_candidates,
)

__all__ = [
    "Evolutionary",
    "EvolutionResult",
    "EvolutionSettings",
    "search_evolutionary",
]

# ------------------------------------------------------------------------------------- results


@dataclass
class Candidate:
    """An instruction in the search, its lineage and its scores."""

    instruction: str
    generation: int
    operator: str
    parents: tuple[str, ...] = ()
    minibatch: float | None = None
    full: float | None = None
    failures: list[Failure] = field(default_factory=list)

    @property
    def fitness(self) -> float:
        return self.full if self.full is not None else (self.minibatch or 0.0)


@dataclass
class EvolutionResult:
    """What a search found and spent.

    ``history`` holds one row per evaluation (generation, instruction, parents, operator, kind
    ``minibatch``/``full``, score, n, per-item scores, calls, calls_total); ``calls`` counts the
    calls per role of the whole search, journaled ones included; ``stopped`` is ``generations``,
    ``early_stop`` or ``budget``; ``rejected`` lists (text, reason) of refused children.
    """

    best_instruction: str
    best_score: float
    baseline_score: float
    history: list[dict[str, Any]]
    calls: dict[str, int]
    wall_time: float
    generations: int
    stopped: str
    rejected: list[tuple[str, str]] = field(default_factory=list)


class EvolutionSettings(BaseModel):
    """The search's settings (one name in Python, YAML and ``--set``); see the module docstring.

    ``initial``: instructions for generation 0 besides the student's (e.g. from
    :func:`~instructkit.optimize.templates.generate_candidates`); ``labels``: the label set
    (inferred from the data when empty); ``novelty``: ROUGE-L at or above which a child is a
    near duplicate; ``proposer_budget``: proposer calls, past which mutations are text operators.
    """

    model_config = ConfigDict(extra="forbid")

    population: int = Field(8, ge=2)
    minibatch: int = Field(16, ge=1)
    elite: int = Field(2, ge=1)
    tournament: int = Field(3, ge=1)
    generations: int = Field(10, ge=0)
    patience: int = Field(3, ge=1)
    seed: int = 0
    crossover_rate: float = Field(0.5, ge=0.0, le=1.0)
    mutation_rate: float = Field(0.5, ge=0.0, le=1.0)
    novelty: float = Field(0.9, gt=0.0, le=1.0)
    initial: list[str] = []
    labels: list[str] = []
    proposer_budget: int | None = Field(None, ge=0)
    proposer_temperature: float = Field(0.7, ge=0.0)
    max_failures: int = Field(3, ge=0)
    max_attempts: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _elite_below_population(self) -> EvolutionSettings:
        if self.elite >= self.population:
            raise ValueError(
                f"elite={self.elite} must be smaller than population={self.population}"
            )
        return self


# ----------------------------------------------------------------------------------- optimizer


class Evolutionary(InstructionOptimizer):
    """Evolutionary search over the instruction of a one-predictor DSPy program (see module).

    ``task_lm`` must be a :func:`~instructkit.optimize.bridge.bridge_lm` counted by ``counter``
    under the task role; ``proposer_lm`` (role proposer) is optional. ``budget`` is in task
    calls. After :meth:`compile`, ``self.result`` is the :class:`EvolutionResult`.
    """

    name = "Evolutionary"
    settings_model = EvolutionSettings
    settings: EvolutionSettings
    result: EvolutionResult | None

    def search(self, setup: SearchSetup, started: float) -> tuple[str, EvolutionResult]:
        search = _Search(self.settings, setup)
        best = search.run()
        return best.instruction, search.result(best, time.monotonic() - started)


def search_evolutionary(search: Search) -> str:
    """The ``evolutionary`` method of ``instructkit optimize prompt``: generation 0 is the
    initial instruction and template candidates (as ``templates`` draws them); mutations come
    from ``search.proposer`` when there is one, else from text operators."""
    setup = search_setup(search)
    pool = [
        c.text
        for c in generate_candidates(search.spec, search.candidates, seed=search.seed)
        if c.text != search.initial
    ]
    settings = EvolutionSettings(seed=search.seed, initial=pool, labels=setup.labels)
    return _Search(settings, setup).run().instruction


# --------------------------------------------------------------------------------- the search


class _Search:
    """One search: budget tally, generations, variation; every score from the evaluator."""

    def __init__(self, cfg: EvolutionSettings, setup: SearchSetup) -> None:
        self.cfg, self.setup, self.evaluator = cfg, setup, setup.evaluator
        self.n_val = len(setup.evaluator.examples["val"])
        self.summary = describe_data(setup.spec) if setup.spec else f"Output field: {setup.output}."
        self.sentences = _sentence_pool(setup.spec, cfg.seed)
        self.required = [setup.output, *setup.labels]
        self.max_chars = max(600, 3 * max(len(t) for t in (setup.baseline, *cfg.initial)))
        self.rng = random.Random(cfg.seed)
        self.tally = Tally(setup)
        limit = cfg.proposer_budget
        self.replies = ProposerReplies(
            setup.evaluator.job,
            setup.proposer_lm,
            setup.counter,
            temperature=cfg.proposer_temperature,
            limit=limit,
        )
        self.seen: dict[str, int] = {}
        self.tokens: list[list[str]] = []
        self.rejected: list[tuple[str, str]] = []
        self.rows: list[dict[str, Any]] = []
        self.stopped, self.generation = "generations", 0
        self.bar = tqdm(
            total=setup.budget, desc="evolutionary", unit="call", disable=not setup.progress
        )

    # -- the run, top to bottom

    def run(self) -> Candidate:
        """The best candidate (by full score); the counter's budgets are restored after."""
        try:
            return self._generations()
        finally:
            self.tally.close()
            self.bar.close()

    def _generations(self) -> Candidate:
        baseline = Candidate(self.setup.baseline, 0, "baseline")
        self._remember(baseline.instruction)
        if not self._evaluate(baseline, "full", range(self.n_val)):
            raise BudgetExceeded(
                f"the budget of {self.setup.budget} task calls ran out while scoring the "
                f"student's instruction on the {self.n_val} valset items (the program "
                "makes more than one call per item).",
                fix="raise the budget to several evaluations of the valset.",
            )
        population = [baseline, *self._seed_population(baseline)]
        best, stale = baseline, 0
        for generation in range(self.cfg.generations + 1):
            self.generation = generation
            if generation > 0:
                population = [*self._elite(population), *self._breed(population)]
            if not self._score_generation(population):
                self.stopped = "budget"
            top = max(self._fully_scored(population), key=lambda c: c.full or 0.0)
            improved = (top.full or 0.0) > (best.full or 0.0)
            best, stale = (top, 0) if improved or generation == 0 else (best, stale + 1)
            if self.stopped == "budget":
                break
            if stale >= self.cfg.patience:
                self.stopped = "early_stop"
                break
        return best

    def _score_generation(self, population: list[Candidate]) -> bool:
        """Minibatch scores for the new ones, then full scores for the best ``elite`` of them;
        False when the budget stops the generation."""
        batch = self._minibatch(self.generation)
        for cand in population:
            if cand.minibatch is None and cand.full is None:
                if not self._evaluate(cand, "minibatch", batch):
                    return False
        fresh = [c for c in population if c.full is None]
        fresh.sort(key=lambda c: -(c.minibatch or 0.0))
        for cand in fresh[: self.cfg.elite]:
            if not self._evaluate(cand, "full", range(self.n_val)):
                return False
        return True

    def _elite(self, population: list[Candidate]) -> list[Candidate]:
        scored = self._fully_scored(population)
        return sorted(scored, key=lambda c: -(c.full or 0.0))[: self.cfg.elite]

    @staticmethod
    def _fully_scored(population: list[Candidate]) -> list[Candidate]:
        return [c for c in population if c.full is not None]

    # -- variation

    def _seed_population(self, baseline: Candidate) -> list[Candidate]:
        seeds: list[Candidate] = []
        for text in self.cfg.initial:
            if len(seeds) + 1 >= self.cfg.population:
                break
            if reason := self._refusal(text.strip(), []):
                self.rejected.append((text, reason))
                continue
            seeds.append(Candidate(text.strip(), 0, "initial"))
            self._remember(text.strip())
        while len(seeds) + 1 < self.cfg.population:
            child = self._child([baseline], 0)
            if child is None:
                break
            seeds.append(child)
        return seeds

    def _breed(self, population: list[Candidate]) -> list[Candidate]:
        children: list[Candidate] = []
        for _ in range(self.cfg.population - min(self.cfg.elite, len(population))):
            child = self._child(population, self.generation)
            if child is not None:
                children.append(child)
        return children

    def _child(self, population: list[Candidate], generation: int) -> Candidate | None:
        """A valid, novel child of tournament-selected parents, or None after max_attempts."""
        for _ in range(self.cfg.max_attempts):
            first = self._tournament(population)
            parents, text, operator = [first], first.instruction, ""
            if len(population) > 1 and self.rng.random() < self.cfg.crossover_rate:
                second = self._tournament([c for c in population if c is not first])
                parents.append(second)
                text, operator = (
                    crossover_sentences(text, second.instruction, self.rng),
                    "crossover",
                )
            if not operator or self.rng.random() < self.cfg.mutation_rate:
                text, name = self._mutate(text, first)
                operator = f"{operator}+{name}" if operator else name
            required = [w for w in self.required if mentions(first.instruction, w)]
            if reason := self._refusal(text, required):
                self.rejected.append((text, reason))
                continue
            self._remember(text)
            return Candidate(text, generation, operator, tuple(p.instruction for p in parents))
        return None

    def _tournament(self, population: list[Candidate]) -> Candidate:
        k = min(self.cfg.tournament, len(population))
        picked = sorted(self.rng.sample(range(len(population)), k))
        return max((population[i] for i in picked), key=lambda c: c.fitness)

    def _mutate(self, text: str, parent: Candidate) -> tuple[str, str]:
        """LM rewrite when a proposer is there and its proposal is usable, else a text operator."""
        if self.replies.available():
            prompt = rewrite_prompt(
                text, parent.failures, self.summary, structure=self.setup.structure
            )
            proposal = self.replies.ask(prompt, seed=self.rng.randrange(2**31))
            required = [w for w in self.required if mentions(text, w)]
            problems = proposal_problems(proposal, required=required, max_chars=self.max_chars)
            if not problems:
                return proposal, "lm_mutation"
            self.rejected.append((proposal, "proposer: " + "; ".join(problems)))
        return mutate_text(text, self.sentences, self.rng)

    def _refusal(self, text: str, required: Sequence[str]) -> str | None:
        if problems := proposal_problems(text, required=required, max_chars=self.max_chars):
            return "; ".join(problems)
        if normalize_for_exact(text) in self.seen:
            return "already evaluated"
        tokens = rouge_tokens(text)
        for other in self.tokens:
            if (sim := rouge_l_f(tokens, other)) >= self.cfg.novelty:
                return f"near duplicate of an evaluated instruction (ROUGE-L {sim:.2f})"
        return None

    def _remember(self, text: str) -> None:
        self.seen[normalize_for_exact(text)] = len(self.seen)
        self.tokens.append(rouge_tokens(text))

    # -- evaluation under the budget

    def _minibatch(self, generation: int) -> list[int]:
        n = self.n_val
        if self.cfg.minibatch >= n:
            return list(range(n))
        picked = random.Random(self.cfg.seed * 1_000_003 + generation).sample(
            range(n), self.cfg.minibatch
        )
        return sorted(picked)

    def _evaluate(self, cand: Candidate, kind: str, items: Sequence[int]) -> bool:
        """Score ``cand`` on the val ``items`` through the evaluator (journaled items are read
        back, not called); False when the calls would not fit in the budget."""
        if kind == "minibatch" and len(items) == self.n_val:
            kind = "full"  # the minibatch is the whole valset: one score serves both
        rows = self.tally.rows(cand.instruction, items)
        if rows is None:
            return False
        scores = [float(r["score"]) for r in rows]
        row: dict[str, Any] = {
            "generation": self.generation,
            "instruction": cand.instruction,
            "parents": list(cand.parents),
            "operator": cand.operator,
            "kind": kind,
            "score": sum(scores) / len(scores),
            "n": len(items),
            "per_item": scores,
            "failures": self._failures(items, rows),
            "calls": self.tally.last_calls,
            "calls_total": self.tally.spent,
        }
        self.rows.append(row)
        self.bar.update(self.tally.spent - self.bar.n)  # task calls so far, replayed ones included
        self.bar.set_postfix(generation=self.generation, score=f"{row['score']:.3f}")
        setattr(cand, kind, row["score"])
        cand.failures = [Failure(f["inputs"], f["expected"], f["got"]) for f in row["failures"]]
        return True

    def _failures(
        self, items: Sequence[int], rows: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i, row in zip(items, rows, strict=True):
            if float(row["score"]) >= 1.0 or len(out) >= self.cfg.max_failures:
                continue
            example = self.evaluator.examples["val"][i]
            got = row["error"] if row["error"] is not None else row["answer"]
            expected = str(example.get(self.setup.output, ""))
            out.append(
                {"inputs": dict(example.inputs()), "expected": expected, "got": str(got or "")}
            )
        return out

    # -- result

    def result(self, best: Candidate, wall: float) -> EvolutionResult:
        baseline = next(r for r in self.rows if r["operator"] == "baseline")
        return EvolutionResult(
            best_instruction=best.instruction,
            best_score=best.full if best.full is not None else float(baseline["score"]),
            baseline_score=float(baseline["score"]),
            history=list(self.rows),
            calls={TASK: self.tally.spent, PROPOSER: self.replies.spent},
            wall_time=wall,
            generations=self.generation,
            stopped=self.stopped,
            rejected=list(self.rejected),
        )


# ------------------------------------------------------------------------------- helpers


def _sentence_pool(spec: TaskSpec | None, seed: int) -> list[str]:
    """Distinct sentences of component-template candidates for ``spec`` (swap/insert material)."""
    if spec is None:
        return []
    try:
        candidates = generate_candidates(spec, 24, seed=seed)
    except ConfigError:
        return []
    return list(dict.fromkeys(s for c in candidates for s in split_sentences(c.text)))
