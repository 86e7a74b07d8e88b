"""Recipes: one YAML file runs the whole lifecycle as cached stages (``instructkit run``).

A recipe names stages in order, each one of the product's workflows (data filter, synthesis,
SFT, DPO, evaluation, report ...) with that workflow's own config, and refers to earlier
stages' outputs as ``${stages.NAME.OUTPUT}``. Unchanged stages are skipped; a changed one
reruns with everything downstream; a killed run resumes at the stage it was in::

    from instructkit.recipe import load_recipe, plan_recipe, run_recipe

    cfg = load_recipe("recipes/tiny.yaml", ["stages.train.config.train.lr=1e-3"])
    for step in plan_recipe(cfg):           # what would run, and why
        print(step.stage, step.action, step.reason)
    result = run_recipe(cfg)                # result.ran, result.skipped, result.report

:mod:`~instructkit.recipe.spec` is the file format and its checks,
:mod:`~instructkit.recipe.kinds` the stage kinds, :mod:`~instructkit.recipe.engine` the plan,
the cache and the run directory; docs/recipes.md documents every key.
"""

from instructkit.recipe.engine import PlanStep, RecipeResult, code_version, plan_recipe, run_recipe
from instructkit.recipe.kinds import KINDS
from instructkit.recipe.spec import RecipeConfig, StageConfig, check_stages, load_recipe

__all__ = [
    "KINDS",
    "PlanStep",
    "RecipeConfig",
    "RecipeResult",
    "StageConfig",
    "check_stages",
    "code_version",
    "load_recipe",
    "plan_recipe",
    "run_recipe",
]
