"""Local generation with transformers: batched, left-padded, length-sorted, greedy by default.

:class:`LocalLM` implements the :class:`~instructkit.lm.base.LM` protocol over a transformers
causal LM (optionally with a PEFT adapter)::

    lm = LocalLM.load("smollm2-135m-instruct")            # or LocalLM(model, tokenizer)
    [c] = lm.complete([ChatRequest.from_messages([{"role": "user", "content": "Hi"}])])

``complete_abandonable`` (the :class:`~instructkit.lm.base.Abandonable` capability, used by
``instructkit serve``) stops generating, between decode steps, for requests whose event is set,
streams each request's text as it is generated, and completes raw prompts. Several LoRA adapters
share one base model with :meth:`LocalLM.load_with_adapters` (one ``LocalLM`` view per adapter).
It also has the :class:`~instructkit.lm.base.ScoresChoices` capability: ``choice_logprobs``
gives the exact log-probability of fixed answers (one forward pass per batch, no generation),
which probability judging uses.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

from instructkit.data.templates import ChatTemplate, get_template
from instructkit.errors import ModelError
from instructkit.lm.base import DEFAULT_BATCH, ChatRequest, Completion, TextSink

__all__ = ["BASE_ADAPTER", "LocalLM"]

BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" (as in its adapter_names=)


@dataclass(frozen=True)
class _Sampling:
    """Parameters that must be equal for requests to share one ``generate`` call."""

    temperature: float
    top_p: float
    max_tokens: int
    n: int  # sequences generated per prompt (1 for greedy: copies are made afterwards)
    stop: tuple[str, ...]
    seed: int | None

    @classmethod
    def of(cls, r: ChatRequest) -> _Sampling:
        if r.temperature <= 0:  # greedy: top_p, seed and n change nothing in what is generated
            return cls(0.0, 1.0, r.max_tokens, 1, r.stop, None)
        return cls(r.temperature, r.top_p, r.max_tokens, r.n, r.stop, r.seed)


class LocalLM:
    """A transformers model as an :class:`~instructkit.lm.base.LM`.

    ``complete`` groups requests by sampling parameters; each group is generated in batches of
    about ``batch_size`` sequences (``batch_size // n`` prompts when ``n > 1``), sorted by prompt
    length so little padding is needed, left-padded. Results come back in input order.

    - ``temperature == 0`` is greedy decoding; ``n`` copies of the one answer are returned.
    - ``stop`` strings end generation; the text is cut before the first stop string.
    - ``finish_reason`` is ``"stop"`` (end-of-turn token or stop string) or ``"length"``.
    - ``seed``: before a group of requests that share a seed, the torch RNG is seeded with
      it (inside ``torch.random.fork_rng``, so the caller's RNG state is left as it was). The same
      requests with the same seed give the same texts on the same machine and library versions.
      A request's texts depend on the other requests of its group (they share one random
      stream), so give each request its own seed when each must be reproducible on its own.
      Without a seed, sampling draws from torch's global RNG.

    ``adapter_name``: for a PEFT model holding several adapters, the one this LM generates
    with (:data:`BASE_ADAPTER`: adapters disabled); None uses the model as it is.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        template: str | ChatTemplate = "tokenizer",
        batch_size: int = DEFAULT_BATCH,
        name: str = "local",
        adapter_name: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ModelError(f"batch_size must be at least 1, got {batch_size}.")
        self.model, self.tokenizer, self.batch_size, self.name = model, tokenizer, batch_size, name
        self.adapter_name = adapter_name
        self.template = get_template(template, tokenizer) if isinstance(template, str) else template
        self._stop_ids = _stop_token_ids(tokenizer, self.template)
        self._pad_id = (
            tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else (self._stop_ids[0] if self._stop_ids else 0)
        )

    @classmethod
    def load(
        cls,
        model_name: str | None = None,
        adapter: str | Path | None = None,
        template: str = "tokenizer",
        *,
        batch_size: int = DEFAULT_BATCH,
        dtype: Any = None,
        device: str | None = None,
    ) -> LocalLM:
        """Load a registered model, hub id or path (see :func:`instructkit.models.load_model`).

        ``adapter`` is a saved PEFT adapter directory applied on top: LoRA (``train sft``) or
        prompt tuning (a soft prompt, ``optimize prompt --method gradient``), whose virtual
        tokens go right after each row's left padding. ``device`` defaults to CUDA when
        available, else CPU.
        """
        from instructkit.models import DEFAULT_MODEL, load_model

        model_name = model_name or DEFAULT_MODEL
        model, tokenizer = load_model(model_name, dtype=dtype)
        name = f"local:{model_name}"
        if adapter is not None:
            model = _apply_adapter(model, Path(adapter))
            name += f"+{adapter}"
        if template != "tokenizer":
            name += f"@{template}"
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return cls(model, tokenizer, template, batch_size=batch_size, name=name)

    @classmethod
    def load_with_adapters(
        cls,
        model_name: str | None,
        adapters: Mapping[str, str | Path],
        template: str = "tokenizer",
        *,
        batch_size: int = DEFAULT_BATCH,
        dtype: Any = None,
        device: str | None = None,
    ) -> tuple[LocalLM, dict[str, LocalLM]]:
        """The base model and one view per named adapter, all sharing one set of weights.

        Each view activates its adapter around its own calls, so use them from one thread (the
        server's worker does). The adapters must be of one PEFT kind (e.g. all LoRA).
        """
        base = cls.load(model_name, template=template, batch_size=batch_size, dtype=dtype)
        if not adapters:
            return base, {}
        model = base.model
        for name, path in adapters.items():
            model = _load_named_adapter(model, Path(path), name)
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))

        def view(adapter: str, label: str) -> LocalLM:
            return cls(model, base.tokenizer, base.template, batch_size, label, adapter)

        views = {n: view(n, f"{base.name}+{n}") for n in adapters}
        return view(BASE_ADAPTER, base.name), views

    def complete(
        self, requests: Sequence[ChatRequest], *, progress: bool = False
    ) -> list[Completion]:
        """One :class:`Completion` per request, in input order."""
        return self._complete(requests, progress, None, None, False)

    def complete_abandonable(
        self,
        requests: Sequence[ChatRequest],
        abandoned: Sequence[threading.Event],
        on_text: Sequence[TextSink | None] | None = None,
        *,
        raw: bool = False,
    ) -> list[Completion]:
        """``complete``, stopping a request's generation once its ``abandoned`` event is set,
        sending its text to its ``on_text`` sink as it is generated; ``raw``: the last
        message is a plain prompt (no chat template)."""
        return self._complete(requests, False, abandoned, on_text, raw)

    def _complete(
        self,
        requests: Sequence[ChatRequest],
        progress: bool,
        abandoned: Sequence[threading.Event] | None,
        on_text: Sequence[TextSink | None] | None,
        raw: bool,
    ) -> list[Completion]:
        with self._active_adapter():
            return self._complete_active(requests, progress, abandoned, on_text, raw)

    def _active_adapter(self) -> Any:
        """A context in which the model generates with this LM's adapter."""
        if self.adapter_name is None:
            return nullcontext()
        if self.adapter_name == BASE_ADAPTER:
            return self.model.disable_adapter()
        self.model.set_adapter(self.adapter_name)
        return nullcontext()

    def _complete_active(
        self,
        requests: Sequence[ChatRequest],
        progress: bool,
        abandoned: Sequence[threading.Event] | None,
        on_text: Sequence[TextSink | None] | None,
        raw: bool,
    ) -> list[Completion]:
        encoded = [self._encode(r, raw) for r in requests]
        groups: dict[_Sampling, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(_Sampling.of(r), []).append(i)
        results: list[Completion | None] = [None] * len(requests)
        self.model.eval()
        with tqdm(total=len(requests), desc=self.name, unit="req", disable=not progress) as bar:
            for sampling, members in groups.items():
                with _seeded(sampling.seed, self.model):
                    for batch in self._batches(members, encoded, sampling.n):
                        events = [abandoned[i] for i in batch] if abandoned else None
                        sinks = [on_text[i] for i in batch] if on_text else None
                        outs = self._generate([encoded[i] for i in batch], sampling, events, sinks)
                        for i, c in zip(batch, outs, strict=True):
                            results[i] = _repeat(c, requests[i].n) if sampling.n == 1 else c
                        bar.update(len(batch))
        return [c for c in results if c is not None]

    def choice_logprobs(
        self, requests: Sequence[ChatRequest], prefix: str, choices: Sequence[str]
    ) -> list[dict[str, float]]:
        """Per request, the log-probability of each choice's full token sequence right after
        ``prefix`` at the start of the assistant's answer (see ``ScoresChoices``).

        A choice's tokens are what the tokenizer makes of prompt + prefix + choice beyond the
        tokens of prompt + prefix (the choice alone if the two texts tokenize differently at
        the boundary). Each multi-token choice gets a row (context + its tokens); single-token
        choices are read from the logits after the context of any row, so "1".."10" costs one
        row per request when digits are single tokens. Rows of several requests (at most
        ``batch_size``) share one forward pass, with only the scored positions' logits computed.
        """
        with self._active_adapter():
            return self._choice_logprobs(requests, prefix, choices)

    def _choice_logprobs(
        self, requests: Sequence[ChatRequest], prefix: str, choices: Sequence[str]
    ) -> list[dict[str, float]]:
        plans = [self._choice_plan(r, prefix, choices) for r in requests]
        results: list[dict[str, float]] = [{} for _ in requests]
        self.model.eval()
        batches: list[list[int]] = []  # requests by prompt length, at most batch_size rows
        rows = 0
        for i in sorted(range(len(plans)), key=lambda i: len(plans[i].context)):
            if not batches or rows + len(plans[i].rows) > self.batch_size:
                batches.append([])
                rows = 0
            batches[-1].append(i)
            rows += len(plans[i].rows)
        for batch in batches:
            for j, lps in zip(batch, self._score_rows([plans[j] for j in batch]), strict=True):
                results[j] = lps
        return results

    def _choice_plan(self, r: ChatRequest, prefix: str, choices: Sequence[str]) -> _ChoicePlan:
        text = self.template.render(r.chat(), True) + prefix
        context = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        tokens = {}
        for choice in choices:
            joint = self.tokenizer(text + choice, add_special_tokens=False)["input_ids"]
            ids = joint[len(context) :] if joint[: len(context)] == context else []
            ids = ids or self.tokenizer(choice, add_special_tokens=False)["input_ids"]
            if not ids:
                raise ModelError(f"the choice {choice!r} has no tokens: give non-empty choices.")
            tokens[choice] = ids
        rows = list(dict.fromkeys(tuple(t) for t in tokens.values() if len(t) > 1)) or [()]
        return _ChoicePlan(context, tokens, rows)

    def _score_rows(self, plans: list[_ChoicePlan]) -> list[dict[str, float]]:
        """One forward pass over every row of ``plans``; the choices' log-probabilities."""
        rows = [
            (plan.context + list(row[:-1]), max(1, len(row))) for plan in plans for row in plan.rows
        ]
        width, keep = max(len(ids) for ids, _ in rows), max(k for _, k in rows)
        ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)  # (R, T)
        mask = torch.zeros_like(ids)  # (R, T)
        for n, (row, _) in enumerate(rows):
            ids[n, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[n, width - len(row) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (R, T): left padding shifts nothing
        device = self.model.device
        inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
        inputs["position_ids"] = positions.to(device)
        model = self.model
        with torch.no_grad():
            if self._soft_prompt():  # the virtual tokens go right after the padding
                inputs, model = (
                    _soft_prompt_inputs(model, ids.to(device), mask.to(device)),
                    model.get_base_model(),
                )
            logits = model(**inputs, logits_to_keep=keep).logits  # (R, keep, V)
        logp = logits.float().log_softmax(-1).cpu()  # (R, keep, V)
        out, n = [], 0
        for plan in plans:
            at = {row: (n + r, keep - max(1, len(row))) for r, row in enumerate(plan.rows)}
            n += len(plan.rows)
            start = next(iter(at.values()))  # any row: the logits right after the context
            out.append(
                {
                    c: _sequence_logprob(logp, at.get(tuple(t), start), t)
                    for c, t in plan.tokens.items()
                }
            )
        return out

    def _soft_prompt(self) -> bool:
        """Whether this LM generates with a soft prompt (not the base of a served adapter)."""
        return self.adapter_name != BASE_ADAPTER and _is_soft_prompt(self.model)

    def _encode(self, r: ChatRequest, raw: bool = False) -> list[int]:
        prompt = r.messages[-1][1] if raw else self.template.render(r.chat(), True)
        ids: list[int] = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return ids

    def _batches(self, members: list[int], encoded: list[list[int]], n: int) -> list[list[int]]:
        order = sorted(members, key=lambda i: len(encoded[i]))
        size = max(1, self.batch_size // n)
        return [order[b : b + size] for b in range(0, len(order), size)]

    def _generate(
        self,
        encoded: list[list[int]],
        s: _Sampling,
        abandoned: list[threading.Event] | None,
        sinks: list[TextSink | None] | None = None,
    ) -> list[Completion]:
        if abandoned and all(e.is_set() for e in abandoned):  # nobody waits for this batch
            return [Completion([""] * s.n, len(e), 0, ["abandoned"] * s.n) for e in encoded]
        width = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), width), self._pad_id, dtype=torch.long)  # (B, T)
        mask = torch.zeros_like(ids)  # (B, T)
        for row, e in enumerate(encoded):
            ids[row, width - len(e) :] = torch.tensor(e, dtype=torch.long)
            mask[row, width - len(e) :] = 1
        sampling: dict[str, Any] = {"do_sample": False}
        if s.temperature > 0:  # top_k=0: OpenAI semantics, temperature and top_p only
            sampling = {
                "do_sample": True,
                "temperature": s.temperature,
                "top_p": s.top_p,
                "top_k": 0,
            }
        device = self.model.device
        inputs: dict[str, torch.Tensor] = {
            "input_ids": ids.to(device),
            "attention_mask": mask.to(device),
        }
        model, prompt_width = self.model, width
        if self._soft_prompt():  # from embeddings: the output holds the new tokens only
            inputs = _soft_prompt_inputs(model, inputs["input_ids"], inputs["attention_mask"])
            del inputs["position_ids"]  # generate derives them from the mask
            model, prompt_width = model.get_base_model(), 0
        stopping: list[StoppingCriteria] = []
        if sinks and any(sinks):
            stopping.append(_TextStream(self, sinks, s, prompt_width))
        if s.stop:
            stopping.append(_StopStrings(self.tokenizer, s.stop, prompt_width))
        if abandoned:
            stopping.append(_Abandoned(abandoned, s.n))
        with torch.no_grad():
            out = model.generate(
                **inputs,
                max_new_tokens=s.max_tokens,
                num_return_sequences=s.n,
                repetition_penalty=1.0,
                eos_token_id=self._stop_ids or None,
                pad_token_id=self._pad_id,
                stopping_criteria=StoppingCriteriaList(stopping),
                **sampling,
            )
        new = out[
            :, prompt_width:
        ].tolist()  # (B * n, new tokens): the n samples of a prompt are adjacent
        completions = []
        for row, e in enumerate(encoded):
            decoded = [self._decode(new[row * s.n + j], s.stop) for j in range(s.n)]
            if abandoned and abandoned[row].is_set():  # cut short unless it had ended anyway
                decoded = [(t, "abandoned" if r == "length" else r, k) for t, r, k in decoded]
            completions.append(
                Completion(
                    texts=[text for text, _, _ in decoded],
                    prompt_tokens=len(e),
                    completion_tokens=sum(k for _, _, k in decoded),
                    finish_reasons=[reason for _, reason, _ in decoded],
                )
            )
        return completions

    def streamable_text(self, tokens: list[int], stop: tuple[str, ...]) -> str:
        """The text of generated ``tokens`` that is final already: all of it once the sequence
        ended, else without a tail that may still become a stop string or end-of-turn marker
        (or that ends in an incomplete UTF-8 character)."""
        text, reason, _ = self._decode(tokens, stop)
        if reason == "stop":
            return text
        return _without_partial_marker(text.rstrip("\ufffd"), (*stop, *self.template.eot))

    def _decode(self, tokens: list[int], stop: tuple[str, ...]) -> tuple[str, str, int]:
        """(text, finish reason, tokens generated) of one generated sequence."""
        end = next((k for k, t in enumerate(tokens) if t in self._stop_ids), None)
        if end is None:  # a row that a stopping criterion ended while others ran on: padded
            while tokens and tokens[-1] == self._pad_id:
                tokens = tokens[:-1]
        used = len(tokens) if end is None else end + 1  # the end-of-turn token counts as generated
        text = self.tokenizer.decode(tokens[:end], skip_special_tokens=True)
        cut = min(
            (p for p in (text.find(m) for m in (*stop, *self.template.eot) if m) if p >= 0),
            default=None,
        )
        if cut is not None:
            return text[:cut], "stop", used
        return text, "stop" if end is not None else "length", used


