"""Sequence packing: several examples in one row, each attending only to itself.

Use it in two steps::

    bins = packed_batches([len(e.input_ids) for e in examples], budget=4096, seed=epoch)
    batch = packed_batch([examples[i] for i in bins[0]])
    hidden = decoder(
        input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
    ).last_hidden_state  # (1, T, H)
    loss_sum, n = response_only_loss(hidden, batch["labels"], head)

Bins come from best-fit decreasing (Johnson 1973, "Near-optimal bin packing algorithms"), as in
TRL's ``bfd`` packing. Position ids restart at 0 for every example, and the first label of
every example is -100, so the last token of one example never learns to predict the next
example's first token.

How the examples are kept apart (transformers 5.x, ``masking_utils.py``): for the sdpa, eager
and flex implementations, ``create_causal_mask`` calls ``_preprocess_mask_arguments``, which runs
``find_packed_sequence_indices(position_ids)`` (a new example starts wherever the position id
does not grow by exactly 1) only when ``position_ids is not None and attention_mask is None and
past_key_values is None``. It then ANDs the causal mask with a same-example mask, giving a
block-diagonal causal mask. So, in training:

- pass ``position_ids`` and ``use_cache=False``: with the config's default ``use_cache=True`` a
  ``DynamicCache`` is created, detection is skipped and examples silently attend to each other;
- pass no ``attention_mask``, not even all ones: any 2D mask also turns detection off.

The flash-attention paths derive ``cu_seqlens`` from the same position ids
(``prepare_fa_kwargs_from_position_ids``: a segment starts wherever the position id is 0). The
``cu_seqlens`` returned here follow that rule, so a varlen kernel can use them directly.
``tests/unit/train/test_packing.py`` checks that the mask transformers builds is exactly the
block-diagonal causal mask, and that packed losses and gradients equal unpacked ones.

Padding (``pad_to``, e.g. for fixed shapes under compilation): the pad tokens form one extra
pseudo-sequence at the end, with labels -100 and position ids 0, 1, ... . Being last, they are
never attended to by a real token (causal mask) and add no loss. Restarting their positions at
0, rather than continuing the last example's, makes both rules above (sdpa/eager/flex and
flash) see them as their own segment, so they never attend to the last example either, and
``cu_seqlens`` / ``seq_lens`` list them as the final segment, matching the position ids.
"""

from __future__ import annotations

import bisect
import heapq
import random
from collections.abc import Sequence

import torch

from instructkit.data.tokenize import IGNORE_INDEX, TokenizedExample

__all__ = ["pack_bfd", "packed_batch", "packed_batches", "packing_efficiency"]


def _check_lengths(lengths: Sequence[int], budget: int) -> None:
    if budget < 1:
        raise ValueError(f"budget must be at least 1 token, got {budget}")
    for i, n in enumerate(lengths):
        if n < 1 or n > budget:
            raise ValueError(
                f"example {i} has {n} tokens, which does not fit a packing budget of {budget} "
                "tokens; truncate examples to at most the budget (max_seq_len) or raise the budget"
            )


def pack_bfd(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Best-fit decreasing: indices of examples grouped into bins of at most ``budget`` tokens.

    Longest first (ties by index); each example goes to the bin with the least room that still
    fits it (ties: the bin opened first), else to a new bin. Raises ValueError for an example
    that is empty or longer than ``budget``. O(n log n) plus the upkeep of a sorted list of the
    distinct free capacities (at most ``budget + 1`` values).
    """
    _check_lengths(lengths, budget)
    bins: list[list[int]] = []
    free: dict[int, list[int]] = {}  # free capacity -> heap of bin ids with that capacity
    caps: list[int] = []  # sorted capacities that have at least one bin
    for i in sorted(range(len(lengths)), key=lambda j: (-lengths[j], j)):
        n = lengths[i]
        k = bisect.bisect_left(caps, n)
        if k == len(caps):  # no open bin has room: open one
            b, room = len(bins), budget
            bins.append([])
        else:
            room = caps[k]
            b = heapq.heappop(free[room])
            if not free[room]:
                del free[room], caps[k]
        bins[b].append(i)
        left = room - n
        if left not in free:
            free[left] = []
            bisect.insort(caps, left)
        heapq.heappush(free[left], b)
    return bins


def packed_batches(lengths: Sequence[int], budget: int, *, seed: int = 0) -> list[list[int]]:
    """:func:`pack_bfd` over the examples' lengths, then the bins shuffled with ``seed``.

    The training loop's packed micro-batches (one epoch): lists of example indices.
    """
    bins = pack_bfd(lengths, budget)
    random.Random(seed).shuffle(bins)
    return bins


def packing_efficiency(lengths: Sequence[int], bins: Sequence[Sequence[int]], budget: int) -> float:
    """Real tokens / (number of bins x budget): 1.0 means no padding would be needed."""
    if not bins:
        return 0.0
    return sum(lengths[i] for b in bins for i in b) / (len(bins) * budget)


def packed_batch(
    examples: Sequence[TokenizedExample], pad_to: int | None = None, pad_id: int = 0
) -> dict[str, torch.Tensor]:
    """Concatenate examples into one row for a packed forward pass.

    Returns input_ids, labels, position_ids, each (1, T); cu_seqlens (S + 1,) int32 and
    seq_lens (S,) int32 over the S segments (the examples, then the padding if any). Position ids
    restart at 0 per segment; each example's first label is -100 (see the module docstring).
    Pass ``position_ids`` and ``use_cache=False`` to the model, and no ``attention_mask``.
    """
    if not examples:
        raise ValueError("packed_batch needs at least one example")
    seq_lens = [len(e.input_ids) for e in examples]
    total = sum(seq_lens)
    if pad_to is not None and pad_to < total:
        raise ValueError(f"pad_to={pad_to} is shorter than the {total} packed tokens")
    if pad_to is not None and pad_to > total:
        seq_lens.append(pad_to - total)
    ids: list[int] = []
    labels: list[int] = []
    for e in examples:
        ids.extend(e.input_ids)
        labels.append(IGNORE_INDEX)  # never predicted from the previous example's last token
        labels.extend(e.labels[1:])
    pad = (pad_to or total) - total
    ids.extend([pad_id] * pad)
    labels.extend([IGNORE_INDEX] * pad)
    positions = [p for n in seq_lens for p in range(n)]
    lens = torch.tensor(seq_lens, dtype=torch.int32)  # (S,)
    cu = torch.zeros(len(seq_lens) + 1, dtype=torch.int32)  # (S + 1,)
    cu[1:] = torch.cumsum(lens, 0)
    return {
        "input_ids": torch.tensor([ids], dtype=torch.long),  # (1, T)
        "labels": torch.tensor([labels], dtype=torch.long),  # (1, T)
        "position_ids": torch.tensor([positions], dtype=torch.long),  # (1, T)
        "cu_seqlens": cu,
        "seq_lens": lens,
    }
