"""Every README example runs: the Python section (on the tiny model here, on the embedded model
in tests/slow), and every `instructkit ...` command it lists exists with the options it shows."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from instructkit.cli.main import cli

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_examples_run_on_the_tiny_model(tmp_path, run_readme_python):
    out = run_readme_python("tiny-random-llama")
    assert "p_permutation" in out and (tmp_path / "lm-cache.sqlite").exists()


def readme_commands() -> list[list[str]]:
    """`instructkit A B ...` lines of the README's bash blocks, as the words before any
    placeholder, with the --options they name."""
    text = "\n".join(re.findall(r"```bash\n(.*?)```", README.read_text("utf-8"), re.S))
    commands = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("instructkit "):
            continue
        first, *rest = line.split(" | ")  # "export ... | import ..." lists two subcommands
        words = first.split()
        commands.append(words)
        group = ["instructkit", *_path(words)[:-1]]
        commands += [group + other.split() for other in rest]
    return commands


def _path(words: list[str]) -> list[str]:
    path = []
    for w in words[1:] if words[0] == "instructkit" else words:
        if w.startswith("-") or not re.fullmatch(r"[a-z][a-z-]*", w):
            break
        path.append(w)
    return path


@pytest.mark.parametrize("words", readme_commands(), ids=lambda w: " ".join(w[:4]))
def test_readme_command_exists_with_its_options(words):
    path = _path(words)
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    for option in re.findall(r"(--[a-z][a-z-]*)", " ".join(words)):
        assert option in result.output, f"`instructkit {' '.join(path)}` has no {option}"