@dataclass(frozen=True)
class _ChoicePlan:
    """How to score one request's choices: its context tokens, each choice's tokens, and the
    continuations (multi-token choices) that need a row of their own; ``()``: the context."""

    context: list[int]
    tokens: dict[str, list[int]]
    rows: list[tuple[int, ...]]


def _sequence_logprob(logp: torch.Tensor, at: tuple[int, int], tokens: list[int]) -> float:
    """Sum of log p(token j) read at row ``at[0]``, kept position ``at[1] + j``."""
    row, start = at
    return float(sum(logp[row, start + j, t] for j, t in enumerate(tokens)))


class _StopStrings(StoppingCriteria):
    """Ends a row once its generated text (not the prompt) contains a stop string.

    transformers' own ``stop_strings`` also match text that spans the end of the prompt, which
    would end generation before any stop string was generated.
    """

    def __init__(self, tokenizer: Any, stop: tuple[str, ...], prompt_width: int) -> None:
        self.tokenizer, self.stop, self.width = tokenizer, stop, prompt_width

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kw: Any) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.width :], skip_special_tokens=True)
        done = [any(s in t for s in self.stop) for t in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # (B,)


class _TextStream(StoppingCriteria):
    """After each decode step, sends each streamed row's new final text to its request's sink.

    It never ends a row: it is a per-step callback, the one hook ``generate`` offers for a batch
    (transformers' streamers take one row). Rows without a sink cost nothing.
    """

    def __init__(
        self, lm: LocalLM, sinks: list[TextSink | None], s: _Sampling, prompt_width: int
    ) -> None:
        self.lm, self.sinks, self.n, self.stop, self.width = lm, sinks, s.n, s.stop, prompt_width
        self.sent = [""] * (len(sinks) * s.n)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kw: Any) -> torch.Tensor:
        for row in range(input_ids.shape[0]):
            sink = self.sinks[row // self.n]
            if sink is None:
                continue
            text = self.lm.streamable_text(input_ids[row, self.width :].tolist(), self.stop)
            sent = self.sent[row]
            if len(text) > len(sent) and text.startswith(sent):
                sink(row % self.n, text[len(sent) :])
                self.sent[row] = text
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def _without_partial_marker(text: str, markers: Sequence[str]) -> str:
    """``text`` without its longest tail that is the start of one of ``markers``."""
    hold = 0
    for m in markers:
        for k in range(min(len(m), len(text)), hold, -1):
            if text.endswith(m[:k]):
                hold = k
                break
    return text[: len(text) - hold]


class _Abandoned(StoppingCriteria):
    """Ends the rows of requests whose event is set (their caller went away); ``n`` rows each."""

    def __init__(self, events: list[threading.Event], n: int) -> None:
        self.events, self.n = events, n

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kw: Any) -> torch.Tensor:
        done = [e.is_set() for e in self.events for _ in range(self.n)]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # (B * n,)


