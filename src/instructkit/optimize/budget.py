"""What an instruction search spends: task calls through the evaluator, under a budget it never
exceeds, and proposer calls, journaled so that a resumed run replays them.

Used by :class:`~instructkit.optimize.evolutionary.Evolutionary` and
:class:`~instructkit.optimize.opro.OPRO`::

    tally = Tally(setup)                       # setup: a student.SearchSetup
    rows = tally.rows(instruction, range(n))   # journal rows, or None: the budget stops here
    tally.close()                              # the counter's own budgets back
    replies = ProposerReplies(job, proposer_lm, counter, temperature=0.7, limit=None)
    text = replies.ask(prompt, seed=rng.randrange(2**31))   # "" when the proposer is spent

The tally counts the calls of every (instruction, item) a search scores, journaled ones
included, so a resumed run (which reads them back without a call) makes the same decisions as
the run it continues. Before each evaluation it checks that the new items times the most calls
per item measured so far (1 at first) fit in what is left; the counter's task budget is lowered
to the same limit as a backstop, so a program that calls more than measured is cut at the
budget (:class:`~instructkit.optimize.bridge.BudgetExceeded` is caught, and the search stops).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from instructkit.jobs import Job
from instructkit.optimize.bridge import PROPOSER, TASK, BudgetExceeded, CallCounter
from instructkit.optimize.propose import propose_rewrite
from instructkit.optimize.student import SearchSetup

__all__ = ["ProposerReplies", "Tally"]


class Tally:
    """Task calls of one search through its evaluator (see the module docstring)."""

    def __init__(self, setup: SearchSetup) -> None:
        self.setup, self.evaluator, self.counter = setup, setup.evaluator, setup.counter
        self.spent = self.last_calls = 0  # all calls; those of the last evaluation
        self.calls_per_item = 1  # raised to what evaluations measure (a program may call more)
        self.scored: set[tuple[str, int]] = set()  # (instruction, item) this search paid for
        self.saved_budgets = dict(setup.counter.budgets)

    def fits(self, instruction: str, items: Sequence[int]) -> bool:
        """Whether scoring ``instruction`` on ``items`` fits in what is left of the budget."""
        new = sum((instruction, i) not in self.scored for i in items)
        return self.spent + new * self.calls_per_item <= self.setup.budget

    def rows(self, instruction: str, items: Sequence[int]) -> list[dict[str, Any]] | None:
        """The evaluator's rows of ``instruction`` on val ``items``, or None (nothing counted
        twice) when they do not fit in the budget or the backstop cut them."""
        if not self.fits(instruction, items):
            return None
        limit = self.counter.count(TASK) + self.setup.budget - self.spent
        self.counter.budgets[TASK] = min(limit, self.saved_budgets.get(TASK, limit))
        before = self.counter.count(TASK)
        try:
            rows = self.evaluator.rows(instruction, items)
        except BudgetExceeded:
            self.spent += self.counter.count(TASK) - before
            return None
        new = {i for i in items if (instruction, i) not in self.scored}
        self.last_calls = sum(int(r["calls"]) for i, r in zip(items, rows, strict=True) if i in new)
        self.scored.update((instruction, i) for i in new)
        self.spent += self.last_calls
        self.calls_per_item = max(self.calls_per_item, *(int(r["calls"]) for r in rows))
        return rows

    def close(self) -> None:
        """Give the counter its own budgets back."""
        self.counter.budgets.clear()
        self.counter.budgets.update(self.saved_budgets)


class ProposerReplies:
    """Proposer replies through the job's ``proposals`` journal: the n-th request of a run is
    answered from the journal when it is there, else asked and journaled. ``lm`` is a counted
    ``bridge_lm`` (role proposer) or None (nothing is available); ``limit`` caps the proposer
    calls (None: the counter's own proposer budget, if any, is the only cap)."""

    def __init__(
        self,
        job: Job,
        lm: Any,
        counter: CallCounter,
        *,
        temperature: float,
        limit: int | None = None,
    ) -> None:
        self.job, self.lm, self.counter = job, lm, counter
        self.temperature, self.limit = temperature, limit
        self.journaled = {int(r["number"]): r for r in self.job.records_of("proposals")}
        self.asked = self.spent = 0

    def available(self) -> bool:
        return self.lm is not None and (self.limit is None or self.spent < self.limit)

    def ask(self, prompt: str, *, seed: int) -> str:
        """The next reply, cleaned (:func:`~instructkit.optimize.propose.propose_rewrite`); ""
        when the counter's proposer budget ran out."""
        number = self.asked
        self.asked += 1
        row = self.journaled.get(number)
        if row is None:
            before = self.counter.count(PROPOSER)
            try:
                text = propose_rewrite(self.lm, prompt, seed=seed, temperature=self.temperature)
            except BudgetExceeded:
                text = ""
            row = {"number": number, "text": text, "calls": self.counter.count(PROPOSER) - before}
            self.job.append([row], to="proposals")
        self.spent += int(row["calls"])
        return str(row["text"])
