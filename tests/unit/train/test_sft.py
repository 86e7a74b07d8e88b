import pytest

from instructkit.data.records import Conversation, Message
from instructkit.data.templates import get_template
from instructkit.data.tokenize import TokenizedExample, tokenize_conversation
from instructkit.errors import TrainingError
from instructkit.train.sft import SFTConfig, apply_lora, lr_at, train_sft


def test_lr_schedule_values():
    assert lr_at(0, 10, 1.0, 2) == 0.5
    assert lr_at(1, 10, 1.0, 2) == 1.0
    assert lr_at(2, 10, 1.0, 2) == pytest.approx(1.0)
    assert lr_at(6, 10, 1.0, 2) == pytest.approx(0.5)
    assert lr_at(10, 10, 1.0, 2) == pytest.approx(0.0)


def _echo_examples(tok):
    t = get_template("chatml", tok)
    convs = [
        Conversation([Message("user", f"Echo {w}"), Message("assistant", w)])
        for w in ["apple", "pear", "plum", "fig"] * 4
    ]
    return [tokenize_conversation(c, t, tok) for c in convs]


def test_full_finetuning_lowers_loss(tiny_model, tiny_tokenizer):
    examples = _echo_examples(tiny_tokenizer)
    cfg = SFTConfig(lora=False, epochs=8, batch_size=4, lr=3e-3, warmup_ratio=0.0)
    result = train_sft(tiny_model, tiny_tokenizer, examples, cfg, progress=False)
    assert result.steps == 32
    assert sum(result.losses[-4:]) < 0.5 * sum(result.losses[:4])
    assert result.trained_tokens == 8 * sum(e.n_trained for e in examples)


def test_lora_changes_only_the_adapter_and_lowers_loss(tiny_model, tiny_tokenizer):
    examples = _echo_examples(tiny_tokenizer)
    cfg = SFTConfig(epochs=4, batch_size=4, lr=3e-2, warmup_ratio=0.0)
    frozen = {k: v.detach().clone() for k, v in tiny_model.named_parameters()}
    model = apply_lora(tiny_model, cfg)
    result = train_sft(model, tiny_tokenizer, examples, cfg, progress=False)
    # a 64-wide random model moves little through rank-16 adapters; the loss must still drop
    assert sum(result.losses[-4:]) < 0.95 * sum(result.losses[:4])
    base = dict(model.get_base_model().named_parameters())
    for name, before in frozen.items():
        key = next(k for k in base if k.replace(".base_layer", "") == name)
        assert (base[key] == before).all(), name
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in base.items())


def test_no_trainable_tokens_is_an_error(tiny_model, tiny_tokenizer):
    ex = [TokenizedExample([1, 2, 3], [-100, -100, -100])]
    with pytest.raises(TrainingError, match="no example"):
        train_sft(tiny_model, tiny_tokenizer, ex, SFTConfig(), progress=False)