def _repeat(c: Completion, n: int) -> Completion:
    """``n`` copies of a greedy answer, with usage counted as if each had been generated."""
    return Completion(c.texts * n, c.prompt_tokens, c.completion_tokens * n, c.finish_reasons * n)


@contextmanager
def _seeded(seed: int | None, model: Any) -> Iterator[None]:
    """Seed torch's RNG for the block and restore the caller's RNG state afterwards."""
    if seed is None:
        yield
        return
    device = getattr(model, "device", torch.device("cpu"))
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed % 2**63)
        yield


def _apply_adapter(model: Any, adapter: Path) -> Any:
    if not (adapter / "adapter_config.json").is_file():
        raise ModelError(
            f"'{adapter}' is not a PEFT adapter directory (no adapter_config.json).",
            fix="pass the adapter/ folder that `instructkit train sft` wrote.",
        )
    from peft import PeftModel

    from instructkit.models import peft_checkpointing_warning_ignored

    with peft_checkpointing_warning_ignored():
        return PeftModel.from_pretrained(model, str(adapter))


def _load_named_adapter(model: Any, adapter: Path, name: str) -> Any:
    """``model`` with the adapter at ``adapter`` loaded under ``name`` (a PeftModel)."""
    if not (adapter / "adapter_config.json").is_file():
        raise ModelError(
            f"'{adapter}' is not a PEFT adapter directory (no adapter_config.json).",
            fix="pass the adapter/ folder that `instructkit train sft` wrote.",
        )
    from peft import PeftModel

    from instructkit.models import peft_checkpointing_warning_ignored

    try:
        with peft_checkpointing_warning_ignored():
            if isinstance(model, PeftModel):
                model.load_adapter(str(adapter), adapter_name=name)
                return model
            return PeftModel.from_pretrained(model, str(adapter), adapter_name=name)
    except ValueError as e:  # e.g. a prompt-tuning adapter beside a LoRA one
        raise ModelError(
            f"cannot serve the adapter '{name}' ({adapter}) beside the others: {e}",
            fix="serve adapters of one kind (e.g. all LoRA) from one server.",
        ) from e


