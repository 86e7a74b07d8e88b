"""``instructkit eval ...``: run evaluations, score IFEval files, compare, human sheets, reports."""

from __future__ import annotations

import json

import click


@click.group("eval")
def eval_group() -> None:
    """Evaluate models and instructions: metrics, IFEval, judges, significance, reports."""


@eval_group.command("run")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="YAML config (EvalConfig).",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key.")
def eval_run(config_path, overrides) -> None:
    """Evaluate one system, or compare two on the same items (results JSON + per-item JSONL)."""
    from instructkit.config import load_config
    from instructkit.evaluate.runner import EvalConfig, run_eval

    cfg = load_config(EvalConfig, config_path, overrides)
    res = run_eval(cfg)
    systems = res["systems"]
    click.echo(
        f"{'task':<20}{'n':>5}"
        + "".join(f"{s:>12}" for s in systems)
        + ("   diff [95% CI]  p" if len(systems) == 2 else "")
    )
    for name, t in {**res["tasks"], "[overall]": res["overall"]}.items():
        line = f"{name:<20}{t['n']:>5}" + "".join(f"{t['scores'][s]:>12.4f}" for s in systems)
        c = t.get("comparison")
        if c:
            ci = f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"
            line += f"   {c['diff']:+.3f} {ci}  {c['p_permutation']:.4f}"
        click.echo(line)
    click.echo(f"wrote {cfg.out}")


@eval_group.command("ifeval")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", "dst", required=True, type=click.Path(dir_okay=False))
@click.option("--skip-invalid", is_flag=True, help="Write bad rows to OUT.rejects.jsonl.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def eval_ifeval(src, dst, skip_invalid, as_json) -> None:
    """Score IFEval rows (key, prompt, instruction_id_list, kwargs, response)."""
    from instructkit.evaluate.ifeval import evaluate_ifeval_file

    report = evaluate_ifeval_file(src, dst, skip_invalid=skip_invalid)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format())


@eval_group.command("compare")
@click.argument("a", type=click.Path(exists=True, dir_okay=False))
@click.argument("b", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", default="id", show_default=True, help="Item id field.")
@click.option("--field", "field_name", default="score", show_default=True, help="Score field.")
@click.option("--skip-invalid", is_flag=True, help="Drop bad/unmatched items into --rejects.")
@click.option("--rejects", type=click.Path(dir_okay=False), default=None)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def eval_compare(a, b, key, field_name, skip_invalid, rejects, seed, as_json) -> None:
    """Paired statistics (B - A) over per-item scores: bootstrap CI, permutation, McNemar."""
    from instructkit.data.formats import save_rejects
    from instructkit.evaluate.compare import compare_files

    res = compare_files(a, b, key=key, field_name=field_name, skip_invalid=skip_invalid, seed=seed)
    click.echo(json.dumps(res.to_dict(), indent=2) if as_json else res.format("A", "B"))
    if res.rejects:
        path = rejects or "compare.rejects.jsonl"
        save_rejects(res.rejects, path)
        click.echo(f"rejected: {len(res.rejects)} rows (reasons in {path})")


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
    """Export a sheet from an `eval run` per_item.jsonl (prompt + each system's response)."""
    from pathlib import Path

    from instructkit.errors import DataFormatError
    from instructkit.evaluate.human import export_sheet
    from instructkit.io import read_rows

    prompts: dict[str, str] = {}
    answers: dict[str, dict[str, str]] = {}
    for n, r in read_rows(per_item):
        if not isinstance(r, dict) or not {"task", "id", "system", "response"} <= set(r):
            raise DataFormatError(
                "expected task, id, system, prompt and response",
                path=per_item,
                row=n,
                fix="pass the per_item.jsonl written by `eval run`.",
            )
        key = f"{r['task']}/{r['id']}"
        prompts[key] = r.get("prompt", "")
        answers.setdefault(r["system"], {})[key] = r["response"]
    items = [{"id": k, "prompt": p} for k, p in prompts.items()]
    systems = {s: [a.get(it["id"], "") for it in items] for s, a in answers.items()}
    key_path = export_sheet(items, systems, dst, Path(dst).with_suffix(".jsonl"), seed=seed)
    click.echo(
        f"sheet: {dst} ({len(items)} items, {len(systems)} responses each); "
        f"keep the key {key_path} away from raters"
    )


@eval_human.command("import")
@click.argument("sheets", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def eval_human_import(sheets, key_path, as_json) -> None:
    """Import filled sheets (one per rater): means, paired comparison, Krippendorff's alpha."""
    from instructkit.evaluate.human import import_sheets

    res = import_sheets(list(sheets), key_path)
    click.echo(json.dumps(res.to_dict(), indent=2) if as_json else res.format())


@eval_group.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", "dst", required=True, type=click.Path(dir_okay=False))
def eval_report(results, dst) -> None:
    """Write a self-contained HTML report (plots embedded) from results JSON files or a demo
    metrics.json."""
    from instructkit.report import write_report

    path = write_report(list(results), dst)
    click.echo(f"wrote {path}")
