"""Options that several commands share, defined once so that their names and help cannot drift.

@config_options("docs/sft.md", example="train.lr=1e-4")
def cmd(config_path, overrides): cfg = load_config(SFTConfig, config_path, overrides)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["apply_options", "config_options"]

F = TypeVar("F", bound=Callable[..., Any])


def apply_options(*options: Callable[[F], F]) -> Callable[[F], F]:
    """One decorator made of several click options, in the order given (as ``--help`` lists)."""

    def apply(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


def config_options(
    docs: str, *, required: bool = False, example: str = "key=value", flags_win: bool = False
) -> Callable[[F], F]:
    """``--config FILE.yaml`` (passed as ``config_path``) and repeatable ``--set KEY=VALUE``
    (``overrides``): every key is listed on the page ``docs``; ``flags_win`` says that the
    command's own flags override the file."""
    after = "; flags win" if flags_win else ""
    return apply_options(
        click.option(
            "--config",
            "config_path",
            type=click.Path(exists=True, dir_okay=False),
            required=required,
            default=None,
            help=f"YAML config; every key is listed in {docs}{after}.",
        ),
        click.option(
            "--set",
            "overrides",
            multiple=True,
            metavar="KEY=VALUE",
            help=f"Override a config key, e.g. --set {example} (repeatable).",
        ),
    )


def run_options(
    name: str, what: str, *, eval_help: str | None = None, reward: bool = False
) -> Callable[[F], F]:
    """The common case of a training command: ``NAME`` (the input file, ``what`` it holds),
    ``-o/--output-dir``, ``--model``, and ``--eval FILE`` (``eval_path``, when ``eval_help``
    is given) and ``--reward`` (``reward_kind``, when ``reward``)."""
    options: list[Callable[[F], F]] = [
        click.argument(name, required=False, type=click.Path(exists=True, dir_okay=False)),
        click.option(
            "-o",
            "--output-dir",
            "--out",
            "output_dir",
            default=None,
            help=f"Run folder (output_dir); {what} from {name.upper()}.",
        ),  # fmt: skip
        click.option("--model", default=None, help="Base model: registry name, hub id, folder."),
    ]
    if eval_help is not None:
        options.append(
            click.option(
                "--eval",
                "eval_path",
                default=None,
                type=click.Path(exists=True, dir_okay=False),
                help=eval_help,
            )  # fmt: skip
        )
    if reward:
        options.append(
            click.option(
                "--reward",
                "reward_kind",
                type=click.Choice(["ifeval", "exact"]),
                default=None,
                help="Reward source (reward.kind): ifeval (the row's IFEval instructions) or "
                "exact (its 'answer'); a reward model with --set reward.kind=model "
                "--set reward.path=DIR.",
            )  # fmt: skip
        )
    return apply_options(*options)
