"""On-policy preference pairs: sample ``n`` responses per prompt with an LM, rank them by a
reward, and keep the best and the worst as a TRL preference row::

    cfg = PairsConfig(prompts="prompts.jsonl", out="pairs.jsonl", lm="local", n=4,
                      reward=RewardSpec(kind="ifeval"))
    result = run_pairs(cfg)          # `instructkit data pairs prompts.jsonl -o pairs.jsonl`
    result.n_pairs, result.counts    # 37, {"tie": 2, "low_margin": 1, ...}

How it works, top to bottom in :func:`run_pairs`:

1. Prompt rows (``prompt`` or chat ``messages``; every other field kept for the reward) are
   read by :func:`~instructkit.data.prompt_rows.load_prompt_rows` and every row is checked by
   the reward before any LM call.
2. Each prompt gets ``n`` requests with a seed derived from ``(seed, row, sample)`` (a rerun
   draws the same), batched across prompts. Sampled responses are journaled through a
   :class:`~instructkit.jobs.Job` at ``OUT.samples.jsonl`` (one row per prompt), so a killed
   run resumes without asking again for finished prompts.
3. The responses of all prompts are scored with the reward in one call; the best is
   ``chosen`` and the worst ``rejected``. A prompt is dropped when the margin is not above
   ``min_margin`` ("tie" when the scores are equal, else "low_margin"), or when fewer than two
   distinct non-empty responses came back ("empty"/"identical"). A NaN score (a judge's
   unparseable grade) leaves that response out; a prompt left with fewer than two scored
   responses is dropped as "unscored". With ``reward.kind: judge`` and ``judge_mode:
   pairwise`` the score of a response is its number of wins in a round robin of the judge's
   both-orders comparisons (:meth:`~instructkit.rl.judge.JudgeReward.round_robin`; a pair
   whose orders disagree is a tie, counted in ``judge_counts["inconsistent"]``). The judge's
   answers are journaled in ``OUT.judge.jsonl``, so a rerun asks it only what is missing.
4. ``OUT`` is written atomically in TRL's preference format (``prompt`` as a string for one
   user turn, else the message list; ``chosen``/``rejected`` strings; ``chosen_reward``,
   ``rejected_reward``; the source ``id`` if any). Invalid rows and dropped prompts go to the
   rejects file (``OUT.rejects.jsonl``) with their reason.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field

from instructkit.data.formats import Reject, save_rejects
from instructkit.data.prompt_rows import PromptRow
from instructkit.data.sources import SourceField, as_spec, source_name
from instructkit.errors import ConfigError
from instructkit.io import beside, write_jsonl
from instructkit.jobs import Job, fingerprint
from instructkit.lm.base import DEFAULT_BATCH, LM, ChatRequest
from instructkit.lm.options import LMOptions, build_lm_from
from instructkit.rl.judge import JudgeReward
from instructkit.rl.rewards import RewardSpec, build_reward
from instructkit.train.prompts import checked_prompt_rows
from instructkit.train.rewards import RewardFn, RewardItem

__all__ = ["PairsConfig", "PairsResult", "run_pairs", "sample_seed"]


class PairsConfig(LMOptions):
    """Settings of ``instructkit data pairs`` (every key is in docs/reward.md); the LM keys
    (``lm``, ``model``, ``base_url``, ``api_key_env``, ``cache``, ``concurrency``) are
    :class:`~instructkit.lm.options.LMOptions`'."""

    model_config = ConfigDict(extra="forbid")

    prompts: SourceField = Field(
        description="the prompt rows ('prompt' or 'messages'): a path, or a dataset spec (path, "
        "split, subset, columns, file_type; docs/data.md)."
    )
    out: str = Field(description="the preference pairs written (.jsonl).")
    rejects: str | None = Field(
        default=None, description="invalid rows and dropped prompts (default OUT.rejects.jsonl)."
    )
    n: int = Field(default=4, ge=2, description="responses sampled per prompt.")
    temperature: float = Field(default=0.8, ge=0.0, description="sampling temperature.")
    max_tokens: int = Field(default=256, ge=1, description="tokens per response at most.")
    seed: int = Field(default=0, description="base of the per-(prompt, sample) seeds.")
    reward: RewardSpec = Field(default_factory=RewardSpec, description="the ranking reward.")
    judge_mode: Literal["pointwise", "pairwise"] = Field(
        default="pointwise",
        description="reward kind judge: pointwise 1-10 grades, or pairwise (a round robin of "
        "both-orders comparisons; the score is the number of wins).",
    )
    min_margin: float = Field(
        default=0.0, ge=0.0, description="a pair needs chosen - rejected reward above this."
    )
    skip_invalid: bool = Field(default=False, description="send bad rows to rejects.")
    batch: int = Field(default=DEFAULT_BATCH, ge=1, description="requests sent per LM call.")
    fresh: bool = Field(default=False, description="discard the sample journal, start over.")


