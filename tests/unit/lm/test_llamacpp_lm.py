import sys
import types

import pytest

from instructkit.errors import ModelError
from instructkit.lm.base import ChatRequest
from instructkit.lm.llamacpp import LlamaCppLM


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(ModelError) as e:
        LlamaCppLM("model.gguf")
    assert "llama-cpp-python" in str(e.value)
    assert "pip install llama-cpp-python" in e.value.fix


def test_maps_requests_to_create_chat_completion(monkeypatch, tmp_path):
    calls = []

    class FakeLlama:
        def __init__(self, **kw):
            self.kw = kw

        def create_chat_completion(self, **kw):
            calls.append(kw)
            text = f"{kw['messages'][-1]['content']}/{kw['seed']}"
            return {
                "choices": [{"message": {"content": text}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 4, "completion_tokens": 2},
            }

    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=FakeLlama))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    lm = LlamaCppLM(gguf, n_ctx=512)
    assert lm.name == "llamacpp:m.gguf" and lm._llama.kw["n_ctx"] == 512
    greedy = ChatRequest.from_messages([{"role": "user", "content": "a"}], n=2)
    sampled = ChatRequest.from_messages(
        [{"role": "user", "content": "b"}], temperature=0.5, n=2, seed=10, stop="\n"
    )
    g, s = lm.complete([greedy, sampled])
    assert g.texts == ["a/None", "a/None"] and g.completion_tokens == 4
    assert s.texts == ["b/10", "b/11"] and s.finish_reasons == ["length", "length"]
    assert len(calls) == 3
    assert calls[0]["temperature"] == 0.0 and calls[0]["stop"] is None
    assert calls[1]["stop"] == ["\n"] and calls[1]["top_k"] == 0 and calls[1]["min_p"] == 0.0


def test_missing_model_file_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=None))
    with pytest.raises(ModelError, match="no GGUF file"):
        LlamaCppLM(tmp_path / "absent.gguf")
