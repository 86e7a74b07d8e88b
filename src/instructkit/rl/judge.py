"""The LLM-judge reward: an LM grades each response (pointwise), or compares the responses to
one prompt in a round robin (pairwise, for ``data pairs``)::

    reward = JudgeReward(JudgeLMConfig(lm="openai:gpt-4o-mini"), reference_field="answer")
    reward([RewardItem(prompt, response, row), ...])    # [0.667, nan, ...]: (grade - 1) / 9
    wins = reward.round_robin([items_of_prompt_1, ...])  # Tournament: wins per response

Pointwise, each response gets MT-Bench's single-answer grade (Zheng et al. 2023, "Judging
LLM-as-a-Judge with MT-Bench and Chatbot Arena") through
:func:`~instructkit.evaluate.judge.grade`, against the row's ``reference_field`` when the row
has one, scaled from 1-10 to [0, 1] by ``(grade - 1) / 9``; ``scoring="probabilities"`` takes
G-Eval's expected grade from a local judge's token probabilities instead of its text. One
reward call is one ``grade()`` call (the judge LM batches it by ``batch_size``).

A grade the judge's text does not give (no "Rating: [[N]]", or a number outside 1-10) is
never made up: the reward is NaN. ``data pairs`` leaves such a response out of the ranking
(a prompt left with fewer than two scored responses is dropped as ``unscored``);
``train grpo``/``train ppo`` take the reward through :class:`UnscoredAsZero`, which counts
it as 0.0 and logs a warning with the count and the ids.

Pairwise (:meth:`JudgeReward.round_robin`), every two distinct responses to a prompt are
compared by :func:`~instructkit.evaluate.judge.compare`, each pair in both presentation orders
(MT-Bench's position swap): a pair whose two orders disagree (position bias) is a tie, and so
is one whose verdict cannot be parsed. A response's score is its number of wins; all the
prompts' comparisons go in one ``compare()`` call.

The LM is built from the config on the first call, so :meth:`JudgeReward.check` runs on every
row before any model loads. With ``journal=`` (a path or a :class:`~instructkit.jobs.Job`)
every judge answer is journaled, so a rerun asks only what is missing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from instructkit.errors import DataFormatError
from instructkit.evaluate.judge import compare, grade
from instructkit.evaluate.runner import JudgeLMConfig, build_judge_lm
from instructkit.jobs import Job
from instructkit.lm.base import LM
from instructkit.train.rewards import RewardFn, RewardItem

__all__ = ["JudgeReward", "Tournament", "UnscoredAsZero", "scaled_grade", "tally_wins"]

log = logging.getLogger(__name__)


def scaled_grade(score: float | None) -> float:
    """A 1-10 grade as a reward in [0, 1]: ``(score - 1) / 9``; NaN when there is none."""
    return math.nan if score is None else (score - 1.0) / 9.0


@dataclass
class Tournament:
    """A pairwise round robin: ``wins[g][i]`` is response i of group g's number of wins;
    ``comparisons`` pairs judged (each in both orders), of which ``inconsistent`` had orders
    that disagreed and ``unparseable`` had an order without a verdict (both count as ties)."""

    wins: list[list[float]]
    comparisons: int
    inconsistent: int
    unparseable: int


def tally_wins(
    n: int, pairs: Sequence[tuple[int, int]], outcomes: Sequence[int | None]
) -> list[float]:
    """Wins of each of ``n`` responses: outcome +1 of pair (i, j) is a win of i, -1 of j;
    0 (a tie, or orders that disagreed) and None (unparseable) give no one a win."""
    wins = [0.0] * n
    for (i, j), outcome in zip(pairs, outcomes, strict=True):
        if outcome == 1:
            wins[i] += 1.0
        elif outcome == -1:
            wins[j] += 1.0
    return wins


class JudgeReward:
    """An LLM judge's 1-10 grade scaled to [0, 1], NaN when unparseable (see the module doc)."""

    def __init__(
        self,
        cfg: JudgeLMConfig,
        *,
        reference_field: str | None = None,
        lm: LM | None = None,
        journal: str | Path | Job | None = None,
    ) -> None:
        self.cfg = cfg
        self.reference_field = reference_field
        self.journal = journal
        self.name = f"judge:{cfg.lm}"
        self._lm = lm

    @property
    def lm(self) -> LM:
        """The judge LM, built from the config on first use."""
        if self._lm is None:
            self._lm = build_judge_lm(self.cfg)
        return self._lm

    def __call__(self, items: Sequence[RewardItem]) -> list[float]:
        if not items:
            return []
        result = grade(
            self.lm, [(i.prompt, i.response) for i in items], self._references(items),
            ids=[_item_id(i, n) for n, i in enumerate(items)], journal=self.journal,
            scoring=self.cfg.scoring, max_tokens=self.cfg.max_tokens,
            batch_size=self.cfg.batch_size, progress=False,
        )  # fmt: skip
        return [scaled_grade(s) for s in result.scores]

    def round_robin(self, groups: Sequence[Sequence[RewardItem]]) -> Tournament:
        """Compare every two responses of each group (one prompt's), both orders, in one call."""
        index = [list(combinations(range(len(g)), 2)) for g in groups]
        firsts, seconds, ids = [], [], []
        for k, (g, pairs) in enumerate(zip(groups, index, strict=True)):
            for i, j in pairs:
                firsts.append(g[i])
                seconds.append(g[j])
                ids.append(f"{_item_id(g[0], k)}:{i}v{j}")
        if not firsts:
            return Tournament([[0.0] * len(g) for g in groups], 0, 0, 0)
        result = compare(
            self.lm, [(a.prompt, a.response) for a in firsts],
            [(b.prompt, b.response) for b in seconds], self._references(firsts), ids=ids,
            journal=self.journal, scoring=self.cfg.scoring, max_tokens=self.cfg.max_tokens,
            batch_size=self.cfg.batch_size, progress=False,
        )  # fmt: skip
        outcomes, wins, start = result.per_item, [], 0
        for g, pairs in zip(groups, index, strict=True):
            wins.append(tally_wins(len(g), pairs, outcomes[start : start + len(pairs)]))
            start += len(pairs)
        return Tournament(wins, len(outcomes), result.inconsistent, result.unparseable)

    def check(self, row: Mapping[str, Any], *, path: Any = None, row_no: int | None = None) -> None:
        """A row's reference (``reference_field``), when it has one, must be text."""
        if self.reference_field is None or row.get(self.reference_field) is None:
            return
        value = row[self.reference_field]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise DataFormatError(
                f"the judge reward grades against the reference in '{self.reference_field}', "
                f"which is a {type(value).__name__}, not text",
                path=path, row=row_no, field=self.reference_field,
                fix=f"make '{self.reference_field}' a string (or leave it out: that row is then "
                "graded without a reference), or set reward.reference_field to another field.",
            )  # fmt: skip

    def _references(self, items: Sequence[RewardItem]) -> list[str | None] | None:
        if self.reference_field is None:
            return None
        refs = [i.row.get(self.reference_field) for i in items]
        texts = [None if r is None or str(r).strip() == "" else str(r) for r in refs]
        return texts if any(t is not None for t in texts) else None


