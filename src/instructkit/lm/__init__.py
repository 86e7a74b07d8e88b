"""Language models behind one contract, and :func:`build_lm` to make one from a spec string.

Specs (the CLI's ``--lm`` values):

- ``local``: the embedded model (transformers); ``local:NAME_OR_PATH``: a registered model, a
  Hugging Face id or a model directory (``adapter=``, ``template=``, ``batch_size=`` apply).
- ``openai:MODEL``: any OpenAI-compatible server (``base_url=``, ``api_key=``, ``concurrency=``,
  ``max_retries=``, ``timeout=`` (seconds per answer, default 600), ``retry_window=`` apply).
- ``llamacpp`` / ``llamacpp:PATH``: a GGUF file through ``llama-cpp-python`` (optional extra).

``cache=PATH`` wraps the LM in a :class:`CachedLM`. ``LocalLM`` and ``LlamaCppLM`` are imported
on first use, so that importing this package does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from instructkit.errors import ConfigError
from instructkit.lm.base import (
    DEFAULT_BATCH,
    LM,
    Abandonable,
    ChatRequest,
    Completion,
    ScoresChoices,
    request_key,
)
from instructkit.lm.cache import CachedLM
from instructkit.lm.openai import OpenAILM
from instructkit.lm.replay import ReplayLM
from instructkit.lm.scripted import ScriptedLM

if TYPE_CHECKING:
    from instructkit.lm.llamacpp import LlamaCppLM
    from instructkit.lm.local import LocalLM

__all__ = [
    "BACKENDS",
    "DEFAULT_BATCH",
    "LM",
    "Abandonable",
    "CachedLM",
    "ChatRequest",
    "Completion",
    "LlamaCppLM",
    "LocalLM",
    "OpenAILM",
    "ReplayLM",
    "ScoresChoices",
    "ScriptedLM",
    "build_lm",
    "request_key",
]

BACKENDS = ("local", "local:NAME_OR_PATH", "openai:MODEL", "llamacpp", "llamacpp:PATH")


def build_lm(
    spec: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    cache: str | None = None,
    api_key_env: str | None = None,
    concurrency: int | None = None,
    **kw: Any,
) -> LM:
    """Build the LM named by ``spec`` (see the module docstring); ``kw`` go to its constructor.
    ``api_key_env`` names the environment variable that holds the API key; ``concurrency``
    (requests in flight) applies to ``openai:MODEL``."""
    backend, _, arg = spec.partition(":")
    served = {"base_url": base_url, "api_key": api_key, "api_key_env": api_key_env,
              "concurrency": concurrency}  # fmt: skip
    given = [k for k, v in served.items() if v]
    if given and backend != "openai":
        raise ConfigError(
            f"{', '.join(given)} apply to openai:MODEL only, not to '{spec}'.",
            fix="drop them, or use --lm openai:MODEL.",
        )
    if api_key_env is not None:
        from instructkit.lm.options import api_key_from_env

        api_key = api_key_from_env(api_key_env)
    if concurrency is not None:
        kw["concurrency"] = concurrency
    lm: LM
    if backend == "local":
        from instructkit.lm.local import LocalLM

        lm = LocalLM.load(arg or None, **kw)
    elif backend == "openai":
        if not arg:
            raise ConfigError(
                "'openai' needs a model name.", fix="write openai:MODEL, e.g. openai:gpt-4o-mini."
            )
        lm = OpenAILM(arg, base_url, api_key, **kw)
    elif backend == "llamacpp":
        from instructkit.lm.llamacpp import LlamaCppLM

        lm = LlamaCppLM(arg or None, **kw)
    else:
        raise ConfigError(
            f"unknown LM backend '{backend}' in '{spec}'.",
            fix=f"use one of: {', '.join(BACKENDS)}.",
        )
    return CachedLM(lm, cache) if cache else lm


def __getattr__(name: str) -> Any:
    # PEP 562: the torch-backed classes load on first access only.
    if name == "LocalLM":
        from instructkit.lm.local import LocalLM

        return LocalLM
    if name == "LlamaCppLM":
        from instructkit.lm.llamacpp import LlamaCppLM

        return LlamaCppLM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
