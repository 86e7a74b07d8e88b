"""Reward sources behind the :class:`~instructkit.train.rewards.RewardFn` contract, and
:func:`build_reward` that makes one from a :class:`RewardSpec` (a config's ``reward:`` block)::

    reward = build_reward(RewardSpec(kind="ifeval"))
    reward.check(row, path="prompts.jsonl", row_no=3)   # before any model is loaded
    reward([RewardItem(prompt, response, row)])          # [0.5]: 1 of 2 instructions followed

Kinds:

- ``ifeval`` (verifier): the share of the row's IFEval instructions (``instruction_id_list``
  with ``kwargs``) the response follows, strict (:func:`~instructkit.evaluate.ifeval.
  followed_share`); rows are checked with IFEval's own validation.
- ``exact`` (verifier): 1.0 when the response's answer matches the row's ``field`` (default
  ``answer``; a list means any of them) by :func:`~instructkit.evaluate.checks.score_answer`'s
  lenient rules (the answer in the first line or after "answer is", numbers parsed), else 0.0.
- ``model``: the reward model trained by ``instructkit train reward`` in ``path``
  (:func:`~instructkit.train.reward_model.load_reward_model`): the scalar score of the rendered
  prompt and response, batched; it reads no field of the row. ``train ppo`` can serve a LoRA
  reward model from the policy's own base model instead (``reward.shared_base`` of
  :class:`~instructkit.rl.workflows.PPORewardSpec`).
- ``judge``: an LLM judge (:class:`~instructkit.rl.judge.JudgeReward`): the LM in ``judge``
  (an :class:`~instructkit.evaluate.runner.JudgeLMConfig`, the keys of ``eval run``'s judge)
  grades each response 1-10, MT-Bench style, against the row's ``reference_field`` when the
  row has one; the reward is ``(grade - 1) / 9``, NaN when the judge gives no readable grade
  (``data pairs`` leaves that response out; GRPO/PPO count it as 0.0 with a warning, see
  :func:`build_policy_reward`). The LM is built on the first call, after ``check``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from instructkit.errors import ConfigError, DataFormatError
from instructkit.evaluate.checks import score_answer
from instructkit.evaluate.ifeval import followed_share, parse_ifeval_row
from instructkit.evaluate.runner import JudgeLMConfig
from instructkit.jobs import Job
from instructkit.lm.base import LM
from instructkit.rl.judge import JudgeReward, UnscoredAsZero
from instructkit.train.rewards import RewardFn, RewardItem

__all__ = ["ExactReward", "IFEvalReward", "RewardSpec", "build_policy_reward", "build_reward"]

IFEVAL_FIELDS = ("instruction_id_list", "kwargs")


class RewardSpec(BaseModel):
    """Which reward source to build (the ``reward:`` block of an RL config)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["ifeval", "exact", "model", "judge"] = Field(
        default="ifeval",
        description="ifeval: share of the row's IFEval instructions followed; exact: the "
        "response's answer matches the row's reference field; model: a trained reward model; "
        "judge: an LLM judge's 1-10 grade scaled to [0, 1].",
    )
    field: str = Field(default="answer", description="the reference field read by 'exact'.")
    path: str | None = Field(
        default=None, description="'model' only: the output_dir of `instructkit train reward`."
    )
    judge: JudgeLMConfig | None = Field(
        default=None,
        description="'judge' only: the judge LM (lm, base_url, scoring, max_tokens, batch_size, "
        "timeout, max_retries, retry_window, concurrency), as in eval run's judge.",
    )
    reference_field: str | None = Field(
        default=None,
        description="'judge' only: grade against this field of the row when the row has it.",
    )

    @model_validator(mode="after")
    def _judge_keys_need_kind_judge(self) -> RewardSpec:
        if self.kind != "judge" and (self.judge is not None or self.reference_field is not None):
            raise ValueError(
                f"judge and reference_field apply to kind 'judge' only, not '{self.kind}' "
                "(set reward.kind: judge, --reward judge)"
            )
        return self


