import sys

import pytest

from instructkit.errors import ConfigError, ModelError
from instructkit.lm import BACKENDS, CachedLM, LocalLM, OpenAILM, build_lm


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        build_lm("vllm:foo")
    assert "'vllm'" in str(e.value)
    assert all(b in e.value.fix for b in BACKENDS)


def test_openai_spec_keeps_colons_in_the_model_name_and_passes_options():
    lm = build_lm("openai:llama3:8b", base_url="http://127.0.0.1:1/v1", concurrency=3)
    assert isinstance(lm, OpenAILM)
    assert lm.model == "llama3:8b" and lm.concurrency == 3
    assert lm.url == "http://127.0.0.1:1/v1/chat/completions"


def test_openai_needs_a_model():
    with pytest.raises(ConfigError, match="openai:MODEL"):
        build_lm("openai")


def test_base_url_only_applies_to_openai():
    with pytest.raises(ConfigError, match="openai:MODEL only"):
        build_lm("local", base_url="http://x/v1")


def test_cache_wraps_the_lm(tmp_path):
    lm = build_lm("openai:m", base_url="http://127.0.0.1:1/v1", cache=str(tmp_path / "c.db"))
    assert isinstance(lm, CachedLM) and isinstance(lm.lm, OpenAILM)
    assert lm.name == "openai:m"


def test_local_spec_loads_a_registered_model():
    lm = build_lm("local:tiny-random-llama", batch_size=4)
    assert isinstance(lm, LocalLM)
    assert lm.name == "local:tiny-random-llama" and lm.batch_size == 4


def test_llamacpp_without_the_package_is_a_model_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(ModelError, match="llama-cpp-python"):
        build_lm("llamacpp")


def test_openai_retry_settings_are_build_lm_options_and_the_timeout_suits_a_slow_server():
    lm = build_lm(
        "openai:m",
        base_url="http://127.0.0.1:1/v1",
        timeout=1200,
        max_retries=2,
        retry_window=30,
        concurrency=4,
        cache=None,
    )
    assert (lm.timeout, lm.max_retries, lm.retry_window, lm.concurrency) == (1200, 2, 30, 4)
    assert build_lm("openai:m", base_url="http://127.0.0.1:1/v1").timeout >= 600
