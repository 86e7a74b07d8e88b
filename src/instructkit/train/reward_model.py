"""A reward model: the base LM's decoder with a one-scalar ``score`` head, and its use as a
reward source::

    rm = load_reward_model("runs/rm")          # a folder written by ``train reward``
    rm([RewardItem("Say hi in lowercase.", "hi there")])   # [1.73]: higher is better

:func:`with_score_head` turns a causal LM from :func:`~instructkit.models.load_model` into the
transformers ``*ForSequenceClassification`` model of its architecture (``num_labels=1``) that
shares the LM's decoder, so the weights are the base's and the saved model is a standard one
(``AutoModelForSequenceClassification.from_pretrained`` reads the full-weights folder; PEFT reads
the adapter with its head). The reward of a sequence is the head applied to the last hidden state
at its last real token; :func:`sequence_rewards` finds that token from the attention mask of
right-padded rows, not from ``pad_token_id`` as transformers does, so a pad token that is also
the end-of-turn token (SmolLM2) cannot move it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from instructkit.data.records import Conversation, Message
from instructkit.data.templates import ChatTemplate, get_template
from instructkit.data.tokenize import tokenize_conversation
from instructkit.errors import DataFormatError, ModelError, TemplateError
from instructkit.models import load_model, peft_checkpointing_warning_ignored
from instructkit.train.rewards import RewardItem

__all__ = [
    "RewardModel",
    "load_reward_info",
    "load_reward_model",
    "pad_rows",
    "reward_tokenizer",
    "save_reward_info",
    "sequence_rewards",
    "with_score_head",
]

INFO_FILE = "reward_model.json"


def with_score_head(causal_lm: Any, *, pad_token_id: int, seed: int = 0) -> Any:
    """The sequence-classification model (one label) of ``causal_lm``'s architecture, sharing
    its decoder; the new ``score`` head is drawn from N(0, initializer_range) with ``seed``."""
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(causal_lm.config)
    config.num_labels, config.pad_token_id = 1, pad_token_id
    try:
        with torch.device("meta"):  # no second copy of the decoder's weights
            model = AutoModelForSequenceClassification.from_config(config)  # type: ignore[no-untyped-call]
    except ValueError as e:
        raise ModelError(
            f"the architecture {type(causal_lm).__name__} has no sequence-classification model "
            "in transformers, so no reward head can be put on it",
            fix="use a decoder model transformers can classify with (Llama, Qwen2, Mistral, ...)",
        ) from e
    decoder = getattr(causal_lm, causal_lm.base_model_prefix)
    setattr(model, model.base_model_prefix, decoder)
    if not isinstance(getattr(model, "score", None), torch.nn.Linear):
        raise ModelError(
            f"{type(model).__name__} has no 'score' head",
            fix="use a decoder model whose classifier is called 'score' (Llama, Qwen2, ...)",
        )
    weight = next(decoder.parameters())
    generator = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(config.hidden_size, 1, bias=False, dtype=weight.dtype)
    std = float(getattr(config, "initializer_range", 0.02))
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * std)
    model.score = head.to(weight.device)
    return model


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask``, each (B, T)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def sequence_rewards(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
    """One reward per right-padded row: the score head at the row's last real token, (B,)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(base, base.base_model_prefix)
    hidden = decoder(
        input_ids=input_ids, attention_mask=attention_mask, use_cache=False
    ).last_hidden_state  # (B, T, H)
    last = attention_mask.sum(dim=1) - 1  # (B,)
    pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, H)
    return base.score(pooled).squeeze(-1).float()  # (B,)


def save_reward_info(out: Path, *, base_model: str, template: str, max_seq_len: int) -> None:
    """What :func:`load_reward_model` needs besides the weights."""
    info = {"base_model": base_model, "template": template, "max_seq_len": max_seq_len}
    (out / INFO_FILE).write_text(json.dumps(info, indent=2), "utf-8")


class RewardModel:
    """A trained reward model behind the :class:`~instructkit.train.rewards.RewardFn` contract.

    Each item is rendered as the conversation (user: prompt, assistant: response) with the
    chat template the model was trained with; items are scored ``batch_size`` at a time.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        template: ChatTemplate,
        *,
        max_seq_len: int,
        name: str = "model",
        batch_size: int = 8,
    ) -> None:
        self.model, self.tokenizer, self.template = model.eval(), tokenizer, template
        self.max_seq_len, self.name, self.batch_size = max_seq_len, name, batch_size

    def tokens(self, item: RewardItem) -> list[int]:
        """Token ids of the item rendered as in training; too long: the response is cut, and
        if the prompt alone is too long its end is kept (a reward source never raises)."""
        conv = Conversation([Message("user", item.prompt), Message("assistant", item.response)])
        try:
            ids: list[int] = tokenize_conversation(
                conv, self.template, self.tokenizer, max_seq_len=self.max_seq_len
            ).input_ids
            return ids
        except DataFormatError:  # the prompt alone does not fit
            pass
        except TemplateError:  # e.g. an empty response the template does not show verbatim
            pass
        text = self.template.render([m.to_chat() for m in conv.messages], False)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[-self.max_seq_len :]

    @torch.no_grad()
    def __call__(self, items: Sequence[RewardItem]) -> list[float]:
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        scores: list[float] = []
        for s in range(0, len(items), self.batch_size):
            ids, mask = pad_rows([self.tokens(i) for i in items[s : s + self.batch_size]], pad)
            scores += sequence_rewards(self.model, ids.to(device), mask.to(device)).tolist()
        return scores

    def check(self, row: Mapping[str, Any], *, path: Any = None, row_no: int | None = None) -> None:
        """A reward model reads only the prompt and the response: every row will do."""


def load_reward_model(
    path: str | Path, *, device: str | None = None, batch_size: int = 8
) -> RewardModel:
    """The reward model in ``path`` (the ``output_dir`` of ``train reward``)."""
    root = Path(path)
    info = load_reward_info(root)
    if (root / "adapter").exists():
        from peft import PeftModel

        base, _ = load_model(info["base_model"], dtype=torch.float32)
        tokenizer = reward_tokenizer(root)
        model = with_score_head(base, pad_token_id=tokenizer.pad_token_id or 0)
        with peft_checkpointing_warning_ignored():
            model = PeftModel.from_pretrained(model, str(root / "adapter"))
    else:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(str(root / "model"))
        tokenizer = reward_tokenizer(root)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    template = get_template(info["template"], tokenizer)
    return RewardModel(
        model,
        tokenizer,
        template,
        max_seq_len=int(info["max_seq_len"]),
        name=f"model:{root}",
        batch_size=batch_size,
    )


def load_reward_info(path: str | Path) -> dict[str, Any]:
    """``reward_model.json`` of a reward model folder: base_model, template, max_seq_len."""
    info_file = Path(path) / INFO_FILE
    if not info_file.exists():
        raise ModelError(
            f"{path} holds no reward model ({INFO_FILE} is missing)",
            fix="give the output_dir of a finished `instructkit train reward` run",
        )
    info: dict[str, Any] = json.loads(info_file.read_text("utf-8"))
    return info


def reward_tokenizer(path: str | Path) -> Any:
    """The tokenizer saved with the reward model in ``path`` (adapter/ or model/)."""
    from transformers import AutoTokenizer

    root = Path(path)
    folder = root / "adapter" if (root / "adapter").exists() else root / "model"
    return AutoTokenizer.from_pretrained(str(folder))
