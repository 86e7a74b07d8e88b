import math

import pytest
import sacrebleu
import torch

from instructkit.data.records import Conversation, Message
from instructkit.data.templates import get_template
from instructkit.data.tokenize import IGNORE_INDEX, tokenize_conversation
from instructkit.errors import ConfigError
from instructkit.evaluate.metrics import (
    METRICS,
    MetricResult,
    compute_metric,
    corpus_bleu,
    exact_match,
    get_metric,
    label_match,
    perplexity,
    response_loss,
    rouge_l,
    sentence_bleu,
    sentence_chrf,
    token_f1,
)

# --- exact match, accuracy, F1 (SQuAD-style, hand-computed) ----------------------------------


@pytest.mark.parametrize(
    ("prediction", "references", "expected"),
    [
        ("the Denver Broncos", "Denver Broncos", 1.0),  # article dropped
        ("Denver Broncos!", ["Broncos", "Denver Broncos"], 1.0),  # any reference
        ("Broncos", "Denver Broncos", 0.0),  # no partial credit
        ("Denver Broncos\nThey won Super Bowl 50.", "Denver Broncos", 1.0),  # first line
        ("the", "a", 1.0),  # both normalize to "": SQuAD counts a match
        ("", "Denver", 0.0),
    ],
)
def test_exact_match(prediction, references, expected):
    assert exact_match(prediction, references) == expected


@pytest.mark.parametrize(
    ("prediction", "references", "expected"),
    [
        ("Broncos won", "Denver Broncos", 0.5),  # 1 common: P = R = 1/2
        ("the cat sat on the mat", "cat on mat", 6 / 7),  # 3 common: P = 3/4, R = 1
        ("red red blue", "red blue", 0.8),  # bag overlap counts red once: P = 2/3, R = 1
        ("Broncos won", ["Carolina", "Denver Broncos", "Broncos"], 2 / 3),  # best: P=1/2, R=1
        ("Carolina Panthers", "Denver Broncos", 0.0),
        ("", "Denver", 0.0),
        ("The", "an", 1.0),  # both empty after normalization
    ],
)
def test_token_f1(prediction, references, expected):
    assert token_f1(prediction, references) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        (" Positive\n", "positive", 1.0),
        ("NOT   entailment", "not entailment", 1.0),
        ("positive.", "positive", 0.0),  # punctuation is not ignored for labels
        ("negative", "positive", 0.0),
    ],
)
def test_label_match(prediction, reference, expected):
    assert label_match(prediction, reference) == expected


def test_mean_metrics_aggregate_per_item_scores():
    preds = ["Denver Broncos", "Broncos won", "x"]
    refs = ["Denver Broncos", "Denver Broncos", ["y", "x"]]
    em = compute_metric("exact_match", preds, refs)
    assert em == MetricResult("exact_match", 2 / 3, [1.0, 0.0, 1.0])
    f1 = compute_metric("f1", preds, refs)
    assert f1.per_item == [1.0, 0.5, 1.0]
    assert f1.score == pytest.approx(2.5 / 3)
    acc = compute_metric("accuracy", ["Yes ", "no"], ["yes", "yes"])
    assert (acc.score, acc.per_item) == (0.5, [1.0, 0.0])


# --- ROUGE-L (hand LCS) ----------------------------------------------------------------------


def test_rouge_l_hand_lcs():
    # LCS of "the cat sat on the mat" / "the cat is on the mat" = "the cat on the mat" (5 of 6)
    assert rouge_l("the cat sat on the mat", "The cat is on the mat.") == pytest.approx(5 / 6)
    # "b d e" vs "a b c d": LCS "b d" = 2, P = 2/3, R = 2/4, F = 2PR/(P+R) = 4/7
    assert rouge_l("b d e", "a b c d") == pytest.approx(4 / 7)
    assert rouge_l("b d e", ["a b c d", "b d e"]) == 1.0  # best reference
    assert rouge_l("", "a b") == 0.0
    result = compute_metric("rouge_l", ["b d e", "x"], ["a b c d", "y"])
    assert result.per_item == pytest.approx([4 / 7, 0.0])
    assert result.score == pytest.approx(2 / 7)


# --- BLEU and chrF agree with sacrebleu ------------------------------------------------------

PREDS = ["the cat sat on the mat", "a quick brown fox jumps", "hello there world"]
REFS_1 = ["the cat is on the mat", "the quick brown fox jumped", "hello world"]
REFS_2 = ["a cat sat on a mat", "a fast brown fox jumps", "hi there world"]


def test_bleu_matches_sacrebleu_single_and_multiple_references():
    single = compute_metric("bleu", PREDS, REFS_1)
    assert single.score == pytest.approx(sacrebleu.corpus_bleu(PREDS, [REFS_1]).score)
    assert single.per_item == pytest.approx(
        [sacrebleu.sentence_bleu(p, [r]).score for p, r in zip(PREDS, REFS_1, strict=True)]
    )
    multi = compute_metric("bleu", PREDS, [list(r) for r in zip(REFS_1, REFS_2, strict=True)])
    assert multi.score == pytest.approx(sacrebleu.corpus_bleu(PREDS, [REFS_1, REFS_2]).score)
    assert multi.score > single.score  # a second reference can only add matches here
    assert sentence_bleu(PREDS[0], [REFS_1[0], REFS_2[0]]) == pytest.approx(
        sacrebleu.sentence_bleu(PREDS[0], [REFS_1[0], REFS_2[0]]).score
    )