@dataclass
class PairsResult:
    """What a run wrote and why prompts were dropped (``counts``: tie, low_margin, ...)."""

    out: Path
    rejects_path: Path
    samples_path: Path
    n_prompts: int
    n_pairs: int
    n_rejected_rows: int
    n_sampled: int  # prompts sampled by this run (the others came from the journal)
    counts: dict[str, int] = field(default_factory=dict)
    # judge rewards: pointwise {"graded", "unscored"}; pairwise {"comparisons",
    # "inconsistent" (orders disagreed: a tie), "unparseable"}; empty for other rewards
    judge_counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line per count, as the CLI prints it."""
        c, j = self.counts, self.judge_counts
        line = (
            f"{self.n_prompts} prompts -> {self.n_pairs} pairs ({self.out}); "
            f"ties {c.get('tie', 0)}, low-margin {c.get('low_margin', 0)}, "
            f"empty/identical {c.get('empty', 0) + c.get('identical', 0)}, "
        )
        if "comparisons" in j:
            line += (
                f"judge comparisons {j['comparisons']} (position-inconsistent "
                f"{j['inconsistent']}, unparseable {j['unparseable']}), "
            )
        elif "graded" in j:
            line += f"unscored {c.get('unscored', 0)} (unparseable grades {j['unscored']}), "
        return line + f"rejected rows {self.n_rejected_rows} ({self.rejects_path})"


def run_pairs(
    cfg: PairsConfig, *, lm: LM | None = None, judge_lm: LM | None = None, progress: bool = True
) -> PairsResult:
    """Sample, rank and write pairs (see the module doc); ``lm`` overrides ``cfg.lm`` and
    ``judge_lm`` the LM of a ``judge`` reward."""
    _check_mode(cfg)
    judge_path = beside(cfg.out, ".judge.jsonl")
    reward = build_reward(cfg.reward, judge_lm=judge_lm, journal=judge_path)
    rows, rejects = checked_prompt_rows(cfg.prompts, reward, skip_invalid=cfg.skip_invalid)
    if lm is None:
        lm = build_lm_from(cfg)
    samples_path = beside(cfg.out, ".samples.jsonl")
    ranking_only = ("reward", "judge_mode", "min_margin", "skip_invalid", "rejects")
    served = ("base_url", "api_key_env", "concurrency")  # how the LM is reached, not which
    exclude = ("fresh", "batch", "cache", *served, *ranking_only)  # ranking keys resample nothing
    fp = fingerprint(cfg, exclude=exclude, prompts=Path(as_spec(cfg.prompts).path), lm=lm.name)
    job = Job(samples_path, fp, fresh=cfg.fresh)
    if cfg.fresh:  # the judge's answers go too (they are keyed by request, never stale)
        for stale in (judge_path, Path(f"{judge_path}.state.json")):
            stale.unlink(missing_ok=True)
    n_sampled = _sample(job, rows, lm, cfg, progress)
    texts = {int(r["row"]): _distinct(r["responses"]) for r in job.records}
    scores, judge_counts = _score(rows, texts, reward, cfg.judge_mode)
    pairs, dropped, counts = _rank(rows, texts, scores, cfg.min_margin, source_name(cfg.prompts))
    write_jsonl(pairs, cfg.out)
    rejects_path = Path(cfg.rejects) if cfg.rejects else beside(cfg.out, ".rejects.jsonl")
    save_rejects([*rejects, *dropped], rejects_path)
    return PairsResult(
        Path(cfg.out), rejects_path, samples_path, len(rows), len(pairs),
        len(rejects), n_sampled, counts, judge_counts,
    )  # fmt: skip


def _check_mode(cfg: PairsConfig) -> None:
    if cfg.judge_mode == "pairwise" and cfg.reward.kind != "judge":
        raise ConfigError(
            f"judge_mode 'pairwise' ranks with an LLM judge, but reward.kind is "
            f"'{cfg.reward.kind}'.",
            fix="use --reward judge --judge-lm SPEC, or judge_mode: pointwise.",
        )


def sample_seed(seed: int, row_no: int, sample: int) -> int:
    """The seed of sample ``sample`` of prompt row ``row_no``: stable across runs."""
    digest = hashlib.sha256(f"{seed}:{row_no}:{sample}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _requests(row: PromptRow, cfg: PairsConfig) -> list[ChatRequest]:
    return [
        ChatRequest.from_messages(
            row.messages,
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
            seed=sample_seed(cfg.seed, row.row_no, j),
        )
        for j in range(cfg.n)
    ]


def _sample(job: Job, rows: list[PromptRow], lm: LM, cfg: PairsConfig, progress: bool) -> int:
    """Ask the LM for the prompts not in the journal, a chunk at a time; journal each chunk."""
    done = {int(r["row"]) for r in job.records}
    todo = [r for r in rows if r.row_no not in done]
    per_call = max(1, cfg.batch // cfg.n)
    for start in range(0, len(todo), per_call):
        chunk = todo[start : start + per_call]
        requests = [q for row in chunk for q in _requests(row, cfg)]
        completions = lm.complete(requests, progress=progress)
        if len(completions) != len(requests):
            raise ConfigError(
                f"the LM '{lm.name}' returned {len(completions)} completions for "
                f"{len(requests)} requests.",
                fix="use an LM backend that answers every request.",
            )
        texts = [c.text for c in completions]
        job.append(
            {"row": row.row_no, "responses": texts[i * cfg.n : (i + 1) * cfg.n]}
            for i, row in enumerate(chunk)
        )
        job.save_state(sampled=len(done) + start + len(chunk))
    return len(todo)


def _prompt_text(row: PromptRow) -> str:
    return row.messages[-1]["content"]


def _distinct(responses: list[str]) -> list[str]:
    """The distinct non-empty responses, in sample order."""
    return list(dict.fromkeys(t for t in responses if t.strip()))


def _score(
    rows: list[PromptRow], texts: dict[int, list[str]], reward: RewardFn, judge_mode: str
) -> tuple[dict[int, list[float]], dict[str, int]]:
    """Scores of the responses of every prompt that has two or more, in one reward call (or
    one round robin), and the judge's counts (empty for other rewards)."""
    ranked = [r for r in rows if len(texts[r.row_no]) >= 2]
    groups = [[RewardItem(_prompt_text(r), t, r.row) for t in texts[r.row_no]] for r in ranked]
    if judge_mode == "pairwise":
        assert isinstance(reward, JudgeReward)  # _check_mode
        t = reward.round_robin(groups)
        wins = dict(zip([r.row_no for r in ranked], t.wins, strict=True))
        counts = {"comparisons": t.comparisons, "inconsistent": t.inconsistent}
        return wins, counts | {"unparseable": t.unparseable}
    flat = [item for group in groups for item in group]
    values = reward(flat) if flat else []
    if len(values) != len(flat):
        raise ConfigError(
            f"the reward '{reward.name}' returned {len(values)} scores for {len(flat)} responses.",
            fix="a reward returns one score per response.",
        )
    scores, start = {}, 0
    for row, group in zip(ranked, groups, strict=True):
        scores[row.row_no], start = list(values[start : start + len(group)]), start + len(group)
    if not isinstance(reward, JudgeReward):
        return scores, {}
    return scores, {"graded": len(values), "unscored": sum(math.isnan(v) for v in values)}


