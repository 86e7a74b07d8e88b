"""``instructkit optimize ...``: tune the instructions of a task on data (docs/optimize.md).

``optimize prompt`` parses its flags into a
:class:`~instructkit.optimize.prompt.PromptOptConfig`, calls
:func:`~instructkit.optimize.prompt.run_prompt_optimization`, renders the page with
:func:`~instructkit.report.prompt.write_prompt_report` and prints the outcome.
``optimize program`` does the same with
:class:`~instructkit.optimize.program.ProgramOptConfig`,
:func:`~instructkit.optimize.program.run_program_optimization` and
:func:`~instructkit.report.program.write_program_report` for a DSPy program in a file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from instructkit.cli.options import apply_options, config_options, lm_options

F = TypeVar("F", bound=Callable[..., Any])


def _run_options(out_help: str) -> Callable[[F], F]:
    """The options both commands share: the LM options, the reply length, the config file and
    overrides, the output folder, --fresh and --no-progress."""
    return apply_options(
        lm_options(),
        click.option(
            "--max-tokens", type=int, default=None, help="Reply length limit (default 32)."
        ),
        config_options("docs/optimize.md", example="budget=300", flags_win=True),
        click.option("-o", "--out", default=None, help=out_help),
        click.option("--fresh", is_flag=True, help="Start over instead of resuming a killed run."),
        click.option("--no-progress", is_flag=True, help="Hide the progress bar."),
    )


@click.group("optimize")
def optimize_group() -> None:
    """Optimize instructions (prompts) against your data and a metric."""


@optimize_group.command("prompt")
@click.argument("data", type=click.Path(exists=True, dir_okay=False))
@click.option("--input", "inputs", multiple=True, help="Input field of the rows (repeatable).")
@click.option("--target", help="Field holding the reference answer.")
@click.option("--labels", default=None, help="The answer set, comma-separated: a,b,c.")
@click.option("--task", "task", default=None, help='What the task is: "classify the sentiment".')
@click.option(
    "--instruction",
    default=None,
    help="The starting instruction (default: built from --task and --labels).",
)
@click.option(
    "--metric",
    default=None,
    help="exact, lenient (the reply names the right label; "
    "default with --labels), f1, ifeval (rows carry IFEval's instruction_id_list and kwargs; "
    "scores the share of checks passed), or another instructkit metric name.",
)
@click.option(
    "--method",
    default=None,
    help="templates (race template-built instructions, plus --proposer-lm proposals when "
    "given; default), evolutionary (genetic search seeded with them; the proposer mutates "
    "when given, else text operators), opro (needs --proposer-lm), initial (score the "
    "starting instruction only), gradient (local models: a gradient-guided token search "
    "and a soft prompt), or DSPy's own optimizers copro, mipro (MIPROv2, 0-shot) and gepa "
    "(need --proposer-lm; run under the same budget, resumable).",
)
@click.option(
    "--budget",
    type=int,
    default=None,
    help="Most task calls the search may spend "
    "on the val set (the final test runs are extra). Default 200.",
)
@click.option("--seed", type=int, default=None, help="Seed of the split and the candidates.")
@click.option(
    "--val",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Val rows (default: a share of DATA).",
)
@click.option(
    "--test",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Test rows (default: a share of DATA).",
)
@click.option(
    "--proposer-lm",
    "proposer_lm",
    default=None,
    metavar="BACKEND[:MODEL]",
    help="The model that writes candidate instructions (opro, copro, mipro and gepa need "
    "one; templates and evolutionary use it when given). Its calls are counted apart from "
    "--budget.",
)
@_run_options(out_help="Output folder (result.json, report.html, ...).")
def optimize_prompt(
    data,
    inputs,
    target,
    labels,
    task,
    instruction,
    metric,
    method,
    budget,
    seed,
    val,
    test,
    proposer_lm,
    lm_flags,
    max_tokens,
    config_path,
    overrides,
    out,
    fresh,
    no_progress,
) -> None:
    """Find a better instruction for DATA (JSON/JSONL rows): split it into train/val/test with
    a seed, search under --budget task calls on val, then score the initial and the best
    instruction on test and compare them (paired CI and p). --lm is the model whose
    instruction is tuned (default: local, the embedded model).

    Writes OUT/result.json, results.json (for `eval report`), history.jsonl, program.json and
    report.html. A killed run resumes where it stopped when started again.

    Example: instructkit optimize prompt reviews.jsonl --input text --target label
    --labels positive,negative --budget 200 -o opt
    """
    from instructkit.config import load_config
    from instructkit.optimize.prompt import PromptOptConfig, run_prompt_optimization
    from instructkit.report.prompt import write_prompt_report

    cfg = load_config(
        PromptOptConfig,
        config_path,
        overrides,
        data=data,
        inputs=list(inputs) or None,
        target=target,
        labels=labels.split(",") if labels else None,
        task=task,
        instruction=instruction,
        metric=metric,
        method=method,
        budget=budget,
        seed=seed,
        val=val,
        test=test,
        proposer_lm=proposer_lm,
        **lm_flags,
        max_tokens=max_tokens,
        out=out,
    )
    result = run_prompt_optimization(cfg, fresh=fresh, progress=not no_progress)
    page = write_prompt_report(cfg.out)
    click.echo(
        f"initial  val {result.initial.val:.3f}  test {result.initial.test:.3f}  "
        f"{result.initial.instruction}"
    )
    click.echo(
        f"best     val {result.best.val:.3f}  test {result.best.test:.3f}  "
        f"{result.best.instruction}"
    )
    c = result.test_comparison
    click.echo(
        f"test delta {c.diff:+.3f} (CI {c.ci_low:+.3f} to {c.ci_high:+.3f}, "
        f"p {c.p_permutation:.3g}); calls {result.calls}"
    )
    click.echo(f"wrote {cfg.out}/result.json, results.json, history.jsonl, program.json, {page}")


@optimize_group.command("program")
@click.argument("program")
@click.option("--data", type=click.Path(exists=True, dir_okay=False), help="Rows (JSON/JSONL).")
@click.option("--target", help="Field holding the reference of the program's final output.")
@click.option(
    "--inputs",
    default=None,
    help="Input fields passed to the program, comma-separated (default: the first "
    "predictor's input fields).",
)
@click.option("--labels", default=None, help="The answer set, comma-separated: a,b,c.")
@click.option(
    "--metric",
    default=None,
    help="exact, lenient (default with --labels), f1, or another instructkit metric name; "
    "it scores the --target output of the program.",
)
@click.option(
    "--budget",
    type=int,
    default=None,
    help="Most task calls the search may spend on val, all predictors together (the final "
    "test runs are extra). Default 200.",
)
@click.option("--seed", type=int, default=None, help="Seed of the split and the search.")
@click.option("--rounds", type=int, default=None, help="Passes over the predictors (default 2).")
@click.option(
    "--candidates", type=int, default=None, help="Template candidates per predictor (default 6)."
)
@click.option(
    "--proposals",
    type=int,
    default=None,
    help="Proposer rewrites per predictor and round, with --proposer-lm (default 2).",
)
@click.option(
    "--val",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Val rows (default: a share of --data).",
)
@click.option(
    "--test",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Test rows (default: a share of --data).",
)
@click.option(
    "--proposer-lm",
    default=None,
    metavar="BACKEND[:MODEL]",
    help="A model that rewrites instructions from the failing items (default: none).",
)
@_run_options(out_help="Output folder (result.json, report.html, program.json, ...).")
def optimize_program(
    program,
    data,
    target,
    inputs,
    labels,
    metric,
    budget,
    seed,
    rounds,
    candidates,
    proposals,
    val,
    test,
    proposer_lm,
    lm_flags,
    max_tokens,
    config_path,
    overrides,
    out,
    fresh,
    no_progress,
) -> None:
    """Tune the instruction of every predictor of the DSPy program PROGRAM (FILE.py:OBJECT: a
    dspy.Module instance, or a no-argument callable returning one) on --data: split it into
    train/val/test with a seed, search stage by stage under --budget task calls on val
    (each candidate scored by the final metric, the other stages at their best), then score
    the initial and the best program on test and compare them (paired CI and p). --lm runs
    the program (default: local, the embedded model).

    Writes OUT/result.json (with the val gain of each stage), results.json (for `eval
    report`), program.json (DSPy's save format), history.jsonl and report.html (the stages,
    fitness vs calls, test examples). A killed run resumes where it stopped when started again.

    Example: instructkit optimize program pipeline.py:program --data reviews.jsonl
    --target sentiment --labels positive,negative --budget 200 -o opt
    """
    from instructkit.config import load_config
    from instructkit.optimize.program import ProgramOptConfig, run_program_optimization
    from instructkit.report.program import write_program_report

    cfg = load_config(
        ProgramOptConfig,
        config_path,
        overrides,
        program=program,
        data=data,
        target=target,
        inputs=inputs.split(",") if inputs else None,
        labels=labels.split(",") if labels else None,
        metric=metric,
        budget=budget,
        seed=seed,
        rounds=rounds,
        candidates=candidates,
        proposals=proposals,
        val=val,
        test=test,
        proposer_lm=proposer_lm,
        **lm_flags,
        max_tokens=max_tokens,
        out=out,
    )
    result = run_program_optimization(cfg, fresh=fresh, progress=not no_progress)
    page = write_program_report(cfg.out)
    for name, outcome in (("initial", result.initial), ("best", result.best)):
        click.echo(f"{name:8} val {outcome.val:.3f}  test {outcome.test:.3f}")
    for stage in result.stages:
        gain = "n/a" if stage.gain is None else f"{stage.gain:+.3f}"
        changed = "changed" if stage.instruction_after != stage.instruction_before else "kept"
        click.echo(f"  {stage.name}: {changed}, val gain alone {gain}: {stage.instruction_after}")
    c = result.test_comparison
    click.echo(
        f"test delta {c.diff:+.3f} (CI {c.ci_low:+.3f} to {c.ci_high:+.3f}, "
        f"p {c.p_permutation:.3g}); calls {result.calls}"
    )
    click.echo(f"wrote {cfg.out}/result.json, results.json, program.json, history.jsonl, {page}")
