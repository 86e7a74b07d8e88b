import math

import pytest
import torch

from instructkit.data.records import Conversation, Message
from instructkit.data.templates import get_template
from instructkit.data.tokenize import TokenizedExample, tokenize_conversation
from instructkit.errors import TrainingError
from instructkit.train.checkpoint import latest_checkpoint
from instructkit.train.loop import (
    FitData,
    ResponseLoss,
    TrainConfig,
    accumulate_gradients,
    collate,
    fit,
    lr_at,
    plan_steps,
    window_means,
)
from instructkit.train.sft import AdapterConfig, apply_lora

WORDS = ["apple", "pear", "plum", "fig", "kiwi", "lime", "date", "melon"]


def examples(tok, n=16):
    t = get_template("chatml", tok)
    convs = [
        Conversation([Message("user", f"Echo {w} " * (1 + i % 3)), Message("assistant", w)])
        for i, w in enumerate((WORDS * 4)[:n])
    ]
    return [tokenize_conversation(c, t, tok) for c in convs]


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_lr_schedule_values():
    assert lr_at(0, 10, 1.0, 2) == 0.5
    assert lr_at(1, 10, 1.0, 2) == 1.0
    assert lr_at(6, 10, 1.0, 2) == pytest.approx(0.5)
    assert lr_at(10, 10, 1.0, 2) == pytest.approx(0.0)
    assert lr_at(6, 10, 1.0, 2, "linear") == pytest.approx(0.5)
    assert lr_at(9, 10, 1.0, 2, "constant") == 1.0


def test_plan_covers_epochs_and_is_deterministic():
    lengths = [30, 20, 50, 10, 40, 25, 35, 15]
    cfg = TrainConfig(batch_tokens=60, grad_accum=2, epochs=2, seed=3)
    plan = plan_steps(lengths, cfg)
    assert plan == plan_steps(lengths, cfg)
    flat = [i for step in plan for mb in step for i in mb]
    assert sorted(flat) == sorted(list(range(8)) * 2)
    assert all(sum(lengths[i] for i in mb) <= 60 for step in plan for mb in step)
    assert all(len(step) == 2 for step in plan[:-1])


@pytest.mark.parametrize("packing", [True, False])
def test_accumulating_micro_batches_equals_one_large_batch(tiny_model, tiny_tokenizer, packing):
    ex = examples(tiny_tokenizer, 8)
    loss_fn = ResponseLoss(tiny_model)
    dev = torch.device("cpu")
    n = sum(e.n_trained for e in ex) - 0  # first token of each example is a prompt token

    def batches(*groups):
        return [collate([ex[i] for i in g], packing, 0, dev) for g in groups]

    tiny_model.zero_grad()
    big, n_big = accumulate_gradients(loss_fn, batches(list(range(8))), n)
    g_big = grads(tiny_model)
    tiny_model.zero_grad()
    small, n_small = accumulate_gradients(loss_fn, batches([0, 1, 2], [3], [4, 5, 6, 7]), n)
    g_small = grads(tiny_model)
    assert n_small == n_big == n
    assert small == pytest.approx(big, rel=1e-5)
    assert g_big.keys() == g_small.keys()
    for k in g_big:
        torch.testing.assert_close(g_small[k], g_big[k], rtol=1e-4, atol=1e-7)
    # token-weighted, not a mean of micro-batch means: the per-example mean differs
    tiny_model.zero_grad()
    mean_of_means = 0.0
    for mb in ([0, 1, 2], [3], [4, 5, 6, 7]):
        m = sum(ex[i].n_trained for i in mb)
        s, _ = accumulate_gradients(loss_fn, batches(mb), m)
        mean_of_means += s / m / 3
    assert abs(mean_of_means - big / n) > 1e-4


def test_full_finetuning_lowers_loss(tiny_model, tiny_tokenizer):
    cfg = TrainConfig(epochs=8, batch_tokens=64, lr=3e-3, warmup_ratio=0.0)
    r = fit(tiny_model, FitData(examples(tiny_tokenizer)), cfg, progress=False)
    assert r.steps == r.total_steps == len(r.losses)
    assert sum(r.losses[-3:]) < 0.6 * sum(r.losses[:3])


def test_lora_changes_only_the_adapter(tiny_model, tiny_tokenizer):
    frozen = {k: v.detach().clone() for k, v in tiny_model.named_parameters()}
    model = apply_lora(tiny_model, AdapterConfig(r=8))
    cfg = TrainConfig(epochs=4, batch_tokens=64, lr=3e-2, warmup_ratio=0.0)
    r = fit(model, FitData(examples(tiny_tokenizer)), cfg, progress=False)
    # a 64-wide random model moves little through adapters; the loss must still drop
    assert sum(r.losses[-3:]) < 0.97 * sum(r.losses[:3])
    base = dict(model.get_base_model().named_parameters())
    for name, before in frozen.items():
        key = next(k for k in base if k.replace(".base_layer", "") == name)
        assert torch.equal(base[key], before), name
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in base.items())


