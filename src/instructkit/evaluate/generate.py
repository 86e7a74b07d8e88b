"""``instructkit generate DATA --lm ... -o OUT.jsonl``: responses for every prompt of a file.

``run_generate(cfg)`` reads top to bottom: read the prompts (before any model is loaded), open
the output as a resumable :class:`~instructkit.jobs.Job`, build the LM, generate the rows not
yet written in chunks of ``batch_size`` (each chunk appended durably before the next), and
write the rows set aside (``skip_invalid``) to the rejects file. Each output row is the input
row with ``response``, ``model`` and ``finish_reason`` added (``responses``/``finish_reasons``
too when ``n > 1``), so ``eval ifeval OUT`` scores IFEval rows directly and ``eval run`` reads
OUT as a system's ``responses`` file::

    cfg = GenerateConfig(data="ifeval.jsonl", out="responses.jsonl", lm="local",
                         model="smollm2-135m-instruct", max_new_tokens=512)
    result = run_generate(cfg)          # a killed run continues where it stopped

Prompts (:func:`read_prompts`): Alpaca rows, ShareGPT and OpenAI ``messages`` (the
conversation up to its last user turn), ``prompt``/``completion`` rows, IFEval rows (``key``,
``prompt``, ``instruction_id_list``, ``kwargs``) and FLAN task items (``task`` + ``answer``,
rendered zero-shot with the task's first template, as ``eval run`` renders them).

The generation itself (:func:`generation_lm`, :func:`complete_in_chunks`) is the code
``eval run`` uses for its systems.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from instructkit.data.formats import Reject, parse_row, save_rejects
from instructkit.data.prompt_rows import PromptRow, PromptRows, prompt_messages, read_prompt_rows
from instructkit.data.records import Conversation
from instructkit.data.templates import TemplateName
from instructkit.errors import ConfigError, DataFormatError
from instructkit.io import beside
from instructkit.jobs import Job, fingerprint
from instructkit.lm.base import DEFAULT_BATCH, LM, ChatRequest, Completion
from instructkit.lm.options import LMOptions, build_lm_from

__all__ = [
    "GenerateConfig",
    "GenerateResult",
    "check_generation_options",
    "complete_in_chunks",
    "generation_lm",
    "read_prompts",
    "run_generate",
]


class GenerateConfig(LMOptions):
    """Settings of ``instructkit generate`` (every key is in docs/generate.md); the LM keys are
    :class:`~instructkit.lm.options.LMOptions`'."""

    data: str = Field(description="Prompt file (Alpaca, ShareGPT, messages, prompt, IFEval "
                      "or FLAN task rows).")  # fmt: skip
    out: str = Field(description="Output JSONL: each input row plus response, model and "
                     "finish_reason.")  # fmt: skip
    adapter: str | None = Field(None, description="PEFT adapter folder on the local model.")
    template: TemplateName = Field(
        "tokenizer", description="Chat template of the local model (tokenizer: its own)."
    )
    max_new_tokens: int = Field(512, gt=0, description="Most tokens generated per response.")
    temperature: float = Field(0.0, ge=0.0, description="Sampling temperature (0: greedy).")
    n: int = Field(1, ge=1, description="Responses per prompt (n > 1 adds 'responses').")
    batch_size: int = Field(
        DEFAULT_BATCH, gt=0, description="Prompts per chunk (generated together, then saved)."
    )
    limit: int | None = Field(None, gt=0, description="Generate for the first LIMIT prompts only.")
    skip_invalid: bool = Field(
        False, description="Set bad rows aside in the rejects file instead of stopping."
    )
    rejects: str | None = Field(None, description="Rejects file (default OUT.rejects.jsonl).")


@dataclass
class GenerateResult:
    out: str
    model: str  # the LM's name ("" when every row was already written)
    n_prompts: int
    n_generated: int  # this run
    n_resumed: int  # written by an earlier run
    n_truncated: int  # responses of this run stopped at max_new_tokens
    rejects: list[Reject]
    rejects_path: str | None


