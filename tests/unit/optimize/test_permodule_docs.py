"""The "Per-module optimization" section of docs/optimize.md: its example runs and prints what
it says, and every key of PerModuleSettings and ProgramOptConfig is in its tables."""

import contextlib
import io
import re
from pathlib import Path

import pytest

from instructkit.optimize.permodule import PerModuleSettings
from instructkit.optimize.program import ProgramOptConfig

DOC = Path(__file__).resolve().parents[3] / "docs" / "optimize.md"


def section() -> str:
    text = DOC.read_text("utf-8")
    return text[text.index("## Per-module optimization") :]


def test_the_per_module_example_in_docs_optimize_runs():
    code = re.search(r"```python\n(.*?)```", section(), re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {})
    assert out.getvalue().splitlines() == [
        "0.5 -> 1.0 budget",
        "extract 0.5 True",
        "classify 0.0 False",
        "True",
        "{'task': 124, 'proposer': 0} 2",
    ]


@pytest.mark.parametrize("config", [PerModuleSettings, ProgramOptConfig], ids=lambda c: c.__name__)
def test_every_key_is_documented_in_the_section(config):
    missing = [name for name in config.model_fields if f"`{name}`" not in section()]
    assert not missing, f"docs/optimize.md (Per-module optimization) does not document {missing}"
