"""``instructkit serve MODEL``: an OpenAI-compatible HTTP server over a local model or adapter."""

from __future__ import annotations

import click

from instructkit.lm.base import DEFAULT_BATCH

__all__ = ["serve"]


@click.command("serve")
@click.argument("model")
@click.option(
    "--adapter",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="A PEFT adapter directory to serve on top of MODEL (e.g. OUT/adapter from train sft).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port (0 picks a free one).",
)
@click.option(
    "--template",
    default="tokenizer",
    show_default=True,
    help="Chat template: alpaca, vicuna, chatml, llama3, or tokenizer (the model's own).",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH,
    show_default=True,
    help="Most requests generated together in one batch (the local backend's default batch).",
)
@click.option(
    "--max-wait-ms",
    type=click.FloatRange(min=0),
    default=50.0,
    show_default=True,
    help="Longest a batch waits for the clients of recent batches to send their next request.",
)
@click.option(
    "--name",
    default=None,
    help="Model id clients send (default: MODEL, or MODEL+ADAPTER with --adapter).",
)
def serve(model, adapter, host, port, template, max_batch, max_wait_ms, name) -> None:
    """Serve MODEL at /v1/chat/completions and /v1/models (OpenAI schema) until Ctrl+C.

    Requests with the same sampling parameters are batched together: a batch takes what is
    queued and waits up to --max-wait-ms for as many clients as recent batches held. A request
    whose client disconnects (or times out) is dropped, or its generation stopped; GET /health
    counts them. Point any OpenAI client at http://HOST:PORT/v1.
    """
    from instructkit.lm.serve import check_adapter_dir, run_server

    if adapter is not None:
        check_adapter_dir(adapter)  # before the slow imports and the model load
    from instructkit.lm.local import LocalLM

    click.echo(f"loading {model}" + (f" with adapter {adapter}" if adapter else ""))
    lm = LocalLM.load(model, adapter=adapter, template=template, batch_size=max_batch)
    served = name or (f"{model}+{adapter}" if adapter else model)
    run_server(
        lm, host, port, served, max_batch=max_batch, max_wait_ms=max_wait_ms, announce=click.echo
    )
