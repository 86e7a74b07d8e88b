"""The LM options every model-calling command shares, as one typed model.

``--lm``, ``--model``, ``--base-url``, ``--api-key-env``, ``--cache`` and ``--concurrency`` are
the fields of :class:`LMOptions`; their descriptions are the CLI's help texts
(:func:`instructkit.cli.options.lm_options`), so that ``--help``, the docs and the YAML keys
say the same thing. Build the LM they name with :func:`build_lm_from`::

    opts = LMOptions(lm="openai", model="gpt-4o-mini", base_url="http://127.0.0.1:8000/v1")
    opts.spec                     # "openai:gpt-4o-mini"
    lm = build_lm_from(opts)      # an OpenAILM (wrapped in a CachedLM when cache is set)
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from instructkit.errors import ConfigError
from instructkit.lm.base import LM

__all__ = ["LM_OPTION_FIELDS", "LMOptions", "build_lm_from", "lm_spec"]


class LMOptions(BaseModel):
    """Which LM answers, and how to reach it."""

    model_config = ConfigDict(extra="forbid")

    lm: str = Field(
        "local",
        description="LM backend: local[:MODEL] (transformers), openai:MODEL (any "
        "OpenAI-compatible server) or llamacpp[:PATH].",
    )
    model: str | None = Field(
        None,
        description="Model: registry name, hub id or folder (local), or the served model name "
        "(openai); replaces the MODEL part of lm.",
    )
    base_url: str | None = Field(
        None, description="Server URL for openai:MODEL (default $OPENAI_BASE_URL, else OpenAI)."
    )
    api_key_env: str | None = Field(
        None,
        description="Environment variable holding the API key for openai:MODEL (default "
        "OPENAI_API_KEY).",
    )
    cache: str | None = Field(
        None, description="SQLite request cache file: a repeated request is answered from it."
    )
    concurrency: int | None = Field(
        None, gt=0, description="Requests in flight at once for openai:MODEL (default 8)."
    )

    @property
    def spec(self) -> str:
        """The ``build_lm`` spec: ``lm`` with ``model`` in place of its MODEL part."""
        return lm_spec(self.lm, self.model)


LM_OPTION_FIELDS = tuple(LMOptions.model_fields)


def lm_spec(lm: str, model: str | None) -> str:
    """``lm`` with ``model`` (when given) as its MODEL part: ``("openai", "m") -> "openai:m"``."""
    return f"{lm.partition(':')[0]}:{model}" if model else lm


def build_lm_from(opts: LMOptions, **kw: Any) -> LM:
    """The LM ``opts`` names; ``kw`` go to the backend (e.g. ``adapter=``, ``batch_size=``)."""
    from instructkit.lm import build_lm

    served = {"api_key_env": opts.api_key_env, "concurrency": opts.concurrency}
    kw |= {k: v for k, v in served.items() if v is not None}
    return build_lm(opts.spec, base_url=opts.base_url, cache=opts.cache, **kw)


def api_key_from_env(name: str) -> str:
    """The value of the environment variable ``name``; ConfigError when unset."""
    value = os.environ.get(name)
    if not value:
        raise ConfigError(
            f"the environment variable {name} (api_key_env) is not set.",
            fix=f"export {name}=YOUR_KEY, or leave api_key_env out to use OPENAI_API_KEY.",
        )
    return value