def read_prompts(path: str | Path, *, skip_invalid: bool = False) -> PromptRows:
    """The prompts of ``path``, one per row (see the module doc), with each row kept whole.

    The one place ``generate`` reads data, through the data layer's source reader (any file
    kind the loader reads: JSON, JSONL, CSV/TSV, Parquet, Arrow, a ``save_to_disk`` folder)."""
    return read_prompt_rows(path, _generate_prompt, skip_invalid=skip_invalid)


def _generate_prompt(value: object, path: object, row_no: int) -> tuple[list[dict[str, str]], int]:
    converted = _as_prompt_row(value, path, row_no) if isinstance(value, dict) else value
    return prompt_messages(converted, path=path, row_no=row_no), 0


def _as_prompt_row(row: dict[str, Any], path: object, row_no: int) -> dict[str, Any]:
    """A row in the prompt-row layout (``prompt`` or ``messages``): Alpaca, ShareGPT and FLAN
    task items converted, other rows as they are."""
    if "messages" in row or "prompt" in row:
        return row
    if "conversations" in row:
        turns = row["conversations"]
        last = turns[-1] if isinstance(turns, list) and turns else None
        placed = row if not _ends_with_user(last) else {**row, "conversations": [
            *turns, {"from": "gpt", "value": "-"}]}  # fmt: skip
        return {"messages": _chat(placed, "sharegpt", path, row_no)}
    if "instruction" in row:
        placed = {**row, "output": "-"} if not row.get("output") else row
        return {"messages": _chat(placed, "alpaca", path, row_no)}
    if "task" in row and "answer" in row:
        return {
            "messages": [*_task_prompt(row, path, row_no), {"role": "assistant", "content": "-"}]
        }
    return row  # the data layer names what is missing


def _chat(row: dict[str, Any], fmt: str, path: object, row_no: int) -> list[dict[str, str]]:
    record = parse_row(row, fmt, path=path, row_no=row_no)
    if not isinstance(record, Conversation):
        raise DataFormatError(
            "a preference pair is not a prompt", path=path, row=row_no, field="chosen",
            fix="give prompt rows (drop chosen/rejected).",
        )  # fmt: skip
    return record.to_chat()


def _ends_with_user(turn: object) -> bool:
    return isinstance(turn, dict) and turn.get("from") in ("human", "user")


def _task_prompt(row: dict[str, Any], path: object, row_no: int) -> list[dict[str, str]]:
    """A FLAN task item as ``eval run`` asks it: zero-shot, the task's first template."""
    from instructkit.data.tasks import load_task_templates, render_task_example

    templates = load_task_templates()
    if row["task"] not in templates:
        raise DataFormatError(
            f"unknown task '{row['task']}'",
            path=path,
            row=row_no,
            field="task",
            fix=f"use one of the bundled tasks ({', '.join(sorted(templates))}).",
        )
    conv = render_task_example(row, templates, mode="zero", template_index=0)
    return conv.to_chat()[:-1]


def generation_lm(
    opts: LMOptions,
    *,
    adapter: str | None = None,
    template: str = "tokenizer",
    batch_size: int = DEFAULT_BATCH,
) -> LM:
    """The LM that ``opts`` names; a local model gets ``adapter``, ``template`` and
    ``batch_size`` (a served one refuses an adapter or a template: the server owns them)."""
    check_generation_options(opts, adapter=adapter, template=template)
    if opts.spec.partition(":")[0] == "local":
        return build_lm_from(opts, adapter=adapter, template=template, batch_size=batch_size)
    return build_lm_from(opts)


def check_generation_options(
    opts: LMOptions, *, adapter: str | None = None, template: str = "tokenizer"
) -> None:
    """ConfigError for options that do not apply to the backend ``opts`` names, before any
    model is loaded or any output written."""
    served = {"base_url": opts.base_url, "api_key_env": opts.api_key_env,
              "concurrency": opts.concurrency}  # fmt: skip
    local = {"adapter": adapter, "template": None if template == "tokenizer" else template}
    backend = opts.spec.partition(":")[0]
    wrong = served if backend == "local" else local
    given = [k for k, v in wrong.items() if v is not None]
    if given and backend != "local":
        raise ConfigError(
            f"adapter and template apply to local models, not to '{opts.spec}'.",
            fix="serve the adapter (instructkit serve --adapter) and name it with --model, "
            "or use --lm local.",
        )
    if given:
        raise ConfigError(
            f"{', '.join(given)} apply to openai:MODEL only, not to '{opts.spec}'.",
            fix="drop them, or use --lm openai --model MODEL.",
        )


