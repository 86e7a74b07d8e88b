"""A saved LoRA adapter over the tiny model that changes its outputs, for serving tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def save_random_lora(
    path: Path, *, seed: int, targets: Sequence[str] = ("q_proj", "v_proj", "o_proj")
) -> Path:
    """LoRA (r=4) over the tiny model (weights of seed 0) with lora_B drawn from N(0, 1) under
    ``seed`` (PEFT starts lora_B at zero: an adapter that changes nothing), saved to ``path``."""
    import torch
    from peft import LoraConfig, get_peft_model

    from instructkit.models import (
        build_tiny_model,
        build_tiny_tokenizer,
        peft_checkpointing_warning_ignored,
    )

    with peft_checkpointing_warning_ignored():  # PEFT reads a property transformers 5 deprecated
        model = get_peft_model(
            build_tiny_model(build_tiny_tokenizer(), seed=0),
            LoraConfig(r=4, lora_alpha=8, target_modules=list(targets)),
        )
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 1.0)
    model.save_pretrained(path)
    return path
