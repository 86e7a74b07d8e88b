"""OPRO: an LM optimizes the instruction from the trajectory of instructions and their scores.

After Yang et al. 2023, "Large Language Models as Optimizers" (OPRO). Each step, a *proposer*
LM reads a meta-prompt -- the best instructions so far with their scores, sorted ascending (so
the best come last, nearest the request), and a few task exemplars -- and writes new
instructions meant to score higher; they are scored and join the trajectory. It has DSPy's
optimizer contract::

    counter = CallCounter()
    task_lm = bridge_lm(LocalLM.load("smollm2-135m-instruct"), counter=counter, role=TASK)
    proposer = bridge_lm(OpenAILM("gpt-4o-mini"), counter=counter, role=PROPOSER)
    opt = OPRO(task_lm, proposer, counter, budget=400, seed=0, history="opro.jsonl")
    best = opt.compile(dspy.Predict("text -> label"), trainset=train, valset=val, metric=m)
    opt.result.best_instruction, opt.result.best_score, opt.result.history

Choices taken (the paper's where it fits a call budget):

- **Meta-prompt**: the top ``keep`` (paper: 20) (instruction, score) pairs in ascending order of
  score, scores shown as integers 0-100 as in the paper; ``exemplars`` (paper: 3) task examples
  (inputs and expected output) drawn afresh each step with the seed; then the request for one
  new instruction, different from all above and scoring higher, that names the output field and
  the labels the starting instruction names.
- **Proposals**: ``per_step`` (paper: 8) proposer calls per step at ``temperature`` (paper: 1.0),
  each with a seed drawn from ``seed``. A proposal is refused when empty, longer than ``max_chars``
  (max(600, 3 x the longest seed instruction)), missing the output field or a label the starting
  instruction names, already in the trajectory (after normalization) or a near duplicate of an
  instruction proposed before (ROUGE-L >= ``novelty``, as in Evolutionary).
- **Scoring**: every accepted proposal is scored on the full valset (the trainset without one):
  the paper scores on a training subset; full scores keep the trajectory's numbers comparable
  and the result never worse than the starting instruction on the valset.
- **Budget** (task calls): before each scoring the search checks that the items times the most
  calls per item measured so far fit in what is left; it stops cleanly when they do not, and the
  counter's task budget is lowered to the same limit as a backstop (:mod:`.budget`).
- **Stopping**: ``steps`` steps, ``patience`` steps without a better score, or the budget.
- **Resume**: every scored item is a row of the job's journal (``history=PATH``, or the
  workflow's ``history.jsonl``) and every proposer reply a row of its ``proposals`` journal; a
  rerun replays both without calling any model and ends where an unkilled run ends.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from instructkit.data.similarity import normalize_for_exact, rouge_l_f, rouge_tokens
from instructkit.errors import ConfigError
from instructkit.optimize.bridge import PROPOSER, TASK, BudgetExceeded
from instructkit.optimize.budget import ProposerReplies, Tally
from instructkit.optimize.propose import mentions, proposal_problems
from instructkit.optimize.search import Search
from instructkit.optimize.student import (
    InstructionOptimizer,
    SearchSetup,
    search_setup,
)

__all__ = ["OPRO", "OPROResult", "OPROSettings", "meta_prompt", "search_opro"]

_INS = re.compile(r"<INS>(.*?)(?:</INS>|$)", re.S | re.IGNORECASE)


class OPROSettings(BaseModel):
    """The search's settings (one name in Python, YAML and ``--set``); see the module docstring.

    ``initial``: instructions scored in step 0 besides the student's (they seed the trajectory);
    ``labels``: the label set (inferred from the data when empty); ``proposer_budget``: proposer
    calls, past which the search stops proposing.
    """

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(10, ge=0)
    per_step: int = Field(4, ge=1)
    keep: int = Field(20, ge=1)
    exemplars: int = Field(3, ge=0)
    patience: int = Field(3, ge=1)
    seed: int = 0
    temperature: float = Field(1.0, ge=0.0)
    novelty: float = Field(0.9, gt=0.0, le=1.0)
    initial: list[str] = []
    labels: list[str] = []
    proposer_budget: int | None = Field(None, ge=0)


@dataclass
class OPROResult:
    """What a search found and spent.

    ``history`` holds one row per scored instruction (step, instruction, score, n, calls,
    calls_total; ``step`` 0 is the student's and the ``initial`` ones); ``calls`` counts the
    calls per role, journaled ones included; ``stopped`` is ``steps``, ``early_stop``,
    ``budget`` or ``proposer`` (the proposer budget ran out); ``rejected`` lists (text, reason).
    """

    best_instruction: str
    best_score: float
    baseline_score: float
    history: list[dict[str, Any]]
    calls: dict[str, int]
    wall_time: float
    steps: int
    stopped: str
    rejected: list[tuple[str, str]] = field(default_factory=list)


class OPRO(InstructionOptimizer):
    """OPRO over the instruction of a one-predictor DSPy program (see the module docstring).

    ``task_lm`` must be a :func:`~instructkit.optimize.bridge.bridge_lm` counted by ``counter``
    under the task role; ``proposer_lm`` (role proposer) is required. ``budget`` is in task
    calls. After :meth:`compile`, ``self.result`` is the :class:`OPROResult`.
    """

    name = "OPRO"
    settings_model = OPROSettings
    settings: OPROSettings
    result: OPROResult | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        require_proposer(
            self.proposer_lm, "proposer_lm=bridge_lm(lm, counter=counter, role='proposer')"
        )

    def search(self, setup: SearchSetup, started: float) -> tuple[str, OPROResult]:
        search = _Search(self.settings, setup)
        best = search.run()
        return best, search.result(best, time.monotonic() - started)


def require_proposer(proposer_lm: Any, fix: str) -> None:
    """OPRO cannot run without a proposer: refused before any call."""
    if proposer_lm is None:
        raise ConfigError(
            "OPRO needs a proposer model that writes the new instructions, and none was given.",
            fix=f"give one: {fix}.",
        )


def search_opro(search: Search) -> str:
    """The ``opro`` method of ``instructkit optimize prompt``: the trajectory starts from the
    initial instruction and ``candidates`` template candidates are not used (OPRO's own
    proposals are the search); the proposer is required (``--proposer-lm``)."""
    require_proposer(search.proposer, "pass --proposer-lm BACKEND[:MODEL]")
    setup = search_setup(search)
    settings = OPROSettings(seed=search.seed, labels=setup.labels)
    return _Search(settings, setup).run()


# ------------------------------------------------------------------------------ the meta-prompt


def meta_prompt(
    trajectory: Sequence[tuple[str, float]],
    exemplars: Sequence[Mapping[str, Any]],
    *,
    output: str,
    required: Sequence[str],
) -> str:
    """OPRO's meta-prompt: the (instruction, score) pairs as given (sort them ascending), the
    exemplars (inputs and the expected ``output``), then the request for a better instruction
    that names every word of ``required``."""
    lines = [
        "Your task is to write the instruction that a language model follows for a task.",
        "Below are earlier instructions with their scores. The score ranges from 0 to 100; "
        "the instructions are in ascending order of score.",
        "",
    ]
    for text, score in trajectory:
        lines += ["text:", text, "score:", str(round(100 * score)), ""]
    if exemplars:
        lines += ["Below are examples of the task: the input and the expected output.", ""]
        for ex in exemplars:
            shown = "\n".join(f"{k}: {_short(v)}" for k, v in ex.items() if k != output)
            lines += ["input:", shown, "output:", f"{output}: {_short(ex.get(output, ''))}", ""]
    names = ", ".join(f'"{w}"' for w in required)
    lines += [
        "Write a new instruction that is different from all the instructions above and has a "
        "higher score than all of them. It should be concise, effective and apply to every "
        f"example of the task. It must name {names}. Reply with the instruction only.",
    ]
    return "\n".join(lines)


def _short(value: Any, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unwrap(text: str) -> str:
    """The instruction inside <INS>...</INS> when a reply uses the paper's tags."""
    match = _INS.search(text)
    return " ".join(match.group(1).split()) if match else text


# --------------------------------------------------------------------------------- the search


class _Search:
    """One OPRO run: the trajectory, the steps, the proposals, the tally."""

    def __init__(self, cfg: OPROSettings, setup: SearchSetup) -> None:
        self.cfg, self.setup = cfg, setup
        self.n_val = len(setup.evaluator.examples["val"])
        self.required = [w for w in (setup.output, *setup.labels) if mentions(setup.baseline, w)]
        self.max_chars = max(600, 3 * max(len(t) for t in (setup.baseline, *cfg.initial)))
        self.rng = random.Random(cfg.seed)
        self.tally = Tally(setup)
        limit = cfg.proposer_budget
        self.replies = ProposerReplies(
            setup.evaluator.job,
            setup.proposer_lm,
            setup.counter,
            temperature=cfg.temperature,
            limit=limit,
        )
        self.scores: dict[str, float] = {}  # the trajectory
        self.seen: set[str] = set()
        self.tokens: list[list[str]] = []
        self.rejected: list[tuple[str, str]] = []
        self.rows: list[dict[str, Any]] = []
        self.stopped, self.step = "steps", 0
        self.bar = tqdm(total=setup.budget, desc="opro", unit="call", disable=not setup.progress)

    def run(self) -> str:
        """The best instruction by val score; the counter's budgets are restored after."""
        try:
            return self._steps()
        finally:
            self.tally.close()
            self.bar.close()

    def _steps(self) -> str:
        self._remember(self.setup.baseline)
        if not self._score(self.setup.baseline):
            raise BudgetExceeded(
                f"the budget of {self.setup.budget} task calls ran out while scoring the "
                f"student's instruction on the {self.n_val} valset items (the program makes "
                "more than one call per item).",
                fix="raise the budget to several evaluations of the valset.",
            )
        for text in self.cfg.initial:
            if self._accept(text.strip()) and not self._score(text.strip()):
                self.stopped = "budget"
                return self._best()
        best, stale = self.scores[self._best()], 0
        for step in range(1, self.cfg.steps + 1):
            self.step = step
            proposals = self._propose()
            if not proposals and not self.replies.available():
                self.stopped = "proposer"
                break
            if not all(self._score(text) for text in proposals):
                self.stopped = "budget"
                break
            top = self.scores[self._best()]
            best, stale = (top, 0) if top > best else (best, stale + 1)
            if stale >= self.cfg.patience:
                self.stopped = "early_stop"
                break
        return self._best()

    def _best(self) -> str:
        """The highest score; the earliest scored wins a tie (the student's first)."""
        return max(self.scores, key=lambda t: self.scores[t])

    def trajectory(self) -> list[tuple[str, float]]:
        """The top ``keep`` (instruction, score) pairs, ascending (ties: earlier first)."""
        ranked = sorted(self.scores.items(), key=lambda p: -p[1])[: self.cfg.keep]
        return sorted(ranked, key=lambda p: p[1])

    def _propose(self) -> list[str]:
        """This step's accepted proposals (journaled replies are replayed)."""
        pool = list(self.setup.spec.examples) if self.setup.spec else []
        k = min(self.cfg.exemplars, len(pool))
        exemplars = [pool[i] for i in sorted(self.rng.sample(range(len(pool)), k))]
        prompt = meta_prompt(
            self.trajectory(), exemplars, output=self.setup.output, required=self.required
        )
        accepted = []
        for _ in range(self.cfg.per_step):
            if not self.replies.available():
                break
            text = _unwrap(self.replies.ask(prompt, seed=self.rng.randrange(2**31)))
            if self._accept(text):
                accepted.append(text)
        return accepted

    def _accept(self, text: str) -> bool:
        """Whether ``text`` is valid and new (remembered when it is; refusals are recorded)."""
        reason = "; ".join(
            proposal_problems(text, required=self.required, max_chars=self.max_chars)
        )
        key, tokens = normalize_for_exact(text), rouge_tokens(text)
        if not reason and key in self.seen:
            reason = "already proposed"
        for other in self.tokens if not reason else []:
            if (sim := rouge_l_f(tokens, other)) >= self.cfg.novelty:
                reason = f"near duplicate of a proposed instruction (ROUGE-L {sim:.2f})"
                break
        if reason:
            self.rejected.append((text, reason))
            return False
        self._remember(text)
        return True

    def _remember(self, text: str) -> None:
        self.seen.add(normalize_for_exact(text))
        self.tokens.append(rouge_tokens(text))

    def _score(self, text: str) -> bool:
        """Score ``text`` on the full valset; False when the budget stops it."""
        rows = self.tally.rows(text, range(self.n_val))
        if rows is None:
            return False
        score = sum(float(r["score"]) for r in rows) / len(rows)
        self.scores[text] = score
        self.rows.append(
            {
                "step": self.step,
                "instruction": text,
                "score": score,
                "n": len(rows),
                "calls": self.tally.last_calls,
                "calls_total": self.tally.spent,
            }
        )
        self.bar.update(self.tally.spent - self.bar.n)
        self.bar.set_postfix(step=self.step, best=f"{max(self.scores.values()):.3f}")
        return True

    def result(self, best: str, wall: float) -> OPROResult:
        return OPROResult(
            best_instruction=best,
            best_score=self.scores[best],
            baseline_score=self.scores[self.setup.baseline],
            history=list(self.rows),
            calls={TASK: self.tally.spent, PROPOSER: self.replies.spent},
            wall_time=wall,
            steps=self.step,
            stopped=self.stopped,
            rejected=list(self.rejected),
        )
