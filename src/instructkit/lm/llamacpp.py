"""llama.cpp (``llama-cpp-python``, an optional extra) running a GGUF file as an LM::

    lm = LlamaCppLM()                      # the embedded SmolLM2 GGUF
    lm = LlamaCppLM("models/my.gguf", n_ctx=4096)

It runs the embedded model about twice as fast as transformers on CPU, one request at a time.
Install it with ``pip install llama-cpp-python`` (it builds llama.cpp: several minutes).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from instructkit.errors import ModelError
from instructkit.lm.base import ChatRequest, Completion

__all__ = ["LlamaCppLM", "INSTALL_HINT"]

INSTALL_HINT = "pip install llama-cpp-python"


class LlamaCppLM:
    """A GGUF model through ``llama_cpp.Llama.create_chat_completion``.

    The chat template is the one stored in the GGUF file. Sampling follows OpenAI semantics
    (temperature and top_p only; llama.cpp's top_k and min_p are switched off). ``n > 1`` makes
    ``n`` calls, with seeds ``seed, seed + 1, ...`` when the request has a seed; greedy requests
    are generated once and copied.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        n_ctx: int = 2048,
        *,
        n_threads: int | None = None,
        verbose: bool = False,
        name: str | None = None,
    ) -> None:
        try:
            import llama_cpp
        except ImportError as e:
            raise ModelError(
                "the llamacpp backend needs the optional package 'llama-cpp-python', "
                "which is not installed.",
                fix=f"run: {INSTALL_HINT} (it compiles llama.cpp, which takes a few minutes), "
                "or use the 'local' backend.",
            ) from e
        from instructkit.models import smollm2_gguf_path

        path = Path(model_path) if model_path is not None else smollm2_gguf_path()
        if not path.is_file():
            raise ModelError(f"no GGUF file at '{path}'.", fix="pass the path of a .gguf file.")
        self.path, self.name = path, name or f"llamacpp:{path.name}"
        self._llama = llama_cpp.Llama(
            model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=verbose
        )
        self._lock = threading.Lock()  # a Llama object serves one call at a time

    def complete(
        self, requests: Sequence[ChatRequest], *, progress: bool = False
    ) -> list[Completion]:
        """One :class:`Completion` per request, in input order."""
        return [
            self._complete_one(r)
            for r in tqdm(requests, desc=self.name, unit="req", disable=not progress)
        ]

    def _complete_one(self, r: ChatRequest) -> Completion:
        greedy = r.temperature <= 0
        draws = 1 if greedy else r.n
        outs = [self._call(r, None if r.seed is None else r.seed + j) for j in range(draws)]
        if greedy:
            outs = outs * r.n
        choices = [o["choices"][0] for o in outs]
        return Completion(
            texts=[(c.get("message") or {}).get("content") or "" for c in choices],
            prompt_tokens=int(outs[0].get("usage", {}).get("prompt_tokens", 0)),
            completion_tokens=sum(
                int(o.get("usage", {}).get("completion_tokens", 0)) for o in outs
            ),
            finish_reasons=[c.get("finish_reason") or "stop" for c in choices],
        )

    def _call(self, r: ChatRequest, seed: int | None) -> dict[str, Any]:
        with self._lock:
            answer: dict[str, Any] = self._llama.create_chat_completion(
                messages=r.chat(),
                temperature=max(r.temperature, 0.0),
                top_p=r.top_p,
                top_k=0,  # 0 disables it in llama.cpp
                min_p=0.0,
                max_tokens=r.max_tokens,
                stop=list(r.stop) or None,
                seed=seed,
            )
        return answer
