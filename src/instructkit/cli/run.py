"""``instructkit run RECIPE.yaml``: run a recipe's stages, skipping the cached ones.

A thin command: the recipe file, ``--out`` and ``--set`` overrides build a
:class:`~instructkit.recipe.RecipeConfig` (every problem of every stage reported at once), then
:func:`~instructkit.recipe.plan_recipe` (``--dry-run``) or :func:`~instructkit.recipe.run_recipe`.
"""

from __future__ import annotations

import json

import click

__all__ = ["run_cmd"]


@click.command("run")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe key, e.g. --set stages.train.config.train.lr=1e-3 (repeatable).",
)
@click.option("--out", default=None, metavar="DIR", help="Run directory (the recipe's out).")
@click.option("--from", "from_stage", default=None, metavar="STAGE",
              help="Rerun STAGE and every stage downstream of it.")  # fmt: skip
@click.option("--only", default=None, metavar="STAGE",
              help="Run STAGE alone (its inputs must be cached).")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Print the plan (what runs and why); run nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: the plan as JSON.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def run_cmd(recipe, overrides, out, from_stage, only, dry_run, as_json, no_progress) -> None:
    """Run the stages of RECIPE (a YAML file; docs/recipes.md): each stage's output is cached
    in the run directory and skipped while its config, inputs and the code are unchanged; a
    killed run resumes at the stage it was in."""
    from instructkit.recipe import load_recipe, plan_recipe, run_recipe

    if as_json and not dry_run:
        raise click.UsageError("--json goes with --dry-run.")
    cfg = load_recipe(recipe, overrides, out=out)
    if dry_run:
        plan = plan_recipe(cfg, from_stage=from_stage, only=only)
        if as_json:
            click.echo(json.dumps([s.to_dict() for s in plan], indent=1))
            return
        for s in plan:
            click.echo(f"{s.stage:<16} {s.action:<5} {s.reason}")
        return
    result = run_recipe(cfg, from_stage=from_stage, only=only, progress=not no_progress)
    if result.report is not None:
        click.echo(f"report: {result.report}")
