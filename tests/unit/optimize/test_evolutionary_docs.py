"""The "Evolutionary search" example in docs/optimize.md runs and prints what it says."""

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "optimize.md"


def test_the_evolutionary_example_in_docs_optimize_runs():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), re.S)
    code = next(b for b in blocks if "Evolutionary(" in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0] == "0.5 -> 1.0"
    assert "carefully" in lines[1]
    assert lines[2] == "{'task': 148, 'proposer': 0} budget"
    assert lines[3] == "0 minibatch insert 0.5 28"
