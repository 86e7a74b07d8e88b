import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text("utf-8"), re.S)


@pytest.fixture()
def run_readme_python(tmp_path):
    """Run the README's Python blocks in tmp_path with ``model`` in place of the default model."""

    def run(model: str) -> str:
        code = "\n".join(readme_python_blocks()).replace('"smollm2-135m-instruct"', f'"{model}"')
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    return run


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from instructkit.models import build_tiny_tokenizer

    return build_tiny_tokenizer()


LLAMA3_MARKERS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


@pytest.fixture(scope="module")
def llama3_tokenizer():
    """The tiny tokenizer with Llama-3's markers as single tokens (as a Llama-3 tokenizer)."""
    from instructkit.models import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": LLAMA3_MARKERS})
    return tok


@pytest.fixture()
def tiny_model(tiny_tokenizer):
    from instructkit.models import build_tiny_model

    return build_tiny_model(tiny_tokenizer, seed=0)
