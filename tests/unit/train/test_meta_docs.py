"""docs/meta.md documents every key of the train meta and eval adapt configs."""

from pathlib import Path

import pytest

from instructkit.rl.adapt import AdaptConfig, InitSpec
from instructkit.train.meta import MetaConfig, TaskSource

PAGE = Path(__file__).resolve().parents[3] / "docs" / "meta.md"


@pytest.mark.parametrize("config", [MetaConfig, TaskSource, AdaptConfig, InitSpec])
def test_every_key_is_documented(config):
    text = PAGE.read_text("utf-8")
    missing = [name for name in config.model_fields if f"`{name}`" not in text]
    assert not missing, f"docs/meta.md does not document {missing}"
