"""``instructkit serve MODEL``: an OpenAI-compatible HTTP server over a local model and adapters."""

from __future__ import annotations

from pathlib import Path

import click

from instructkit.cli.options import template_option
from instructkit.lm.base import DEFAULT_BATCH

__all__ = ["serve"]


def _adapter_spec(value: str) -> tuple[str | None, str]:
    """``NAME=DIR`` -> (NAME, DIR); a bare ``DIR`` (an existing path) -> (None, DIR)."""
    name, path = None, value
    if "=" in value and not Path(value).exists():
        name, path = value.split("=", 1)
        if not name or "/" in name or not path:
            raise click.BadParameter(f"expected NAME=DIR or DIR, got {value!r}.")
    if not Path(path).is_dir():
        raise click.BadParameter(f"directory '{path}' does not exist.")
    return name, path


def _adapter_specs(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> list[tuple[str | None, str]]:
    return [_adapter_spec(v) for v in values]


def _served_name(model: str) -> str:
    """The id clients send for MODEL: its name, or a local directory's folder name (no paths)."""
    return Path(model).resolve().name if Path(model).exists() else model


@click.command("serve")
@click.argument("model")
@click.option(
    "--adapter",
    "adapters",
    multiple=True,
    metavar="NAME=DIR",
    callback=_adapter_specs,
    help="A PEFT adapter served beside MODEL under NAME (repeatable; requests pick it by "
    "'model': NAME). A bare DIR serves MODEL+adapter alone, under --name.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on; anything but loopback (e.g. 0.0.0.0) prints a warning.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port (0 picks a free one).",
)
@template_option()
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
    help="Model id clients send for MODEL (default: MODEL, or a local MODEL's folder name; "
    "with a bare --adapter DIR: MODEL+FOLDER).",
)
@click.option(
    "--api-key",
    envvar="INSTRUCTKIT_API_KEY",
    default=None,
    help="Require 'Authorization: Bearer KEY' on /v1 (or set $INSTRUCTKIT_API_KEY).",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=16 * 1024 * 1024,
    show_default=True,
    help="Largest request body accepted; larger ones get 413.",
)
def serve(
    model, adapters, host, port, template, max_batch, max_wait_ms, name, api_key, max_body_bytes
) -> None:
    """Serve MODEL (and adapters) at /v1/chat/completions, /v1/completions and /v1/models
    (OpenAI schema, streaming with "stream": true) until Ctrl+C.

    Requests for the same model with the same sampling parameters are batched together: a
    batch takes what is queued and waits up to --max-wait-ms for as many clients as recent
    batches held. A request whose client disconnects is dropped, or its generation stopped;
    GET /health counts them. Point any OpenAI client at http://HOST:PORT/v1.
    """
    from instructkit.lm.serve import check_adapter_dir, run_server

    specs = adapters
    bare = [path for n, path in specs if n is None]
    if bare and len(specs) > 1:
        raise click.UsageError(
            "a bare --adapter DIR serves one adapter in place of MODEL; to serve several "
            "beside MODEL, name each: --adapter NAME=DIR."
        )
    for _, path in specs:
        check_adapter_dir(path)  # before the slow imports and the model load
    base = name or _served_name(model)
    if base in {n for n, _ in specs}:
        raise click.UsageError(f"the adapter name '{base}' is MODEL's name; choose another.")
    from instructkit.lm.local import LocalLM

    click.echo(f"loading {model}" + "".join(f" + adapter {p}" for _, p in specs))
    if bare:
        lm = LocalLM.load(model, adapter=bare[0], template=template, batch_size=max_batch)
        lms = {name or f"{_served_name(model)}+{Path(bare[0]).resolve().name}": lm}
    else:
        named = {n: p for n, p in specs if n is not None}
        base_lm, views = LocalLM.load_with_adapters(
            model, named, template=template, batch_size=max_batch
        )
        lms = {base: base_lm, **views}
    run_server(
        lms,
        host,
        port,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        api_key=api_key,
        max_body_bytes=max_body_bytes,
        announce=click.echo,
    )