def _item_id(item: RewardItem, position: int) -> str:
    return str(item.row["id"]) if "id" in item.row else f"#{position}"


class UnscoredAsZero:
    """``reward`` for a policy optimizer, which needs a number for every response: a NaN (a
    judge's unparseable grade) becomes 0.0, and each call that had some logs a warning with
    their count and ids; ``unscored`` counts them over the run."""

    def __init__(self, reward: RewardFn) -> None:
        self.reward = reward
        self.name = reward.name
        self.unscored = 0

    def __call__(self, items: Sequence[RewardItem]) -> list[float]:
        scores = list(self.reward(items))
        missing = [n for n, s in enumerate(scores) if math.isnan(s)]
        if missing:
            self.unscored += len(missing)
            ids = [_item_id(items[n], n) for n in missing]
            shown = ", ".join(ids[:10]) + (f", ... ({len(ids) - 10} more)" if len(ids) > 10 else "")
            log.warning(
                "reward %s: %d of %d responses got no score (ids: %s); counted as 0.0 "
                "(%d so far this run)", self.name, len(missing), len(scores), shown, self.unscored,
            )  # fmt: skip
        return [0.0 if math.isnan(s) else s for s in scores]

    def check(self, row: Mapping[str, Any], *, path: Any = None, row_no: int | None = None) -> None:
        self.reward.check(row, path=path, row_no=row_no)
