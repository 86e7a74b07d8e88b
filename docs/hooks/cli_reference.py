"""MkDocs hook: the CLI reference page, generated from the click command tree at build time.

Every command of ``instructkit`` (walked from :data:`instructkit.cli.main.cli`) gets a heading
``instructkit GROUP COMMAND`` and its exact ``--help`` text, so the page cannot drift from the
code. ``mkdocs.yml`` registers it under ``hooks:``; ``tests/unit/test_docs_site.py`` checks that
the page names every command and every option. Run it alone to print the page::

    PYTHONPATH=src python docs/hooks/cli_reference.py
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

PAGE = "cli-reference.md"
WIDTH = 96  # help text wrapped as on a 96-column terminal, whatever the build machine's is

INTRO = """# CLI reference

Every command's `--help`, generated from the code when the site is built. The options that all
model-calling commands share (`--lm`, `--model`, `--base-url`, ...) and the `--config` /
`--set` convention are explained in [Shared CLI options](cli.md).
"""


def walk(
    cmd: click.Command, name: str = "instructkit", parent: click.Context | None = None
) -> Iterator[tuple[str, click.Command, click.Context]]:
    """Yield (full command path, command, its help context) depth first, groups before children."""
    ctx = click.Context(
        cmd, info_name=name, parent=parent, terminal_width=WIDTH, max_content_width=WIDTH
    )
    yield ctx.command_path, cmd, ctx
    if isinstance(cmd, click.Group):
        for sub_name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, sub_name, ctx)


def summary(cmd: click.Command, limit: int = 100) -> str:
    """The first paragraph of the command's help on one line, cut at a word near ``limit``."""
    text = " ".join((cmd.short_help or cmd.help or "").split("\n\n")[0].split())
    if len(text) > limit:
        text = text[: text.rfind(" ", 0, limit)] + " ..."
    return text.replace("|", "\\|")


def render(root: click.Command | None = None) -> str:
    """The whole page: an index of the commands, then one section per command."""
    if root is None:
        from instructkit.cli.main import cli

        root = cli
    commands = list(walk(root))
    lines = [INTRO, "| command | what it does |", "|---|---|"]
    for path, cmd, _ in commands:
        anchor = path.replace(" ", "-")
        lines.append(f"| [`{path}`](#{anchor}) | {summary(cmd)} |")
    for path, cmd, ctx in commands:
        anchor = path.replace(" ", "-")
        lines += ["", f"## `{path}` {{ #{anchor} }}", "", "```text", cmd.get_help(ctx), "```"]
    return "\n".join(lines) + "\n"


def on_files(files: Any, config: Any) -> Any:
    """MkDocs event: add the generated page to the site's files."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render()))
    return files


if __name__ == "__main__":
    print(render())
