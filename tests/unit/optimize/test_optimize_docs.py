"""docs/optimize.md stays true: its Python example runs and prints what its comments say."""

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "optimize.md"


def test_the_example_in_docs_optimize_runs():
    code = re.search(r"```python\n(.*?)```", DOC.read_text("utf-8"), re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0] == "positive"
    assert lines[1] == "Classify the sentiment. 1.0 [1.0, 1.0, 1.0]"
    assert lines[2].startswith("Guess. 0.333") and lines[2].endswith("[1.0, 0.0, 0.0]")
    assert lines[-1] == "{'task': 7}"


def test_the_template_example_in_docs_optimize_runs():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), re.S)
    code = next(b for b in blocks if "propose_candidates" in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {})
    assert "positive" in out.getvalue() and "negative" in out.getvalue()
