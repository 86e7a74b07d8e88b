"""The ``templates`` method of ``instructkit optimize prompt`` with a proposer: template
candidates and LM-proposed instructions race together.

APE (Zhou et al. 2022, "Large Language Models Are Human-Level Prompt Engineers") has an LM
propose instructions and keeps the best by score; MIPRO (Opsahl-Ong et al. 2024) grounds the
proposals in a dataset summary and the program. Here the proposer sees the data summary
(:func:`~instructkit.optimize.templates.describe_data`), the program structure and the val
items the initial instruction got wrong (already scored, so no call is spent to find them),
and is asked ``candidates`` times (:func:`~instructkit.optimize.propose.propose_instructions`;
its replies are journaled in ``proposals.jsonl`` and replayed on resume). The accepted
proposals and the template candidates are interleaved (proposal, template, proposal, ...) so
that a budget too small to race them all still races both kinds, then raced with successive
halving (:func:`~instructkit.optimize.search.race`). Without a proposer this is
:func:`~instructkit.optimize.search.search_templates`.
"""

from __future__ import annotations

from itertools import chain, zip_longest
from typing import Any

from instructkit.optimize.budget import ProposerReplies
from instructkit.optimize.propose import Failure, LMProposals, propose_instructions
from instructkit.optimize.search import Search, race, template_pool

__all__ = ["initial_failures", "lm_candidates", "search_candidates"]

TEMPERATURE = 0.7  # the proposer's sampling temperature (its seeds come from --seed)


def search_candidates(search: Search) -> str:
    """Template candidates, plus LM proposals when ``search.proposer`` is set, raced on val."""
    pool = template_pool(search)
    if search.proposer is not None:
        found = lm_candidates(search, existing=[search.initial, *pool])
        pool = _interleave(found.accepted, pool)
    return race(search, pool)


def lm_candidates(search: Search, *, existing: list[str], max_failures: int = 3) -> LMProposals:
    """``search.candidates`` proposals from ``search.proposer`` (journaled), checked and
    deduplicated against ``existing``."""
    job, proposer = search.evaluator.job, search.proposer
    counter = proposer.engine.counter
    replies = ProposerReplies(job, proposer, counter, temperature=TEMPERATURE)
    task = search.task
    return propose_instructions(
        lambda prompt, seed: replies.ask(prompt, seed=seed),
        search.spec,
        search.candidates,
        structure=f"Predict({', '.join(task.inputs)} -> {task.target})",
        failures=initial_failures(search, max_failures),
        seed=search.seed,
        existing=existing,
    )


def initial_failures(search: Search, limit: int) -> list[Failure]:
    """Up to ``limit`` val items the initial instruction got wrong (read from the history)."""
    rows = search.evaluator.rows(search.initial, range(search.n_val))
    out: list[Failure] = []
    for i, row in enumerate(rows):
        if float(row["score"]) < 1.0 and len(out) < limit:
            example: Any = search.evaluator.examples["val"][i]
            got = row["error"] if row["error"] is not None else row["answer"]
            expected = str(example.get(search.task.target, ""))
            out.append(Failure(dict(example.inputs()), expected, str(got or "")))
    return out


def _interleave(first: list[str], second: list[str]) -> list[str]:
    pairs = chain.from_iterable(zip_longest(first, second))
    return [x for x in pairs if x is not None]
