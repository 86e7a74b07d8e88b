"""``instructkit eval ...``: run evaluations, score IFEval files, compare, human sheets, reports.

Every command parses its options, calls one API function and prints; every results file it
writes is :class:`~instructkit.evaluate.results.EvalResults`, which ``eval report`` reads.
"""

from __future__ import annotations

import json

import click

from instructkit.cli.options import config_options, lm_options


@click.group("eval")
def eval_group() -> None:
    """Evaluate models and instructions: metrics, IFEval, judges, significance, reports."""


@eval_group.command("run")
@config_options("docs/eval.md", required=True, example="system.max_tokens=64")
@lm_options(prefix="judge", lm_help="Judge LM (judge.lm): grade one system 1-10 or compare two.")
@click.option("--fresh", is_flag=True, help="Start over instead of resuming a killed run.")
def eval_run(config_path, overrides, judge_flags, fresh) -> None:
    """Evaluate one system, or compare two on the same items (results JSON + per-item JSONL).

    Resumable: a killed run continues where it stopped when started again. The --judge*
    flags set the config's judge: section (judge.lm, judge.model, judge.base_url, ...)."""
    from instructkit.config import load_config
    from instructkit.evaluate.checks import SCORES
    from instructkit.evaluate.results import format_metrics, format_results
    from instructkit.evaluate.runner import EvalConfig, per_item_path, run_eval

    cfg = load_config(EvalConfig, config_path, overrides, judge=judge_flags or None)
    results = run_eval(cfg, fresh=fresh)
    click.echo(format_results(results))
    if results.overall is not None and set(SCORES) <= results.overall.metrics.keys():
        click.echo(format_metrics(results, SCORES))  # every group: strict, lenient, format
    click.echo(f"wrote {cfg.out} and {per_item_path(cfg.out)}")


@eval_group.command("ifeval")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", "dst", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Set bad rows aside in OUT_STEM.rejects.jsonl (with reasons) instead of failing.",
)
@click.option("--system", default=None, help="System name in the results JSON (default: SRC stem).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def eval_ifeval(src, dst, skip_invalid, system, as_json) -> None:
    """Score IFEval rows (key, prompt, instruction_id_list, kwargs, response): one result row
    per prompt in OUT, and the results JSON OUT_STEM.results.json for `eval report`."""
    from instructkit.evaluate.ifeval import (
        evaluate_ifeval_file,
        ifeval_rejects_path,
        ifeval_results_path,
    )

    report = evaluate_ifeval_file(src, dst, skip_invalid=skip_invalid, system=system)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format())
    if not as_json:
        click.echo(f"wrote {dst} and {ifeval_results_path(dst)}")
        if skip_invalid:
            click.echo(f"rejected: {len(report.rejects)} rows ({ifeval_rejects_path(dst)})")


@eval_group.command("compare")
@click.argument("a", type=click.Path(exists=True, dir_okay=False))
@click.argument("b", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", default="id", show_default=True, help="Item id field (dotted path).")
@click.option(
    "--field",
    "field_name",
    default="score",
    show_default=True,
    help="Score field, a dotted path: scores.exact_match (eval run rows), "
    "strict.follow_all_instructions (eval ifeval rows).",
)
@click.option("--a-system", default=None, help="System of A's rows, if A holds several.")
@click.option("--b-system", default=None, help="System of B's rows, if B holds several.")
@click.option("--skip-invalid", is_flag=True, help="Drop bad/unmatched items into --rejects.")
@click.option("--rejects", type=click.Path(dir_okay=False), default=None)
@click.option("-o", "--out", "dst", type=click.Path(dir_okay=False), default=None,
              help="Write the comparison as results JSON (for `eval report`).")  # fmt: skip
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def eval_compare(
    a, b, key, field_name, a_system, b_system, skip_invalid, rejects, dst, seed, as_json
) -> None:
    """Paired statistics (B - A) over per-item scores: bootstrap CI, permutation, McNemar."""
    from instructkit.data.formats import save_rejects
    from instructkit.evaluate.compare import compare_files

    res = compare_files(
        a,
        b,
        key=key,
        field_name=field_name,
        skip_invalid=skip_invalid,
        seed=seed,
        system_a=a_system,
        system_b=b_system,
        out=dst,
    )
    click.echo(json.dumps(res.to_dict(), indent=2) if as_json else res.format(*res.names))
    if res.rejects:
        path = rejects or "compare.rejects.jsonl"
        save_rejects(res.rejects, path)
        click.echo(f"rejected: {len(res.rejects)} rows (reasons in {path})")
    if dst and not as_json:
        click.echo(f"wrote {dst}")


@eval_group.group("human")
def eval_human() -> None:
    """Blinded human-evaluation sheets: export for raters, import their filled copies."""


@eval_human.command("export")
@click.argument("per_item", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "-o",
    "--out",
    "dst",
    required=True,
    type=click.Path(dir_okay=False),
    help="Sheet CSV (a JSONL mirror and the un-blinding key are written beside it).",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the blinded order.")
def eval_human_export(per_item, dst, seed) -> None:
    """Export a sheet from `eval run`'s per-item rows (prompt + each system's response)."""
    from instructkit.evaluate.human import export_run_sheet

    key_path, n_items, n_systems = export_run_sheet(per_item, dst, seed=seed)
    click.echo(
        f"sheet: {dst} ({n_items} items, {n_systems} responses each); "
        f"keep the key {key_path} away from raters"
    )


@eval_human.command("import")
@click.argument("sheets", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", "dst", type=click.Path(dir_okay=False), default=None,
              help="Write the ratings as results JSON (for `eval report`).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
def eval_human_import(sheets, key_path, dst, as_json) -> None:
    """Import filled sheets (one per rater): means, paired comparison, Krippendorff's alpha."""
    from instructkit.evaluate.human import import_sheets

    res = import_sheets(list(sheets), key_path, out=dst)
    click.echo(json.dumps(res.to_dict(), indent=2) if as_json else res.format())


@eval_group.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", "dst", required=True, type=click.Path(dir_okay=False))
@click.option("--examples", default=5, show_default=True, type=click.IntRange(min=0),
              help="Example predictions per task (two systems; 0: none).")  # fmt: skip
@click.option("--train-log", type=click.Path(exists=True, dir_okay=False),
              help="Training metrics.jsonl to plot (default: meta.train_log).")  # fmt: skip
def eval_report(results, dst, examples, train_log) -> None:
    """Write a self-contained HTML report (plots embedded) from results JSON files."""
    from instructkit.report import write_report

    path = write_report(list(results), dst, examples=examples, train_log=train_log)
    click.echo(f"wrote {path}")


@eval_group.command("adapt")
@config_options("docs/meta.md", required=True, example="ks=[0,1,2]")
def eval_adapt(config_path, overrides) -> None:
    """Adaptation curves on unseen tasks: fine-tune each initialization k = 0, 1, 2, 4, 8 steps
    on k-shot support sets and score the query sets (accuracy and loss vs k, 95% CIs)."""
    from instructkit.config import load_config
    from instructkit.rl.adapt import AdaptConfig, format_adapt_summary, run_adapt_eval

    cfg = load_config(AdaptConfig, config_path, overrides)
    click.echo(format_adapt_summary(run_adapt_eval(cfg)))
    click.echo(f"wrote {cfg.out}; draw the curves with: instructkit eval report {cfg.out}")
