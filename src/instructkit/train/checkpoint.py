"""Checkpoints that a resumed run can trust.

A checkpoint directory ``checkpoint-{step:08d}`` holds the trainable weights
(``trainable.safetensors``: the LoRA adapter or all parameters), the optimizer state, and
``state.json`` (step, RNG states, metrics so far). It is written into a temporary directory
and renamed into place only when complete, so a kill or a full disk mid-write leaves nothing
that :func:`latest_checkpoint` would pick up. Older checkpoints beyond ``keep`` are removed.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from instructkit.jobs import check_same_job

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "load_extra",
    "trainable_state",
    "latest_checkpoint",
    "check_resume",
    "rng_state",
    "set_rng_state",
]

_PREFIX = "checkpoint-"


def rng_state() -> dict[str, Any]:
    """Python and torch RNG states, JSON-serialisable."""
    return {"python": _jsonable(random.getstate()), "torch": torch.get_rng_state().tolist()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tupled(state["python"]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def _jsonable(x: Any) -> Any:
    return [_jsonable(v) for v in x] if isinstance(x, (tuple, list)) else x


def _tupled(x: Any) -> Any:
    return tuple(_tupled(v) for v in x) if isinstance(x, list) else x


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the trainable parameters on the CPU (``.cpu()`` alone would alias them on a
    CPU model, and later optimizer steps would change the "saved" weights)."""
    return {
        n: p.detach().to("cpu", copy=True).contiguous()
        for n, p in model.named_parameters()
        if p.requires_grad
    }


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    *,
    keep: int = 2,
    extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write checkpoint ``step`` atomically; returns its directory.

    ``extra_tensors`` maps a name to tensors saved as ``{name}.safetensors`` (e.g. the best
    weights seen so far), read back with :func:`load_extra`.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / f"{_PREFIX}{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-ckpt-", dir=run_dir))
    try:
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        for name, tensors in (extra_tensors or {}).items():
            save_file(tensors, str(tmp / f"{name}.safetensors"))
        (tmp / "state.json").write_text(json.dumps({**state, "step": step}), "utf-8")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in _checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _checkpoints(run_dir: Path) -> list[Path]:
    found = [p for p in run_dir.glob(f"{_PREFIX}*") if (p / "state.json").exists()]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX) :]))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint in ``run_dir`` (None if there is none)."""
    found = _checkpoints(Path(run_dir)) if Path(run_dir).exists() else []
    return found[-1] if found else None


def check_resume(ckpt: str | Path, fingerprint: dict[str, Any], *, fix: str) -> None:
    """Refuse to resume from ``ckpt`` when the run that wrote it had another fingerprint (its
    settings or data; see :func:`instructkit.jobs.fingerprint`), naming each difference.
    A checkpoint written before fingerprints were recorded is trusted as before."""
    saved = json.loads((Path(ckpt) / "state.json").read_text("utf-8")).get("fingerprint")
    if saved is not None:
        check_same_job(saved, fingerprint, what=f"the checkpoint {ckpt}", fix=fix)


def load_extra(path: str | Path, name: str) -> dict[str, torch.Tensor] | None:
    """Tensors saved under ``name`` by :func:`save_checkpoint` (None if absent)."""
    f = Path(path) / f"{name}.safetensors"
    return load_file(str(f)) if f.exists() else None


def load_checkpoint(
    path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore trainable weights and optimizer state; returns the saved ``state.json``."""
    path = Path(path)
    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise KeyError(f"checkpoint {path} has weights this model lacks: {missing[:3]}")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    state: dict[str, Any] = json.loads((path / "state.json").read_text("utf-8"))
    return state
