"""The documentation site stays true to the code: the generated CLI reference names every command
and every option, the API pages render every name of ``instructkit.__all__``, and
``mkdocs build --strict`` (broken links, missing anchors, pages left out of the nav, docstring
problems) passes."""

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

import instructkit
from instructkit.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / "docs" / "hooks"


def _hook(name):
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", HOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _commands(cmd, path=("instructkit",)):
    """Every command path, walked here without the generator's own walk."""
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        if not sub.hidden:
            yield from _commands(sub, (*path, name))


def _sections(page):
    """Command path -> its section of the generated page."""
    parts = re.split(r"^## `([^`]+)`.*$", page, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.fixture(scope="module")
def sections():
    return _sections(_hook("cli_reference").render(cli))


def test_the_reference_has_a_section_for_every_command_and_nothing_else(sections):
    expected = {" ".join(path) for path, _ in _commands(cli)}
    assert set(sections) == expected
    assert len(expected) > 30  # the walk reached the nested groups (eval human ...)


@pytest.mark.parametrize(
    "path,cmd", list(_commands(cli)), ids=[" ".join(p) for p, _ in _commands(cli)]
)
def test_every_option_and_argument_of_a_command_is_in_its_section(sections, path, cmd):
    text = sections[" ".join(path)]
    assert f"Usage: {' '.join(path)} " in text
    for param in cmd.params:
        if isinstance(param, click.Option) and not param.hidden:
            missing = [o for o in param.opts + param.secondary_opts if o not in text]
            assert not missing, f"{' '.join(path)}: {missing} not documented"
        elif isinstance(param, click.Argument):
            usage = next(line for line in text.splitlines() if line.startswith("Usage:"))
            assert param.make_metavar(click.Context(cmd)) in usage


def test_the_reference_follows_a_change_to_the_command_tree():
    @click.group()
    def root():
        """Root."""

    @root.command("hello")
    @click.option("--name", help="Who to greet.")
    def hello(name):
        """Say hello. Second sentence."""

    page = _hook("cli_reference").render(root)
    section = _sections(page)["instructkit hello"]
    assert "--name TEXT  Who to greet." in section
    assert "| [`instructkit hello`](#instructkit-hello) | Say hello. Second sentence. |" in page


def test_sphinx_roles_of_docstrings_render_as_code():
    strip = _hook("rst_roles").strip_roles
    html = "<p>See :func:<code>~instructkit.io.write_atomic</code> and :class:<code>Job</code>"
    html += "::</p>"
    assert strip(html) == "<p>See <code>write_atomic</code> and <code>Job</code>:</p>"


def _api_members():
    """(module, name) of every `::: module` block of docs/api/ with its `members: [...]`."""
    found = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        block = r"^::: ([\w.]+)\n    options:\n      members: \[([^\]]*)\]"
        blocks = re.findall(block, page.read_text("utf-8"), re.M)
        found |= {(module, n.strip()) for module, names in blocks for n in names.split(",")}
    return found


def test_every_public_name_has_an_api_entry_under_its_defining_module():
    documented = _api_members()
    missing = [n for n, m in instructkit._EXPORTS.items() if (m, n) not in documented]
    assert not missing, f"docs/api/ renders no entry for {missing}"
    public = set(instructkit._EXPORTS.items())
    extra = [f"{m}.{n}" for m, n in documented if (n, m) not in public]
    assert not extra, f"docs/api/ documents names outside instructkit.__all__: {extra}"


def test_mkdocs_build_strict(tmp_path):
    """The whole site, as CI builds it (about 10 s on 2 loaded cores)."""
    for package in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed (pip install -e '.[dev]' installs it)")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NO_MKDOCS_2_WARNING": "1"}
    start = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert time.monotonic() - start < 120
    site = tmp_path / "site"
    reference = (site / "cli-reference" / "index.html").read_text("utf-8")
    assert "instructkit train sft" in reference
    assert "Benchmark results" in (site / "benchmarks" / "index.html").read_text("utf-8")
    api = (site / "api" / "data" / "index.html").read_text("utf-8")
    assert "tokenize_conversation" in api and ":func:" not in api


# Pages whose bash and python blocks run as written, in order, in one empty folder (the tiny
# random model only). Other pages' examples need the embedded model or a server. The quickstart
# starts five commands and trains twice (40 s on 2 loaded cores), so it runs with the slow tests.
RUNNABLE = [
    pytest.param("quickstart.md", marks=pytest.mark.slow),
    "concepts/formats.md",
    "concepts/templates.md",
    "concepts/mixing.md",
    "concepts/packing.md",
    "concepts/jobs.md",
    "concepts/results.md",
]


def _blocks(page):
    text = (ROOT / "docs" / page).read_text("utf-8")
    return re.findall(r"^```(bash|python)\n(.*?)^```$", text, flags=re.M | re.S)


@pytest.mark.parametrize("page", RUNNABLE)
def test_the_examples_of_a_page_run(page, tmp_path):
    blocks = _blocks(page)
    assert blocks, f"docs/{page} has no bash or python example"
    bin_dir = str(Path(sys.executable).parent)  # the venv's `instructkit` script
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT / "src"),
    }
    for n, (lang, code) in enumerate(blocks):
        if "synth self-instruct" in code:  # the embedded model, minutes: not in the unit suite
            continue
        cmd = ["bash", "-e", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
        run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert run.returncode == 0, f"docs/{page} block {n} ({lang}):\n{run.stdout}{run.stderr}"
