"""The "OPRO" example in docs/optimize.md runs and prints what its comments say."""

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "optimize.md"


def test_the_opro_example_in_docs_optimize_runs():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), re.S)
    code = next(b for b in blocks if "OPRO(" in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0] == "0.5 -> 1.0"
    assert lines[1] == "Read the text carefully, then answer positive or negative."
    assert lines[2] == "{'task': 80, 'proposer': 8} early_stop"