def _is_soft_prompt(model: Any) -> bool:
    """A PEFT prompt-tuning model (a soft prompt: virtual tokens prepended as embeddings)."""
    config = getattr(model, "active_peft_config", None)
    return config is not None and config.peft_type in ("PROMPT_TUNING", "P_TUNING")


def _soft_prompt_inputs(
    model: Any, ids: torch.Tensor, mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The base model's inputs for left-padded ``ids`` (B, T) with the soft prompt's virtual
    tokens placed right after each row's padding, and position ids from the mask.

    PEFT's own forward puts them before the padding and drops position ids, so a row's answer
    would depend on how much padding its batch gave it."""
    embeds = model.get_base_model().get_input_embeddings()(ids)  # (B, T, H)
    prompt = model.get_prompt(ids.shape[0]).to(embeds.dtype)  # (B, P, H)
    rows, masks = [], []
    for r in range(ids.shape[0]):
        k = int((mask[r] == 0).sum())  # left padding of row r
        rows.append(torch.cat([embeds[r, :k], prompt[r], embeds[r, k:]]))
        masks.append(torch.cat([mask[r, :k], mask.new_ones(prompt.shape[1]), mask[r, k:]]))
    full = torch.stack(masks)  # (B, P + T)
    positions = (full.cumsum(-1) - 1).clamp(min=0)
    return {"inputs_embeds": torch.stack(rows), "attention_mask": full, "position_ids": positions}


def _stop_token_ids(tokenizer: Any, template: ChatTemplate) -> list[int]:
    """Token ids that end an assistant turn: the template's end-of-turn tokens and EOS."""
    ids = [tokenizer.convert_tokens_to_ids(t) for t in template.eot if t]
    ids = [i for i in ids if isinstance(i, int) and i != tokenizer.unk_token_id]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))
