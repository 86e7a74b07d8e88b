"""The one contract between a reward source and whatever consumes rewards (PPO, GRPO, on-policy
preference pairs)::

    items = [RewardItem(prompt="Write in lowercase: ...", response="all lowercase here", row=row)]
    scores = reward(items)          # one float per item, higher is better
    reward.name                     # e.g. "ifeval", "exact", "model:runs/rm", "judge"

``row`` is the source row the prompt came from, so that a verifier can read what it checks
(IFEval's ``instruction_id_list``/``kwargs``, a reference ``answer``). A reward source never
raises for a bad response (an empty or off-format reply scores low); a row that lacks what
the source needs is a DataFormatError raised by :meth:`RewardFn.check` before any model runs.
Sources: :mod:`instructkit.rl.rewards` (verifiers, judges; it builds one from a
:class:`RewardSpec`) and the reward model of :mod:`instructkit.train.reward`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["RewardFn", "RewardItem"]


@dataclass(frozen=True)
class RewardItem:
    """A response to score, with its prompt and the row the prompt came from."""

    prompt: str
    response: str
    row: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class RewardFn(Protocol):
    """Scores responses: one float per item, higher is better (see the module doc)."""

    name: str

    def __call__(self, items: Sequence[RewardItem]) -> list[float]: ...

    def check(self, row: Mapping[str, Any], *, path: Any = None, row_no: int | None = None) -> None:
        """Raise DataFormatError (file, row, field, fix) when ``row`` lacks what this source
        reads; called on every row before any model is loaded."""
        ...