class IFEvalReward:
    """The share of the row's IFEval instructions the response follows (strict)."""

    name = "ifeval"

    def __call__(self, items: Sequence[RewardItem]) -> list[float]:
        rows = (parse_ifeval_row(_ifeval_value(i.row, i.prompt, i.response)) for i in items)
        return [followed_share(row) for row in rows]

    def check(self, row: Mapping[str, Any], *, path: Any = None, row_no: int | None = None) -> None:
        value = _ifeval_value(row, str(row.get("prompt") or "-"), "-")
        parse_ifeval_row(value, path=path, row=row_no)


class ExactReward:
    """1.0 when the response's answer matches the row's reference ``field``, else 0.0."""

    def __init__(self, field: str = "answer") -> None:
        self.field = field
        self.name = f"exact:{field}"

    def __call__(self, items: Sequence[RewardItem]) -> list[float]:
        return [
            max(score_answer(i.response, ref) for ref in _references(i.row[self.field]))
            for i in items
        ]

    def check(self, row: Mapping[str, Any], *, path: Any = None, row_no: int | None = None) -> None:
        value = row.get(self.field)
        if value is None or not _references(value):
            raise DataFormatError(
                f"the reward 'exact' reads the reference answer in '{self.field}', which the row "
                "lacks or leaves empty",
                path=path, row=row_no, field=self.field,
                fix=f"give every row a '{self.field}' (a string, or a list of accepted answers), "
                "or set reward.field to the field that holds it.",
            )  # fmt: skip


def build_reward(
    spec: RewardSpec,
    *,
    judge_lm: LM | None = None,
    journal: str | Path | Job | None = None,
) -> RewardFn:
    """The reward source ``spec`` names; for ``judge``, ``judge_lm`` replaces the LM built
    from ``spec.judge`` (e.g. a ScriptedLM in tests) and ``journal`` keeps its answers."""
    if spec.kind == "ifeval":
        return IFEvalReward()
    if spec.kind == "exact":
        return ExactReward(spec.field)
    if spec.kind == "model":
        if not spec.path:
            raise ConfigError(
                "reward kind 'model' needs reward.path, the folder of a trained reward model.",
                fix="set reward.path to the output_dir of `instructkit train reward`.",
            )
        from instructkit.train.reward_model import load_reward_model

        return load_reward_model(spec.path)
    if spec.kind == "judge":
        if spec.judge is None:
            raise ConfigError(
                "reward kind 'judge' needs reward.judge.lm, the judge LM.",
                fix="set reward.judge.lm, e.g. openai:gpt-4o-mini or local:NAME_OR_PATH "
                "(--judge-lm for data pairs; --set reward.judge.lm=... for train grpo/ppo).",
            )
        ref = spec.reference_field
        return JudgeReward(spec.judge, reference_field=ref, lm=judge_lm, journal=journal)
    raise ConfigError(
        f"unknown reward kind '{spec.kind}'.", fix="use ifeval, exact, model or judge."
    )


def build_policy_reward(spec: RewardSpec, *, judge_lm: LM | None = None) -> RewardFn:
    """The reward for a policy optimizer (GRPO, PPO): :func:`build_reward`, with a judge's
    NaN (an unparseable grade) counted as 0.0 and warned about
    (:class:`~instructkit.rl.judge.UnscoredAsZero`)."""
    reward = build_reward(spec, judge_lm=judge_lm)
    return UnscoredAsZero(reward) if spec.kind == "judge" else reward


def _references(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [str(v) for v in values if str(v).strip()]


def _ifeval_value(row: Mapping[str, Any], prompt: str, response: str) -> dict[str, Any]:
    return {"prompt": prompt or "-", "response": response, **{k: row.get(k) for k in IFEVAL_FIELDS}}
