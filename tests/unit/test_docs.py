"""Docs stay true to the code: every key of each workflow config is in its doc page, and no
command's --help names a Python class instead of the page."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from instructkit.cli.main import cli
from instructkit.data.dedup import DedupConfig
from instructkit.data.quality_config import QualityConfig
from instructkit.data.sources import DatasetSpec
from instructkit.demo import DemoConfig
from instructkit.evaluate.generate import GenerateConfig
from instructkit.lm.options import LMOptions
from instructkit.optimize.evolutionary import EvolutionSettings
from instructkit.optimize.opro import OPROSettings
from instructkit.optimize.prompt import PromptOptConfig
from instructkit.rl.pairs import PairsConfig
from instructkit.synth.evol_instruct import EvolConfig
from instructkit.synth.self_instruct import SelfInstructConfig

DOCS = Path(__file__).resolve().parents[2] / "docs"

PAGES = [
    (SelfInstructConfig, "synth.md"),
    (EvolConfig, "synth.md"),
    (DemoConfig, "demo.md"),
    (QualityConfig, "data-quality.md"),
    (DedupConfig, "data-quality.md"),
    (PromptOptConfig, "optimize.md"),
    (EvolutionSettings, "optimize.md"),
    (OPROSettings, "optimize.md"),
    (PairsConfig, "reward.md"),
    (GenerateConfig, "generate.md"),
    (LMOptions, "cli.md"),
    (DatasetSpec, "data.md"),
]


@pytest.mark.parametrize("config,page", PAGES, ids=lambda x: getattr(x, "__name__", x))
def test_every_config_key_is_documented(config, page):
    text = (DOCS / page).read_text("utf-8")
    missing = [name for name in config.model_fields if f"`{name}`" not in text]
    assert not missing, f"docs/{page} does not document {missing}"


def test_lm_option_descriptions_are_in_the_cli_page_word_for_word():
    text = (DOCS / "cli.md").read_text("utf-8")
    missing = [k for k, f in LMOptions.model_fields.items() if f.description not in text]
    assert not missing, f"docs/cli.md does not give the description of {missing}"


def _commands(group, path=()):
    for name, cmd in getattr(group, "commands", {}).items():
        yield (*path, name)
        yield from _commands(cmd, (*path, name))


@pytest.mark.parametrize("path", list(_commands(cli)), ids=" ".join)
def test_help_names_no_python_class(path):
    out = CliRunner().invoke(cli, [*path, "--help"]).output
    assert not re.search(r"\b[A-Z][A-Za-z]+Config\b", out), out
