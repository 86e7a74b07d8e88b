"""What `train sft` tells users is true: fix hints name real options, docs list every key."""

import ast
import re
from pathlib import Path

import click
import pytest
from pydantic import BaseModel

from instructkit.train.loop import FitResult
from instructkit.train.sft import SFTConfig, SFTResult, fit_summary, format_summary

ROOT = Path(__file__).parents[3]
SRC = ROOT / "src" / "instructkit"


def _fix_texts(path: Path) -> list[str]:
    """String constants in ``fix=`` arguments and in module-level *FIX* / *HINT* constants."""
    tree = ast.parse(path.read_text("utf-8"))
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "fix":
            texts += [c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant)]
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and ("FIX" in t.id or "HINT" in t.id) for t in node.targets
        ):
            texts += [c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant)]
    return [t for t in texts if isinstance(t, str)]


FILES = sorted((SRC / "train").glob("*.py")) + sorted((SRC / "data").glob("*.py"))
HINTS = [(p.relative_to(SRC).as_posix(), t) for p in FILES for t in _fix_texts(p)]
FLAGS = sorted({(where, f) for where, t in HINTS for f in re.findall(r"--[a-z][a-z-]*", t)})
SET_KEYS = sorted({(w, k) for w, t in HINTS for k in re.findall(r"--set ([\w.]+)=", t)})
DOTTED = sorted(
    {(w, k) for w, t in HINTS for k in re.findall(r"(?<![\w.])(?:data|train|lora)\.\w+", t)}
)


def _cli_options() -> set[str]:
    from instructkit.cli.main import cli

    found: set[str] = set()

    def walk(cmd: click.Command) -> None:
        for p in cmd.params:
            found.update(o for o in p.opts if o.startswith("--"))
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(cli)
    return found


def _resolves(model: type[BaseModel], dotted: str) -> bool:
    for part in dotted.split("."):
        field = model.model_fields.get(part)
        if field is None:
            return False
        ann = field.annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else BaseModel
    return True


def test_the_hints_name_flags_and_keys():
    assert HINTS and FLAGS and SET_KEYS and DOTTED  # the scan itself finds what it checks
    assert ("data/loader.py", "--skip-invalid") in FLAGS


@pytest.mark.parametrize("where,flag", FLAGS)
def test_every_flag_in_a_fix_hint_exists(where, flag):
    assert flag in _cli_options(), f"{where}: a fix hint names {flag}, which no command has"


@pytest.mark.parametrize("where,key", SET_KEYS + DOTTED)
def test_every_config_key_in_a_fix_hint_exists(where, key):
    assert _resolves(SFTConfig, key), f"{where}: a fix hint names {key}, not a train sft key"


def test_skip_invalid_hint_names_the_train_sft_key():
    skip = [t for w, t in HINTS if "--skip-invalid" in t]
    assert skip and all("skip_invalid: true" in t for t in skip)


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        out.append(prefix + name)
        ann = field.annotation
        inner = getattr(ann, "__args__", (ann,))  # list[DatasetConfig] -> DatasetConfig
        for t in inner:
            if isinstance(t, type) and issubclass(t, BaseModel):
                out += _keys(t, f"{prefix}{name}.")
    return out


@pytest.mark.parametrize("key", _keys(SFTConfig))
def test_every_config_key_is_documented(key):
    """Each key (and each section's key) appears in docs/sft.md as `name` in a table row."""
    doc = (ROOT / "docs" / "sft.md").read_text("utf-8")
    rows = [line for line in doc.splitlines() if line.startswith("|")]
    name = key.rsplit(".", 1)[-1]
    assert any(f"`{name}`" in row or f"`{key}`" in row for row in rows), key


def test_help_speaks_in_user_words():
    from click.testing import CliRunner

    from instructkit.cli.main import cli

    out = CliRunner().invoke(cli, ["train", "sft", "--help"]).output
    assert "docs/sft.md" in out
    assert not re.search(r"\b[A-Z]\w*Config\b", out), out


def test_summary_reports_fair_start_end_and_epochs():
    r = FitResult(
        losses=[4.0, 3.0, 2.0, 1.0] * 5,
        eval_losses=[(0, 3.5), (10, 2.5), (20, 2.75)],
        steps=20,
        total_steps=40,
        epochs=0.5,
        best_eval_loss=2.5,
        best_eval_step=10,
    )
    f = fit_summary(r)
    assert (f["loss_start"], f["loss_end"], f["loss_window"]) == (3.5, 1.5, 2)
    assert (f["eval_loss_start"], f["eval_loss_start_step"]) == (3.5, 0)
    text = format_summary(
        SFTResult(output_dir="o", fit=f, mixture={}, n_train=8, n_eval=2, rejected=0)
    )
    assert "trained 20 of 40 steps (0.50 epochs of 8 examples" in text
    assert "train loss 3.5000 -> 1.5000 (mean of the first and last 2 steps)" in text
    assert "eval loss 3.5000 at step 0 -> best 2.5000 at step 10" in text
