"""A LoRA reward model served by the PPO policy's own base model, as a second adapter::

    problem = shared_base_problem("runs/rm", model="tiny-random-llama", lora=True)  # None: it fits
    reward = SharedBaseReward("runs/rm")   # a RewardFn; reads only small files until attached
    reward.attach(policy_lm)               # adapter "reward" + score head onto the policy's base
    reward(items)                          # scored with "reward" active, then "default" again

On LoRA one base model in memory then serves the policy (adapter ``default`` on), the
reference (adapters off), the value head and the reward model (adapter ``reward`` on, with its
``score`` head over the same decoder). The alternative, ``load_reward_model``, loads a second
copy of the base model.

Scores equal :func:`~instructkit.train.reward_model.load_reward_model`'s: items are rendered and
truncated by the same :class:`~instructkit.train.reward_model.RewardModel` (the template, the
tokenizer and ``max_seq_len`` saved with the reward model) and scored by the same
:func:`~instructkit.train.reward_model.sequence_rewards`, on a
:func:`~instructkit.train.reward_model.with_score_head` view of the policy's decoder. The
reward adapter and the head are frozen (``requires_grad`` off, scored under ``no_grad``) and the
policy adapter is active again after every call, also when scoring fails. The policy's dtype is
used (``load_reward_model`` loads float32: with ``dtype: bfloat16`` the scores differ by bf16
rounding).

A reward model can share the base when it is a LoRA adapter (``adapter/``, not ``model/``)
trained by ``train reward`` on the same ``model`` as the policy, and the policy is LoRA too;
:func:`shared_base_problem` says why not otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from instructkit.data.templates import get_template
from instructkit.errors import ConfigError
from instructkit.models import peft_checkpointing_warning_ignored
from instructkit.train.reward_model import (
    RewardModel,
    load_reward_info,
    reward_tokenizer,
    with_score_head,
)
from instructkit.train.rewards import RewardItem

__all__ = ["POLICY_ADAPTER", "REWARD_ADAPTER", "SharedBaseReward", "shared_base_problem"]

POLICY_ADAPTER = "default"  # the name get_peft_model gives the policy's adapter
REWARD_ADAPTER = "reward"
FIX = (
    "train the reward model with LoRA on the policy's model, or set reward.shared_base: false "
    "to load it as a separate model."
)


def shared_base_problem(path: str | Path, *, model: str, lora: bool) -> str | None:
    """Why the reward model in ``path`` cannot share the base of a policy on ``model``
    (``lora``: the policy is LoRA-wrapped); None when it can."""
    root = Path(path)
    info = load_reward_info(root)
    if not lora:
        return "the policy trains all weights (lora.enabled: false), so it has no adapters"
    adapter = root / "adapter" / "adapter_config.json"
    if not adapter.exists():
        return f"{root} holds a full-weight reward model (model/), not a LoRA adapter"
    if not _same_model(str(info["base_model"]), model):
        return f"the reward model was trained on {info['base_model']}, the policy is {model}"
    peft_type = json.loads(adapter.read_text("utf-8")).get("peft_type")
    if peft_type != "LORA":
        return f"the reward adapter is {peft_type}, not LoRA like the policy's"
    return None


def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a), Path(b)
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


class SharedBaseReward:
    """The reward model in ``path`` as adapter ``reward`` on the policy's base model, behind
    the :class:`~instructkit.train.rewards.RewardFn` contract; call :meth:`attach` first."""

    def __init__(self, path: str | Path, *, batch_size: int = 8) -> None:
        self.root = Path(path)
        self.info = load_reward_info(self.root)
        self.name = f"model:{self.root}"
        self.batch_size = batch_size
        self.lm: Any = None  # the policy's PeftModel, once attached
        self.scorer: RewardModel | None = None

    def attach(self, policy_lm: Any) -> None:
        """Load the reward adapter (frozen) and the score head onto ``policy_lm``'s base."""
        from safetensors.torch import load_file

        folder = self.root / "adapter"
        _load_adapter(policy_lm, folder)
        saved = load_file(str(folder / "adapter_model.safetensors"))
        _check_loaded(policy_lm, saved, folder)
        tokenizer = reward_tokenizer(self.root)
        base = policy_lm.get_base_model()  # the causal LM, LoRA layers injected in place
        model = with_score_head(base, pad_token_id=tokenizer.pad_token_id or 0)
        head = [v for k, v in saved.items() if k.endswith("score.weight")]
        if len(head) != 1 or head[0].shape != model.score.weight.shape:
            raise ConfigError(
                f"{folder} holds no score head of shape {tuple(model.score.weight.shape)}",
                fix="give the output_dir of `instructkit train reward` (LoRA), or set "
                "reward.shared_base: false.",
            )
        with torch.no_grad():
            model.score.weight.copy_(head[0])
        model.score.requires_grad_(False)
        template = get_template(str(self.info["template"]), tokenizer)
        self.lm = policy_lm
        self.scorer = RewardModel(
            model, tokenizer, template, max_seq_len=int(self.info["max_seq_len"]),
            name=self.name, batch_size=self.batch_size,
        )  # fmt: skip

    def __call__(self, items: Sequence[RewardItem]) -> list[float]:
        if self.scorer is None:
            raise RuntimeError("SharedBaseReward.attach(policy_lm) must run before scoring")
        active = self.lm.active_adapter
        self.lm.set_adapter(REWARD_ADAPTER, inference_mode=True)  # freezes every adapter
        try:
            return self.scorer(items)
        finally:
            self.lm.set_adapter(active)  # the policy's adapter trainable again, "reward" frozen

    def check(self, row: Mapping[str, Any], *, path: Any = None, row_no: int | None = None) -> None:
        """A reward model reads only the prompt and the response: every row will do."""


def _load_adapter(policy_lm: Any, folder: Path) -> None:
    """PEFT's ``load_adapter`` as ``reward`` (frozen; the score head is not a module of the
    causal LM, PEFT skips it), the policy's adapter active; PEFT's errors as ConfigError."""
    try:
        with peft_checkpointing_warning_ignored():
            policy_lm.load_adapter(str(folder), adapter_name=REWARD_ADAPTER, is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()
        raise ConfigError(
            f"{folder}: PEFT cannot load the reward adapter onto the policy's base model: "
            f"{' '.join(line.strip() for line in first[:2])}",
            fix=FIX,
        ) from e
    policy_lm.set_adapter(POLICY_ADAPTER)  # the policy trains; "reward" stays frozen


def _check_loaded(policy_lm: Any, saved: Mapping[str, torch.Tensor], folder: Path) -> None:
    """Every LoRA weight of the file is in ``policy_lm`` under adapter ``reward``, equal."""
    params = dict(policy_lm.named_parameters())
    lora = {k: v for k, v in saved.items() if ".lora_" in k}
    for key, value in lora.items():
        stem, _, leaf = key.rpartition(".")  # ...q_proj.lora_A, weight
        got = params.get(f"{stem}.{REWARD_ADAPTER}.{leaf}")
        if got is None or not _equal(got, value):
            raise ConfigError(
                f"{folder}: the reward adapter's weight {key} has no place in the policy's "
                "base model (another architecture or LoRA layout)",
                fix=FIX,
            )
    if not lora:
        raise ConfigError(f"{folder} holds no LoRA weights", fix="set reward.shared_base: false.")


def _equal(param: torch.Tensor, saved: torch.Tensor) -> bool:
    """``param`` holds ``saved`` (cast to the param's dtype, as loading does)."""
    if param.shape != saved.shape:
        return False
    return torch.equal(param.detach().cpu().float(), saved.to(param.dtype).float())
