"""The ``instructkit`` command line: thin commands that parse flags and call the Python API.

Errors that instructkit raises on purpose print as one line (``error: ...``) and exit 1;
``instructkit --debug ...`` shows the traceback instead.
"""

from __future__ import annotations

import json
from typing import Any

import click

from instructkit import __version__
from instructkit.cli.options import FORMAT_CHOICE, config_options, template_option
from instructkit.errors import InstructkitError


class _Group(click.Group):
    """Turns InstructkitError into a one-line message and exit code 1 (unless --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InstructkitError as e:
            if ctx.find_root().params.get("debug"):
                raise
            click.echo(f"error: {e}".replace("\n", " "), err=True)
            ctx.exit(1)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="instructkit")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """instructkit: instruction tuning of language models, from data to weights to prompts."""


@cli.group(cls=_Group)
def data() -> None:
    """Read, check, convert and render instruction data."""


def _in_fmt(f):
    return click.option(
        "--from",
        "fmt",
        type=FORMAT_CHOICE,
        default=None,
        help="Input format (auto-detected when left out).",
    )(f)


def _source(f):
    """--split/--subset/--column: how to read SRC (a file, a save_to_disk folder, a hub name)."""
    f = click.option(
        "--column",
        "columns",
        multiple=True,
        metavar="FIELD=COLUMN",
        help="Read the format's FIELD from the source's COLUMN (repeatable), e.g. "
        "instruction=question.",
    )(f)
    f = click.option("--subset", default=None, help="Config name of a Hugging Face dataset.")(f)
    return click.option(
        "--split", default=None, help="Split of a Hugging Face dataset or DatasetDict folder."
    )(f)


def _spec(src: str, split: str | None, subset: str | None, columns: tuple[str, ...]) -> Any:
    """SRC as given when no option is set (errors then name it as typed), else a spec."""
    if split is None and subset is None and not columns:
        return src
    from instructkit.data.sources import as_spec

    pairs = [c.split("=", 1) for c in columns]
    if any(len(p) != 2 or not all(p) for p in pairs):
        raise click.BadParameter(
            "use FIELD=COLUMN, e.g. instruction=question.", param_hint="--column"
        )
    spec = {"path": src, "split": split, "subset": subset, "columns": dict(pairs) or None}
    return as_spec(spec)


def _skip(f):
    f = click.option(
        "--rejects",
        type=click.Path(dir_okay=False),
        default=None,
        help="Where rejected rows go (default: IN.rejects.jsonl).",
    )(f)
    return click.option(
        "--skip-invalid", is_flag=True, help="Write bad rows to a rejects file instead of stopping."
    )(f)


@data.command("convert")
@click.argument("src")
@click.option("-o", "--out", "dst", required=True, type=click.Path())
@click.option(
    "--to",
    "to",
    required=True,
    type=FORMAT_CHOICE,
)
@_in_fmt
@_source
@_skip
def data_convert(src, dst, to, fmt, split, subset, columns, skip_invalid, rejects) -> None:
    """Convert SRC (a JSON/JSONL/CSV/TSV/Parquet/Arrow file, a save_to_disk folder or a Hugging
    Face dataset name) to another format, row by row. OUT's extension picks the file: .jsonl,
    .json (an array), .csv/.tsv (lists as JSON text in a cell), .parquet, or none (a
    save_to_disk folder)."""
    from instructkit.data.workflows import convert

    spec = _spec(src, split, subset, columns)
    r = convert(spec, dst, to, fmt=fmt, skip_invalid=skip_invalid, rejects=rejects)
    click.echo(
        f"{r.source_format} -> {r.target_format}: {r.n_written} of {r.n_rows} rows written to {dst}"
    )
    for note in r.notes:
        click.echo(f"note: {note}")
    if r.n_rejected:
        click.echo(f"rejected: {r.n_rejected} rows (reasons in {r.rejects_path})")


@data.command("validate")
@click.argument("src")
@_in_fmt
@_source
@_skip
def data_validate(src, fmt, split, subset, columns, skip_invalid, rejects) -> None:
    """Check every row of SRC (any source `data convert` reads), streaming; exit 1 on the first
    invalid row unless --skip-invalid."""
    from instructkit.data.workflows import validate

    spec = _spec(src, split, subset, columns)
    r = validate(spec, fmt=fmt, skip_invalid=skip_invalid, rejects=rejects)
    kinds = ", ".join(f"{n} {k}s" for k, n in r.kinds.items()) or "no records"
    click.echo(f"{src}: format {r.format}; {r.n_valid} of {r.n_rows} rows valid ({kinds})")
    if r.rejects:
        click.echo(f"rejected: {r.n_rejected} rows (reasons in {r.rejects_path})")
        for rej in r.rejects[:5]:
            click.echo(f"  row {rej.row}: {rej.field or '-'}: {rej.reason}")


@data.command("stats")
@click.argument("src")
@click.option("--model", default=None, help="Count tokens with this model's tokenizer.")
@template_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_in_fmt
@_source
def data_stats(src, model, template, as_json, fmt, split, subset, columns) -> None:
    """Counts, turns, and token-length distribution of SRC."""
    from instructkit.data.workflows import stats
    from instructkit.models import load_tokenizer

    spec = _spec(src, split, subset, columns)
    tok = load_tokenizer(model) if model else None
    r = stats(spec, tokenizer=tok, template=template, model=model, fmt=fmt)
    if as_json:
        click.echo(json.dumps(r.to_dict(), indent=2))
        return
    default = (
        f" ({r.with_default_system} get the template's default: {r.default_system!r})"
        if r.with_default_system
        else ""
    )
    click.echo(
        f"{src}: format {r.format}, {r.n_records} records "
        f"({r.n_conversations} conversations, {r.n_preference} preference pairs), "
        f"{r.with_system} with a system prompt{default}"
    )
    click.echo("assistant turns: " + _fmt_dist(r.turns))
    for part, dist in r.tokens.items():
        click.echo(f"tokens ({part}, {model}): " + _fmt_dist(dist))


def _fmt_dist(d: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in d.items())


@data.command("render")
@click.argument("src")
@click.option("-o", "--out", "dst", required=True, type=click.Path(dir_okay=False))
@template_option()
@click.option("--model", default="smollm2-135m-instruct", show_default=True)
@click.option("--max-seq-len", type=int, default=None)
@click.option(
    "--train-on",
    type=click.Choice(["all", "last"]),
    default="all",
    show_default=True,
    help="Which assistant turns carry loss (a message's train flag overrides).",
)
@_in_fmt
@_source
@_skip
def data_render(
    src,
    dst,
    template,
    model,
    max_seq_len,
    train_on,
    fmt,
    split,
    subset,
    columns,
    skip_invalid,
    rejects,
) -> None:
    """Write rendered text, input_ids, labels and trained_text for each example of SRC."""
    from instructkit.data.workflows import render
    from instructkit.models import load_tokenizer

    r = render(
        _spec(src, split, subset, columns),
        dst,
        load_tokenizer(model),
        template=template,
        max_seq_len=max_seq_len,
        train_on=train_on,
        fmt=fmt,
        skip_invalid=skip_invalid,
        rejects=rejects,
    )
    click.echo(
        f"rendered {r.n_written} of {r.n_rows} examples to {dst} "
        f"({r.n_truncated} truncated, {r.n_dropped_turns} old turns dropped)"
    )
    if r.n_rejected:
        click.echo(f"rejected: {r.n_rejected} rows (reasons in {r.rejects_path})")


@cli.command("demo")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Output directory (results.json, report.html, summary.json, sft/, base.json, configs).",
)
@config_options("docs/demo.md", example="sft.train.epochs=2")
def demo_cmd(out, config_path, overrides) -> None:
    """Evaluate the embedded model on the bundled task suite, LoRA-tune it on the seen clusters
    (train sft) and evaluate again (eval run): strict, lenient and format scores, seen vs unseen
    clusters, offline. recipes/demo.yaml holds the defaults, to copy and edit."""
    from instructkit.config import load_config
    from instructkit.demo import DemoConfig, run_demo

    cfg = load_config(DemoConfig, config_path, overrides, out=out)
    run_demo(cfg)


def _register() -> None:
    """Commands that live in their own modules."""
    from instructkit.cli.eval import eval_group
    from instructkit.cli.evol import evol
    from instructkit.cli.generate import generate
    from instructkit.cli.optimize import optimize_group
    from instructkit.cli.pairs import data_pairs
    from instructkit.cli.quality import data_dedup, data_filter
    from instructkit.cli.run import run_cmd
    from instructkit.cli.serve import serve
    from instructkit.cli.synth import synth
    from instructkit.cli.train import train

    data.add_command(data_filter)
    data.add_command(data_dedup)
    data.add_command(data_pairs)
    cli.add_command(serve)
    cli.add_command(eval_group)
    cli.add_command(generate)
    synth.add_command(evol)
    cli.add_command(synth)
    cli.add_command(optimize_group)
    cli.add_command(train)
    cli.add_command(run_cmd)


_register()


def main() -> None:
    cli(prog_name="instructkit")


if __name__ == "__main__":
    main()