class Kill(Exception):
    pass


@pytest.mark.parametrize("with_eval", [False, True])
def test_killed_and_resumed_run_ends_with_the_same_weights(tiny_tokenizer, tmp_path, with_eval):
    from instructkit.models import build_tiny_model

    ex = examples(tiny_tokenizer)
    held = ex[:4] if with_eval else ()
    cfg = TrainConfig(
        epochs=3,
        batch_tokens=48,
        lr=1e-2,
        save_every=2,
        seed=1,
        eval_every=3 if with_eval else None,
    )

    straight = apply_lora(build_tiny_model(tiny_tokenizer), AdapterConfig(r=4, dropout=0.1))
    ref = fit(straight, FitData(ex, held), cfg, run_dir=tmp_path / "a", progress=False)

    def die_at_5(event):
        if event.get("step") == 5:
            raise Kill()

    model = apply_lora(build_tiny_model(tiny_tokenizer), AdapterConfig(r=4, dropout=0.1))
    with pytest.raises(Kill):
        fit(model, FitData(ex, held), cfg, run_dir=tmp_path / "b", log=die_at_5, progress=False)
    assert latest_checkpoint(tmp_path / "b").name == "checkpoint-00000004"
    # same frozen base (it comes from the model id), different adapter init: the checkpoint
    # must restore the adapter, the optimizer state and the RNG (dropout)
    base = build_tiny_model(tiny_tokenizer)
    torch.manual_seed(1234)
    fresh = apply_lora(base, AdapterConfig(r=4, dropout=0.1))
    resumed = fit(fresh, FitData(ex, held), cfg, run_dir=tmp_path / "b", progress=False)
    assert resumed.resumed_from == 4
    assert resumed.losses == pytest.approx(ref.losses, rel=1e-6)
    assert [s for s, _ in resumed.eval_losses] == [s for s, _ in ref.eval_losses]
    assert [x for _, x in resumed.eval_losses] == pytest.approx([x for _, x in ref.eval_losses])
    assert resumed.best_eval_step == ref.best_eval_step
    assert resumed.epochs == pytest.approx(ref.epochs) == pytest.approx(3.0)
    for (n, a), (_, b) in zip(straight.named_parameters(), fresh.named_parameters(), strict=True):
        if a.requires_grad:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=n)


def test_a_checkpoint_of_other_settings_or_data_is_not_resumed(tiny_tokenizer, tmp_path):
    from instructkit.errors import ConfigError
    from instructkit.models import build_tiny_model

    ex = examples(tiny_tokenizer)
    cfg = TrainConfig(epochs=1, batch_tokens=48, lr=1e-2, save_every=1, seed=1)

    def run(c, data, run_dir):
        model = apply_lora(build_tiny_model(tiny_tokenizer), AdapterConfig(r=4))
        return fit(model, FitData(data), c, run_dir=tmp_path / run_dir, progress=False)

    run(cfg, ex, "a")
    with pytest.raises(ConfigError, match=r"lr: 0.01 -> 0.02.*resume=false"):
        run(cfg.model_copy(update={"lr": 2e-2}), ex, "a")
    with pytest.raises(ConfigError, match="the data differ"):
        run(cfg, ex[1:], "a")
    # checkpoint cadence and logging may change; the finished run resumes at its end
    again = run(cfg.model_copy(update={"save_every": 3, "log_every": 2}), ex, "a")
    assert again.resumed_from == again.total_steps
    # resume=false starts over whatever the checkpoint holds
    assert run(cfg.model_copy(update={"lr": 2e-2, "resume": False}), ex, "a").resumed_from is None


def test_no_half_written_checkpoint_is_trusted(tiny_model, tiny_tokenizer, tmp_path):
    run = tmp_path / "run"
    (run / ".tmp-ckpt-abc").mkdir(parents=True)
    (run / "checkpoint-00000009").mkdir()  # no state.json: incomplete
    assert latest_checkpoint(run) is None


def test_early_stopping_and_best_weights(tiny_model, tiny_tokenizer):
    ex = examples(tiny_tokenizer)
    held = [TokenizedExample(e.input_ids, e.labels) for e in ex[:4]]
    cfg = TrainConfig(
        epochs=20,
        batch_tokens=64,
        lr=0.5,
        warmup_ratio=0.0,
        eval_every=1,
        early_stopping_patience=2,
        grad_clip=None,
    )
    r = fit(tiny_model, FitData(ex, held), cfg, progress=False)  # lr far too high: eval loss rises
    assert r.stopped_early and r.steps < r.total_steps
    assert r.best_eval_loss == min(loss for _, loss in r.eval_losses)


