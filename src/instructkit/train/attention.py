"""Packed ("varlen") attention: each packed example attends causally to itself only.

transformers' sdpa/eager paths handle a packed row by building a (T, T) block-diagonal mask
and running masked attention over the whole row: cost and memory grow with T**2, and the
masked sdpa call cannot use the fast causal kernels. ``varlen_attention`` instead runs causal
attention per example, using ``cu_seq_lens_q`` (cumulative example lengths, passed through the
model's forward kwargs): cost sum(L_i**2), and each call takes sdpa's ``is_causal`` fast path.
On CUDA with ``torch.nn.attention.varlen.varlen_attn`` available it makes one fused call.

Use: ``use_varlen_attention(model)``, then call the decoder with ``position_ids`` (restarting
per example, for RoPE), ``cu_seq_lens_q``/``max_length_q`` and no attention mask.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["VARLEN", "use_varlen_attention", "varlen_attention"]

VARLEN = "instructkit_varlen"


def _varlen_kernel() -> Any:
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def varlen_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # (1, H, T, D)
    key: torch.Tensor,  # (1, Hkv, T, D)
    value: torch.Tensor,  # (1, Hkv, T, D)
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    max_length_q: int | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """An attention function for transformers' ``AttentionInterface``; returns (1, T, H, D)."""
    if cu_seq_lens_q is None or query.shape[0] != 1:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    groups = query.shape[1] // key.shape[1]
    kernel = _varlen_kernel() if query.is_cuda else None
    if kernel is not None:
        q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # (T, H, D)
        if groups > 1:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        cu = cu_seq_lens_q.to(device=q.device, dtype=torch.int32)
        m = int(max_length_q or int((cu[1:] - cu[:-1]).max()))
        out = kernel(q, k, v, cu, cu, m, m, is_causal=True)  # (T, H, D)
        return out.unsqueeze(0), None
    bounds = cu_seq_lens_q.tolist()
    outs = [
        F.scaled_dot_product_attention(
            query[:, :, s:e],
            key[:, :, s:e],
            value[:, :, s:e],
            is_causal=True,
            dropout_p=dropout if module.training else 0.0,
            scale=scaling,
            enable_gqa=groups > 1,
        )
        for s, e in zip(bounds[:-1], bounds[1:], strict=True)
        if e > s
    ]
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None  # (1, T, H, D)


def _no_mask(*args: Any, **kwargs: Any) -> None:
    return None


def use_varlen_attention(model: Any) -> None:
    """Register the varlen attention with transformers and switch ``model`` to it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(VARLEN, varlen_attention)
    AttentionMaskInterface.register(VARLEN, _no_mask)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.set_attn_implementation(VARLEN)
