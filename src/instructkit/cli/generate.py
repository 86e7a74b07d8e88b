"""``instructkit generate DATA --lm ... -o OUT.jsonl``: responses for every prompt of DATA.

A thin command: flags and an optional YAML file build a
:class:`~instructkit.evaluate.generate.GenerateConfig` (flag ``--max-new-tokens`` = key
``max_new_tokens``; the help texts are the config's field descriptions),
:func:`~instructkit.evaluate.generate.run_generate` does the work. Rerunning the same command
resumes an interrupted run; ``--fresh`` starts over.
"""

from __future__ import annotations

from typing import Any

import click

from instructkit.cli.options import config_options, field_help, lm_options, template_option
from instructkit.evaluate.generate import GenerateConfig

__all__ = ["generate"]


def _help(name: str) -> str:
    return field_help(GenerateConfig, name)


@click.command("generate")
@click.argument("data", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", default=None, type=click.Path(dir_okay=False), help=_help("out"))
@lm_options()
@click.option("--adapter", default=None, type=click.Path(exists=True), help=_help("adapter"))
@template_option(default=None)
@click.option("--max-new-tokens", type=int, default=None, help=_help("max_new_tokens"))
@click.option("--temperature", type=float, default=None, help=_help("temperature"))
@click.option("-n", "--n", "n", type=int, default=None, help=_help("n"))
@click.option("--batch-size", type=int, default=None, help=_help("batch_size"))
@click.option("--limit", type=int, default=None, help=_help("limit"))
@click.option("--skip-invalid", is_flag=True, default=None, help=_help("skip_invalid"))
@click.option("--rejects", type=click.Path(dir_okay=False), default=None, help=_help("rejects"))
@config_options("docs/generate.md", example="max_new_tokens=256", flags_win=True)
@click.option("--fresh", is_flag=True, help="Delete OUT and its state and start over.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def generate(
    data: str | None,
    out: str | None,
    lm_flags: dict[str, Any],
    config_path: str | None,
    overrides: tuple[str, ...],
    fresh: bool,
    no_progress: bool,
    **flags: Any,
) -> None:
    """Generate a response for every prompt of DATA (Alpaca, ShareGPT, messages, prompt,
    IFEval or FLAN task rows): OUT keeps each row's fields and adds response, model and
    finish_reason, so `eval ifeval OUT` and `eval run` (a system's responses) read it as is.
    The LM defaults to local (the embedded model).

    Example: instructkit generate ifeval.jsonl --lm local --model smollm2-135m-instruct
    -o responses.jsonl"""
    from instructkit.config import load_config
    from instructkit.evaluate.generate import run_generate

    flags["skip_invalid"] = flags["skip_invalid"] or None
    cfg = load_config(
        GenerateConfig, config_path, overrides, data=data, out=out, **lm_flags, **flags
    )
    r = run_generate(cfg, fresh=fresh, progress=not no_progress)
    resumed = f" ({r.n_resumed} written by an earlier run)" if r.n_resumed else ""
    click.echo(f"{r.n_generated} responses generated{resumed}: {r.n_prompts} rows in {r.out}")
    if r.n_truncated:
        click.echo(
            f"{r.n_truncated} responses stopped at max_new_tokens={cfg.max_new_tokens}; "
            "raise it if they were cut short"
        )
    if r.rejects:
        click.echo(f"rejected: {len(r.rejects)} rows (reasons in {r.rejects_path})")