def test_nan_loss_stops_with_step_and_hint(tiny_model, tiny_tokenizer):
    with torch.no_grad():
        tiny_model.model.norm.weight.fill_(math.nan)
    with pytest.raises(TrainingError, match="at step 0.*lower train.lr"):
        fit(tiny_model, FitData(examples(tiny_tokenizer)), TrainConfig(), progress=False)


def test_no_trainable_tokens_is_an_error(tiny_model):
    ex = [TokenizedExample([1, 2, 3], [-100, -100, -100])]
    with pytest.raises(TrainingError, match="no example"):
        fit(tiny_model, FitData(ex), TrainConfig(), progress=False)


def test_window_means_hand_computed():
    assert window_means([4.0, 2.0, 3.0, 1.0], k=2) == (3.0, 2.0, 2)
    assert window_means([5.0, 1.0]) == (5.0, 1.0, 1)  # a tenth of 2 steps: at least 1
    losses = [float(i) for i in range(100)]
    assert window_means(losses) == (4.5, 94.5, 10)
    assert window_means([float(i) for i in range(1000)])[2] == 20  # at most 20
    with pytest.raises(ValueError):
        window_means([])


def test_evaluates_before_the_first_step(tiny_model, tiny_tokenizer):
    ex = examples(tiny_tokenizer)
    events = []
    cfg = TrainConfig(max_steps=3, batch_tokens=64, lr=1e-3)
    r = fit(tiny_model, FitData(ex, ex[:4]), cfg, log=events.append, progress=False)
    assert [s for s, _ in r.eval_losses] == [0, 3]
    assert "eval_loss" in events[0] and events[0]["step"] == 0
    assert [e["step"] for e in events if "loss" in e] == [1, 2, 3]


def test_best_weights_compare_against_step_0(tiny_model, tiny_tokenizer):
    """When every step makes the eval loss worse, the untrained weights are the best."""
    ex = examples(tiny_tokenizer)
    before = {k: v.detach().clone() for k, v in tiny_model.named_parameters()}
    cfg = TrainConfig(
        epochs=20, batch_tokens=64, lr=0.5, warmup_ratio=0.0, eval_every=1,
        early_stopping_patience=2, grad_clip=None,
    )  # fmt: skip
    r = fit(tiny_model, FitData(ex, ex[:4]), cfg, progress=False)
    assert r.eval_losses[0][0] == 0
    assert all(loss > r.eval_losses[0][1] for _, loss in r.eval_losses[1:])
    assert r.best_eval_step == 0 and r.best_eval_loss == r.eval_losses[0][1]
    assert r.stopped_early and r.steps == 2  # two evaluations without improvement on step 0
    for k, v in tiny_model.named_parameters():
        assert torch.equal(v, before[k]), k


def test_epochs_are_those_trained(tiny_model, tiny_tokenizer):
    ex = examples(tiny_tokenizer)
    cfg = TrainConfig(max_steps=2, batch_tokens=64)
    per_epoch = len(plan_steps([len(e.input_ids) for e in ex], TrainConfig(batch_tokens=64)))
    assert per_epoch > 2
    r = fit(tiny_model, FitData(ex), cfg, progress=False)
    plan = plan_steps([len(e.input_ids) for e in ex], cfg)
    assert r.epochs == pytest.approx(sum(len(mb) for step in plan for mb in step) / len(ex))
    assert 0 < r.epochs < 1
    two = fit(tiny_model, FitData(ex), TrainConfig(epochs=2, batch_tokens=64), progress=False)
    assert two.epochs == pytest.approx(2.0)


def test_no_future_warning_from_lora_or_activation_checkpointing(tiny_model, tiny_tokenizer):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        model = apply_lora(tiny_model, AdapterConfig(r=4))
        cfg = TrainConfig(max_steps=1, batch_tokens=64, grad_checkpointing=True)
        fit(model, FitData(examples(tiny_tokenizer)), cfg, progress=False)
    assert model.get_base_model().is_activation_checkpointing


def test_trainable_state_is_a_copy(tiny_model):
    from instructkit.train.checkpoint import trainable_state

    saved = trainable_state(tiny_model)
    with torch.no_grad():
        tiny_model.model.norm.weight.add_(1.0)
    assert not torch.equal(saved["model.norm.weight"], tiny_model.model.norm.weight)