def test_bleu_with_a_varying_number_of_references():
    refs = [[REFS_1[0], REFS_2[0]], REFS_1[1], [REFS_1[2]]]
    expected = sacrebleu.corpus_bleu(PREDS, [REFS_1, [REFS_2[0], None, None]]).score
    assert corpus_bleu(PREDS, refs) == pytest.approx(expected)
    assert compute_metric("bleu", REFS_1, REFS_1).score == pytest.approx(100.0)


def test_chrf_matches_sacrebleu():
    result = compute_metric("chrf", PREDS, REFS_1)
    assert result.score == pytest.approx(sacrebleu.corpus_chrf(PREDS, [REFS_1]).score)
    assert result.per_item == pytest.approx(
        [sacrebleu.sentence_chrf(p, [r]).score for p, r in zip(PREDS, REFS_1, strict=True)]
    )
    multi = [list(r) for r in zip(REFS_1, REFS_2, strict=True)]
    assert compute_metric("chrf", PREDS, multi).score == pytest.approx(
        sacrebleu.corpus_chrf(PREDS, [REFS_1, REFS_2]).score
    )
    assert sentence_chrf("abc", "abc") == pytest.approx(100.0)


# --- registry and errors ---------------------------------------------------------------------


def test_registry_names_and_unknown_metric():
    assert set(METRICS) == {"exact_match", "accuracy", "f1", "bleu", "chrf", "rouge_l"}
    with pytest.raises(ConfigError) as err:
        get_metric("meteor")
    assert "meteor" in str(err.value)
    assert all(name in str(err.value) for name in METRICS)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_length_mismatch_names_the_lengths(name):
    with pytest.raises(ValueError, match="3 predictions but 2 references"):
        compute_metric(name, ["a", "b", "c"], ["a", "b"])


def test_item_without_reference_and_empty_corpus():
    with pytest.raises(ValueError, match="no reference"):
        compute_metric("f1", ["a"], [[]])
    with pytest.raises(ValueError, match="no predictions"):
        compute_metric("exact_match", [], [])


def test_metric_result_to_dict():
    d = compute_metric("exact_match", ["a"], ["a"]).to_dict()
    assert d == {"name": "exact_match", "score": 1.0, "per_item": [1.0]}


# --- response loss and perplexity ------------------------------------------------------------


def _conv(*turns: str, train: bool | None = None) -> Conversation:
    roles = ["user", "assistant"] * len(turns)
    return Conversation([Message(r, t, train=train) for r, t in zip(roles, turns, strict=False)])


CONVERSATIONS = [
    _conv("What is the capital of France?", "Paris"),
    _conv("Hello", "Hello world! How are you today?"),
    _conv("Two plus three?", "five", "And seven?", "No. Seven is not an even number."),
]


def _manual_loss(model, tokenizer, conv):
    """Mean NLL of the labelled tokens from full logits of one unpadded sequence."""
    ex = tokenize_conversation(conv, get_template("tokenizer", tokenizer), tokenizer)
    ids = torch.tensor([ex.input_ids])
    labels = torch.tensor(ex.labels)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)  # (T, V)
    pos = (labels[1:] != IGNORE_INDEX).nonzero().flatten()  # position t predicts t + 1
    nll = -logp[pos, labels[pos + 1]]
    return nll.mean().item(), len(pos)


def test_response_loss_equals_manual_computation(tiny_model, tiny_tokenizer):
    tiny_model.train()
    got = response_loss(tiny_model, tiny_tokenizer, CONVERSATIONS, batch_size=2)  # pads a batch
    assert tiny_model.training  # mode restored
    for conv, (nll, n) in zip(CONVERSATIONS, got, strict=True):
        want_nll, want_n = _manual_loss(tiny_model, tiny_tokenizer, conv)
        assert n == want_n > 0
        assert nll == pytest.approx(want_nll, rel=1e-5)
    total = sum(nll * n for nll, n in got) / sum(n for _, n in got)
    assert perplexity(got) == pytest.approx(math.exp(total))
    unbatched = response_loss(tiny_model, tiny_tokenizer, CONVERSATIONS, batch_size=1)
    assert [n for _, n in unbatched] == [n for _, n in got]
    assert [x for x, _ in unbatched] == pytest.approx([x for x, _ in got], rel=1e-5)


def test_response_loss_without_scored_tokens(tiny_model, tiny_tokenizer):
    got = response_loss(tiny_model, tiny_tokenizer, [_conv("Hi", "Hello", train=False)])
    assert got[0][1] == 0 and math.isnan(got[0][0])


def test_perplexity_is_token_weighted():
    assert perplexity([(1.0, 1), (2.0, 3), (math.nan, 0)]) == pytest.approx(math.exp(7 / 4))
    with pytest.raises(ValueError, match="no scored tokens"):
        perplexity([(math.nan, 0)])
