import pytest
import torch

from instructkit.lm.base import ChatRequest
from instructkit.lm.local import LocalLM
from instructkit.models import build_tiny_model

PROMPTS = [
    "hi",
    "What is the capital of France? Answer with one word, please.",
    "The quick brown fox",
    "Translate to French: Good morning. Summarize the article in one sentence, then stop.",
    "yes",
]


def ask(text, **params):
    return ChatRequest.from_messages([{"role": "user", "content": text}], **params)


@pytest.fixture(scope="module")
def lm(tiny_tokenizer):
    # The random tiny model, with its residual branches scaled up so that greedy output
    # depends on the prompt (unscaled, it repeats the last prompt token whatever the prompt).
    model = build_tiny_model(tiny_tokenizer, seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in model.model.layers:
            for w in (layer.self_attn.o_proj.weight, layer.mlp.down_proj.weight):
                w.copy_(torch.randn(w.shape, generator=g) * 0.5)
    return LocalLM(model, tiny_tokenizer, batch_size=2, name="tiny")


def test_greedy_is_deterministic_and_prompt_dependent(lm):
    requests = [ask(p, max_tokens=8) for p in PROMPTS]
    first = [c.text for c in lm.complete(requests)]
    assert [c.text for c in lm.complete(requests)] == first
    assert len(set(first)) > 1


def test_batched_results_come_back_in_input_order(lm, tiny_tokenizer):
    requests = [ask(p, max_tokens=8) for p in PROMPTS]  # mixed lengths, batches of 2
    batched = lm.complete(requests)
    alone = [lm.complete([r])[0] for r in requests]
    assert [c.texts for c in batched] == [c.texts for c in alone]
    rendered = [
        tiny_tokenizer.apply_chat_template(r.chat(), tokenize=False, add_generation_prompt=True)
        for r in requests
    ]
    lengths = [len(tiny_tokenizer(t, add_special_tokens=False)["input_ids"]) for t in rendered]
    assert [c.prompt_tokens for c in batched] == lengths


def test_usage_and_length_finish_reason(lm):
    [c] = lm.complete([ask("hi", max_tokens=5)])
    assert c.completion_tokens == 5
    assert c.finish_reasons == ["length"]
    assert c.cached is False


def test_greedy_n_returns_copies_and_counts_their_tokens(lm):
    [one] = lm.complete([ask("hi", max_tokens=6)])
    [three] = lm.complete([ask("hi", max_tokens=6, n=3)])
    assert three.texts == one.texts * 3
    assert three.completion_tokens == 3 * one.completion_tokens
    assert three.finish_reasons == one.finish_reasons * 3


def test_seeded_sampling_is_reproducible_and_leaves_global_rng_alone(lm):
    request = ask("hi", temperature=1.0, n=3, seed=7, max_tokens=8)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    [a] = lm.complete([request])
    assert torch.equal(torch.rand(1), expected_next)
    [b] = lm.complete([request])
    [other] = lm.complete([ask("hi", temperature=1.0, n=3, seed=8, max_tokens=8)])
    assert len(a.texts) == 3 and len(set(a.texts)) > 1
    assert a.texts == b.texts
    assert other.texts != a.texts


def test_mixed_sampling_parameters_are_grouped(lm):
    greedy = [ask(p, max_tokens=6) for p in PROMPTS[:3]]
    sampled = ask("hi", temperature=0.9, top_p=0.9, seed=3, max_tokens=6, n=2)
    out = lm.complete([greedy[0], sampled, greedy[1], greedy[2]])
    assert [c.texts for c in out] == [
        lm.complete([greedy[0]])[0].texts,
        lm.complete([sampled])[0].texts,
        lm.complete([greedy[1]])[0].texts,
        lm.complete([greedy[2]])[0].texts,
    ]


def test_stop_string_cuts_text_and_ends_generation(lm):
    base = ask("hi", temperature=1.0, seed=1, max_tokens=16)
    [full] = lm.complete([base])
    text = full.text
    stop = next(
        text[i : i + 2]
        for i in range(2, len(text) - 1)
        if text[i : i + 2].isascii() and text[i : i + 2].isalnum()
    )
    [cut] = lm.complete([ask("hi", temperature=1.0, seed=1, max_tokens=16, stop=[stop])])
    assert cut.text == text[: text.find(stop)]
    assert cut.finish_reasons == ["stop"]
    assert cut.completion_tokens < full.completion_tokens


def test_progress_bar_runs(lm, capsys):
    out = lm.complete([ask("hi", max_tokens=2)], progress=True)
    assert len(out) == 1
    assert "tiny" in capsys.readouterr().err


CHOICES = ["1", "7", "10", "Paris", "Lyon"]


def _plain_logprob(lm, tokenizer, request, prefix, choice):
    """The choice's log-probability from one unpadded forward pass over prompt+prefix+choice,
    summed token by token; also the number of tokens of the choice."""
    text = lm.template.render(request.chat(), True) + prefix
    context = tokenizer(text, add_special_tokens=False)["input_ids"]
    full = tokenizer(text + choice, add_special_tokens=False)["input_ids"]
    assert full[: len(context)] == context
    with torch.no_grad():
        logp = lm.model(torch.tensor([full])).logits[0].float().log_softmax(-1)  # (T, V)
    tokens = full[len(context) :]
    return sum(logp[len(context) - 1 + j, t].item() for j, t in enumerate(tokens)), len(tokens)


def test_choice_logprobs_equal_the_token_sums_of_a_plain_forward_pass(lm, tiny_tokenizer):
    requests = [ask(p) for p in PROMPTS]  # mixed lengths: padded rows, several forward passes
    got = lm.choice_logprobs(requests, "Rating: [[", CHOICES)
    lengths = set()
    for request, logprobs in zip(requests, got, strict=True):
        assert set(logprobs) == set(CHOICES)
        for choice in CHOICES:
            expected, n = _plain_logprob(lm, tiny_tokenizer, request, "Rating: [[", choice)
            lengths.add(n)
            assert logprobs[choice] == pytest.approx(expected, abs=1e-4)
    assert max(lengths) > 1 and min(lengths) == 1  # multi-token and single-token choices
    assert got[1] != got[2]  # depends on the prompt
    alone = lm.choice_logprobs(requests[3:4], "Rating: [[", CHOICES)
    assert alone[0] == pytest.approx(got[3], abs=1e-4)
    wide = LocalLM(lm.model, tiny_tokenizer, batch_size=64)  # all requests in one forward pass
    together = wide.choice_logprobs(requests, "Rating: [[", CHOICES)
    for a, b in zip(together, got, strict=True):
        assert a == pytest.approx(b, abs=1e-4)


def test_probability_grading_with_a_tiny_model_always_gives_a_verdict(lm):
    from instructkit.evaluate.judge import GRADES, grade

    items = [(p, "an answer") for p in PROMPTS]
    result = grade(lm, items, scoring="probabilities", progress=False)
    assert result.unparseable == 0
    for g in result.grades:
        assert 1.0 <= g.score <= 10.0
        assert set(g.probabilities) == set(GRADES)
        assert sum(g.probabilities.values()) == pytest.approx(1.0)
        expected = sum(int(c) * p for c, p in g.probabilities.items())
        assert g.score == pytest.approx(expected)


def test_abandoned_requests_are_not_generated(lm):
    import threading

    gone, waiting = threading.Event(), threading.Event()
    gone.set()
    requests = [ask("hi", max_tokens=6), ask("The quick brown fox", max_tokens=6)]
    [alone] = lm.complete_abandonable(requests[:1], [gone])  # a batch nobody waits for
    assert alone.finish_reasons == ["abandoned"] and alone.completion_tokens == 0
    out = lm.complete_abandonable(requests, [gone, waiting])  # one batch of 2
    assert out[0].finish_reasons == ["abandoned"] and out[0].completion_tokens == 1
    assert out[1].texts == lm.complete(requests[1:])[0].texts  # the other is answered as usual
    assert out[1].completion_tokens == 6
