"""Options that several commands share, defined once so that their names and help cannot drift.

@config_options("docs/sft.md", example="train.lr=1e-4")
def cmd(config_path, overrides): cfg = load_config(SFTConfig, config_path, overrides)

@lm_options()           # --lm --model --base-url --api-key-env --cache --concurrency
def cmd(lm_flags): opts = LMOptions(**lm_flags)   # only the flags given

@lm_options(prefix="judge")   # --judge --judge-model --judge-base-url ... (a second LM)
def cmd(judge_flags): ...     # the same keys: lm, model, base_url, ...

Help texts of options that set a config key come from the pydantic field's description
(:func:`field_help`), so ``--help``, the docs and the config say the same. ``--from``/``--to``
list the data layer's formats (:data:`~instructkit.data.formats.FORMATS`) and ``--template``
the template names, with a "did you mean" for a typo, before anything is loaded.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click
from pydantic import BaseModel

from instructkit.data.formats import FORMATS
from instructkit.data.templates import TEMPLATE_NAMES, check_template_name
from instructkit.errors import TemplateError
from instructkit.lm.options import LM_OPTION_FIELDS, LMOptions

__all__ = [
    "FORMAT_CHOICE",
    "apply_options",
    "config_options",
    "field_help",
    "format_option",
    "lm_options",
    "template_option",
]

FORMAT_CHOICE = click.Choice(list(FORMATS))

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


def field_help(model: type[BaseModel], name: str) -> str:
    """The help text of the option that sets ``model``'s field ``name``: its description."""
    description = model.model_fields[name].description
    if not description:
        raise TypeError(f"{model.__name__}.{name} has no Field(description=...) to show")
    return description


def lm_options(
    *, required: bool = False, prefix: str | None = None, lm_help: str | None = None
) -> Callable[[F], F]:
    """``--lm``, ``--model``, ``--base-url``, ``--api-key-env``, ``--cache`` and
    ``--concurrency`` (the fields of :class:`~instructkit.lm.options.LMOptions`, their help
    its descriptions, word for word), passed to the command as one dict ``lm_flags`` of the
    flags given. ``required`` makes ``--lm`` required (the command's docstring says what the
    LM does and which one it uses by default).

    ``prefix`` names a second LM (a judge): ``--PREFIX`` (the LM spec), ``--PREFIX-model``,
    ``--PREFIX-base-url``, ... with the same descriptions after "Prefix: ", passed as
    ``PREFIX_flags`` with the same keys (``lm``, ``model``, ...); ``lm_help`` replaces the
    help of ``--PREFIX``."""

    def flag(name: str) -> str:
        dashed = name.replace("_", "-")
        if prefix is None:
            return f"--{dashed}"
        return f"--{prefix}" if name == "lm" else f"--{prefix}-{dashed}"

    def dest(name: str) -> str:
        return name if prefix is None else f"{prefix}_{name}"

    def text(name: str) -> str:
        if prefix is None:
            return field_help(LMOptions, name)
        if name == "lm" and lm_help:
            return lm_help
        return f"{prefix.capitalize()}: {field_help(LMOptions, name)}"

    options = [
        click.option(flag("lm"), dest("lm"), required=required, default=None,
                     metavar="BACKEND[:MODEL]", help=text("lm")),
        click.option(flag("model"), dest("model"), default=None, help=text("model")),
        click.option(flag("base_url"), dest("base_url"), default=None, metavar="URL",
                     help=text("base_url")),
        click.option(flag("api_key_env"), dest("api_key_env"), default=None, metavar="VAR",
                     help=text("api_key_env")),
        click.option(flag("cache"), dest("cache"), default=None,
                     type=click.Path(dir_okay=False), help=text("cache")),
        click.option(flag("concurrency"), dest("concurrency"), default=None,
                     type=click.IntRange(min=1), help=text("concurrency")),
    ]  # fmt: skip
    target = "lm_flags" if prefix is None else f"{prefix}_flags"

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {k: kwargs.pop(dest(k)) for k in LM_OPTION_FIELDS}
            kwargs[target] = {k: v for k, v in given.items() if v is not None}
            return command(*args, **kwargs)

        return apply_options(*options)(cast(F, wrapper))

    return decorate


def format_option(*names: str, dest: str = "fmt", required: bool = False, help: str) -> Any:
    """A data-format option (``--from``, ``--to``): one of the data layer's formats."""
    return click.option(*names, dest, type=FORMAT_CHOICE, required=required, default=None,
                        help=help)  # fmt: skip


class TemplateName(click.ParamType[str]):
    """A template name, checked (with a "did you mean") when the command line is parsed."""

    name = "template"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join(TEMPLATE_NAMES) + "]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return check_template_name(str(value))
        except TemplateError as e:
            self.fail(str(e), param, ctx)


def template_option(default: str | None = "tokenizer") -> Callable[[F], F]:
    """``--template``: a built-in chat template or ``tokenizer`` (the model's own)."""
    return click.option(
        "--template",
        type=TemplateName(),
        default=default,
        show_default=default is not None,
        help="Chat template: alpaca, vicuna, chatml, llama3, or tokenizer (the model's own).",
    )