def complete_in_chunks(
    lm: LM,
    prompts: Sequence[Sequence[dict[str, str]]],
    *,
    max_tokens: int,
    temperature: float = 0.0,
    n: int = 1,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = True,
) -> Iterator[tuple[int, list[Completion]]]:
    """(start, completions) for each chunk of ``batch_size`` prompts (chat messages), in
    order: a caller saves each chunk before the next is generated."""
    for start in range(0, len(prompts), batch_size):
        requests = [
            ChatRequest.from_messages(m, max_tokens=max_tokens, temperature=temperature, n=n)
            for m in prompts[start : start + batch_size]
        ]
        yield start, lm.complete(requests, progress=progress)


def run_generate(
    cfg: GenerateConfig, *, lm: LM | None = None, fresh: bool = False, progress: bool = True
) -> GenerateResult:
    """Generate (or resume generating) ``cfg.out``; ``lm`` replaces the LM the config names
    (a model already loaded, a ``ScriptedLM``)."""
    loaded = read_prompts(cfg.data, skip_invalid=cfg.skip_invalid)  # before any model
    prompts = loaded.rows[: cfg.limit]
    check_generation_options(cfg, adapter=cfg.adapter, template=cfg.template)
    job = Job(cfg.out, _fingerprint(cfg), fresh=fresh)
    n_done = len(job.records)
    if n_done > len(prompts):
        raise ConfigError(
            f"{cfg.out} holds {n_done} rows, more than the {len(prompts)} prompts of {cfg.data}.",
            fix="pass --fresh to start over, or write to another output path.",
        )
    todo, name, truncated = prompts[n_done:], "", 0
    if todo:
        model = lm or generation_lm(
            cfg, adapter=cfg.adapter, template=cfg.template, batch_size=cfg.batch_size
        )
        name = model.name
        chunks = complete_in_chunks(
            model, [p.messages for p in todo], max_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature, n=cfg.n, batch_size=cfg.batch_size, progress=progress,
        )  # fmt: skip
        for start, completions in chunks:
            rows = [_out_row(p, c, name, cfg.n) for p, c in zip(todo[start:], completions,
                                                              strict=False)]  # fmt: skip
            truncated += sum(r["finish_reason"] == "length" for r in rows)
            job.append(rows)  # durable before the next chunk
    rejects_path = _save_rejects(cfg, loaded.rejects)
    return GenerateResult(
        cfg.out, name, len(prompts), len(todo), n_done, truncated, loaded.rejects, rejects_path
    )


def _fingerprint(cfg: GenerateConfig) -> dict[str, Any]:
    """What must not change on resume: the model, the generation settings and the input."""
    exclude = ("out", "data", "rejects", "batch_size", "cache", "concurrency", "base_url",
               "api_key_env", "limit")  # fmt: skip
    return fingerprint(cfg, exclude=exclude, data=Path(cfg.data))


def _out_row(prompt: PromptRow, completion: Completion, model: str, n: int) -> dict[str, Any]:
    """The input row with the response, the model's name and why generation stopped."""
    reasons = completion.finish_reasons
    row = {
        **prompt.row,
        "response": completion.text.strip(),
        "model": model,
        "finish_reason": reasons[0] if reasons else None,
    }
    if n > 1:
        row["responses"] = [t.strip() for t in completion.texts]
        row["finish_reasons"] = list(reasons)
    return row


def _save_rejects(cfg: GenerateConfig, rejects: list[Reject]) -> str | None:
    if not rejects:
        return None
    path = cfg.rejects or str(beside(cfg.out, ".rejects.jsonl"))
    save_rejects(rejects, path)
    return path
