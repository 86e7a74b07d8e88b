"""Tokenization with response-only loss masks, multi-turn options and context-window truncation.

Each rendered segment (see :func:`instructkit.data.templates.segment_conversation`) is tokenized
on its own, so the boundary between prompt and response always falls on a token boundary and
the trained tokens decode to exactly the response plus its end-of-turn marker. Labels are -100
everywhere else.

Which assistant turns carry loss: ``train_on="all"`` (default) or ``"last"``; a message's own
``train`` flag (True/False) overrides either. An assistant turn that calls tools is an
assistant turn like any other (its calls carry loss); tool results never do.

Truncation to ``max_seq_len`` keeps the system prompt and drops the oldest user/assistant
exchanges until the rest fits; a lone final exchange that is still too long has its response
cut at the limit (never the instruction). If the prompt alone does not fit, the example is
rejected with :class:`~instructkit.errors.DataFormatError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from instructkit.data.records import Conversation, Message
from instructkit.data.templates import ChatTemplate, Segment, segment_conversation
from instructkit.errors import DataFormatError
from instructkit.losses import IGNORE_INDEX

TrainOn = Literal["all", "last"]

__all__ = [
    "IGNORE_INDEX",
    "TokenizedExample",
    "tokenize_conversation",
    "trained_text",
    "encode_segments",
]


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]
    dropped_turns: int = 0  # user/assistant exchanges removed from the front to fit
    truncated: bool = False  # the final response was cut at max_seq_len

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def _turn_trained(conv: Conversation, turn: int, train_on: TrainOn) -> bool:
    flag = conv.messages[turn].train
    if flag is not None:
        return flag
    if train_on == "last":
        last = max(i for i, m in enumerate(conv.messages) if m.role == "assistant")
        return turn == last
    return True


def encode_segments(
    segments: list[Segment], conv: Conversation, tokenizer: Any, train_on: TrainOn = "all"
) -> TokenizedExample:
    """Tokenize each segment separately and concatenate; label the trained ones."""
    ids: list[int] = []
    labels: list[int] = []
    for seg in segments:
        seg_ids = tokenizer(seg.text, add_special_tokens=False)["input_ids"]
        ids.extend(seg_ids)
        keep = seg.train and seg.turn is not None and _turn_trained(conv, seg.turn, train_on)
        labels.extend(seg_ids if keep else [IGNORE_INDEX] * len(seg_ids))
    return TokenizedExample(ids, labels)


def _exchanges(conv: Conversation) -> tuple[list[Message], list[list[Message]]]:
    """Split into (system messages, [[user, assistant], ...])."""
    head = [m for m in conv.messages[:1] if m.role == "system"]
    rest = conv.messages[len(head) :]
    pairs: list[list[Message]] = []
    for m in rest:
        if m.role == "user" or not pairs:
            pairs.append([m])
        else:
            pairs[-1].append(m)
    return head, pairs


def tokenize_conversation(
    conv: Conversation,
    template: ChatTemplate,
    tokenizer: Any,
    *,
    max_seq_len: int | None = None,
    train_on: TrainOn = "all",
) -> TokenizedExample:
    """Tokenize one conversation with loss masks, truncating to ``max_seq_len``."""
    example = encode_segments(segment_conversation(conv, template), conv, tokenizer, train_on)
    if max_seq_len is None or len(example.input_ids) <= max_seq_len:
        return example
    head, pairs = _exchanges(conv)
    for k in range(1, len(pairs)):
        shorter = Conversation(head + [m for p in pairs[k:] for m in p], conv.metadata, conv.tools)
        example = encode_segments(
            segment_conversation(shorter, template), shorter, tokenizer, train_on
        )
        if len(example.input_ids) <= max_seq_len:
            example.dropped_turns = k
            return example
    return _cut_response(example, max_seq_len, max(0, len(pairs) - 1), conv)


def _cut_response(
    example: TokenizedExample, max_seq_len: int, dropped: int, conv: Conversation
) -> TokenizedExample:
    labelled = [i for i, x in enumerate(example.labels) if x != IGNORE_INDEX]
    prompt_len = labelled[0] if labelled else len(example.input_ids)
    if prompt_len >= max_seq_len:
        raise DataFormatError(
            f"the prompt of the last exchange is {prompt_len} tokens, which leaves no room for "
            f"its response within max_seq_len={max_seq_len}",
            field="messages",
            fix="raise max_seq_len, shorten the prompt, or reject such rows with --skip-invalid "
            "(in a train sft config: skip_invalid: true).",
        )
    return TokenizedExample(
        example.input_ids[:max_seq_len], example.labels[:max_seq_len], dropped, True
    )


def trained_text(example: TokenizedExample, tokenizer: Any) -> str:
    """Decode the tokens that carry loss (contiguous runs joined as they are)."""
    ids = [
        t for t, lab in zip(example.input_ids, example.labels, strict=False) if lab != IGNORE_INDEX
    ]
    return str(tokenizer.decode(ids, skip_special_tokens=False))