def _rank(
    rows: list[PromptRow],
    texts: dict[int, list[str]],
    scores: dict[int, list[float]],
    min_margin: float,
    path: str,
) -> tuple[list[dict[str, Any]], list[Reject], dict[str, int]]:
    """The pair rows, a reject per dropped prompt, and the drops per reason (tie, ...)."""
    pairs, dropped, counts = [], [], Counter[str]()

    def drop(row: PromptRow, reason: str, why: str) -> None:
        dropped.append(Reject(path, row.row_no, None, f"{reason}: {why}", row.row))
        counts[reason] += 1

    for row in rows:
        distinct = texts[row.row_no]
        if len(distinct) < 2:
            drop(row, "empty" if not distinct else "identical",
                 "fewer than two distinct non-empty responses")  # fmt: skip
            continue
        scored = [(t, s) for t, s in zip(distinct, scores[row.row_no], strict=True)
                  if not math.isnan(s)]  # fmt: skip
        if len(scored) < 2:
            drop(row, "unscored", f"the reward scored {len(scored)} of {len(distinct)} responses")
            continue
        (best, good), (worst, bad) = max(scored, key=_by_score), min(scored, key=_by_score)
        margin = good - bad
        if margin <= min_margin:
            why = f"rewards {bad:g}..{good:g}, margin {margin:g} <= {min_margin:g}"
            drop(row, "tie" if margin == 0 else "low_margin", why)
            continue
        pairs.append(_pair_row(row, best, worst, good, bad))
    return pairs, dropped, dict(counts)


def _by_score(scored: tuple[str, float]) -> float:
    return scored[1]


def _pair_row(
    row: PromptRow, chosen: str, rejected: str, good: float, bad: float
) -> dict[str, Any]:
    one_turn = len(row.messages) == 1 and row.messages[0]["role"] == "user"
    out: dict[str, Any] = {"prompt": row.messages[0]["content"] if one_turn else row.messages}
    out.update(chosen=chosen, rejected=rejected, chosen_reward=good, rejected_reward=bad)
    if "id" in row.row:
        out["id"] = row.row["id"]
    return out
