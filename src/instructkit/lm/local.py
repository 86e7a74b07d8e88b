"""Local generation with transformers: batched, left-padded, length-sorted, greedy by default."""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm

from instructkit.data.templates import ChatTemplate

__all__ = ["generate_chat"]


def generate_chat(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict[str, Any]]],
    template: ChatTemplate,
    *,
    max_new_tokens: int = 32,
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "generate",
) -> list[str]:
    """Greedy completions for chats ending in a user turn, in input order.

    Prompts are rendered with ``template`` (generation prompt on), sorted by length so batches
    pad little, and left-padded. Generation stops at the template's end-of-turn token.
    """
    prompts = [template.render(c, True) for c in conversations]
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    stop_ids = [tokenizer.convert_tokens_to_ids(t) for t in template.eot if t]
    stop_ids = [i for i in stop_ids if isinstance(i, int) and i != tokenizer.unk_token_id]
    if tokenizer.eos_token_id is not None:
        stop_ids.append(tokenizer.eos_token_id)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    outputs: list[str] = [""] * len(prompts)
    model.eval()
    batches = [order[b : b + batch_size] for b in range(0, len(order), batch_size)]
    for idx in tqdm(batches, desc=desc, unit="batch", disable=not progress):
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]) :] = 1
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=sorted(set(stop_ids)),
                pad_token_id=pad_id,
            )
        for row, i in enumerate(idx):
            new = out[row, width:].tolist()
            cut = next((k for k, t in enumerate(new) if t in stop_ids), len(new))
            outputs[i] = tokenizer.decode(new[:cut], skip_special_tokens=True).strip()
    return outputs
