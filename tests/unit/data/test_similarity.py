import random
from collections import Counter

import numpy as np
import pytest

from instructkit.data.similarity import (
    MinHasher,
    NearDupIndex,
    candidate_probability,
    choose_lsh_params,
    exact_duplicates,
    exhaustive_filter,
    filter_near_duplicates,
    jaccard_lower_bound,
    lcs_length,
    normalize_for_exact,
    rouge_l_f,
    rouge_tokens,
    synthetic_instructions,
)
from instructkit.errors import ConfigError, DataFormatError


def plain_lcs(a, b):
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def multiset_jaccard(a, b):
    inter = sum((Counter(a) & Counter(b)).values())
    return inter / (len(a) + len(b) - inter)


# --- tokens and ROUGE-L ---


def test_rouge_tokens_follow_rouge_score_default_tokenizer():
    assert rouge_tokens("Hello, World! It's 2023.") == ["hello", "world", "it", "s", "2023"]
    assert rouge_tokens("snake_case  x-ray\tTAB") == ["snake", "case", "x", "ray", "tab"]
    assert rouge_tokens("Café déjà vu") == ["caf", "d", "j", "vu"]  # non-ASCII letters split
    assert rouge_tokens(" ?! ") == []


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("ABCBDAB", "BDCABA", 4),  # CLRS: BCBA
        ("the cat sat on the mat".split(), "the cat is on a mat".split(), 4),
        ("abc", "", 0),
        ("", "", 0),
        ("aaaa", "aa", 2),
        ("abcdef", "fedcba", 1),
        ("xyz", "abc", 0),
    ],
)
def test_lcs_length_hand_computed(a, b, expected):
    assert lcs_length(list(a), list(b)) == expected
    assert lcs_length(list(b), list(a)) == expected


def test_lcs_length_matches_plain_dp_on_random_sequences():
    rng = random.Random(0)
    for _ in range(600):
        alphabet = rng.randint(1, 6)
        a = [rng.randrange(alphabet) for _ in range(rng.randint(0, 90))]
        b = [rng.randrange(alphabet) for _ in range(rng.randint(0, 90))]
        assert lcs_length(a, b) == plain_lcs(a, b), (a, b)


def test_lcs_length_on_long_sequences():
    rng = random.Random(2)
    a = [rng.randrange(50) for _ in range(600)]
    b = [x for x in a if rng.random() < 0.9] + [rng.randrange(50) for _ in range(100)]
    assert lcs_length(a, b) == plain_lcs(a, b)


def test_rouge_l_f_hand_computed():
    # LCS "the cat on mat" = 4 of 6 and 6 tokens: P = R = F = 2/3
    cat = rouge_l_f(rouge_tokens("The cat sat on the mat."), rouge_tokens("the cat is on a mat"))
    assert cat == pytest.approx(2 / 3)
    # target 4 tokens, prediction 2, LCS 2: P = 1, R = 1/2, F = 2*1*0.5/1.5 = 2/3
    assert rouge_l_f(["a", "b", "c", "d"], ["a", "c"]) == pytest.approx(2 / 3)
    assert rouge_l_f(["a", "c"], ["a", "b", "c", "d"]) == pytest.approx(2 / 3)
    assert rouge_l_f(["a"], ["a"]) == 1.0
    assert rouge_l_f([], ["a"]) == 0.0 and rouge_l_f(["a"], []) == 0.0
    assert rouge_l_f(["a", "b"], ["c"]) == 0.0
    # 10 tokens, 3 substituted: LCS 7, F = 0.7 exactly (the Self-Instruct boundary)
    ten = "one two three four five six seven eight nine ten".split()
    assert rouge_l_f(ten, ten[:7] + ["x", "y", "z"]) == 0.7


def test_rouge_l_bound_on_multiset_jaccard_holds_on_random_pairs():
    rng = random.Random(1)
    bound = jaccard_lower_bound(0.7)
    assert bound == pytest.approx(0.7 / 1.3)
    seen = 0
    for _ in range(3000):
        a = [rng.randrange(5) for _ in range(rng.randint(1, 15))]
        b = [x if rng.random() < 0.8 else rng.randrange(5) for x in a]
        if rouge_l_f(a, b) >= 0.7:
            seen += 1
            assert multiset_jaccard(a, b) >= bound - 1e-12, (a, b)
    assert seen > 500
    # and it is tight: 10 vs 10 tokens, 3 substituted
    ten = list(range(10))
    assert multiset_jaccard(ten, ten[:7] + [10, 11, 12]) == pytest.approx(bound)


# --- LSH parameters and MinHash ---


def test_choose_lsh_params_default_layout():
    p = choose_lsh_params(0.7, 128)
    assert (p.bands, p.rows, p.min_hits) == (42, 3, 2)
    assert p.recall == pytest.approx(candidate_probability(0.7 / 1.3, 42, 3, 2))
    assert p.recall >= 0.99
    assert candidate_probability(0.7 / 1.3, 32, 4, 1) < 0.99  # why 4 rows do not fit in 128


def test_choose_lsh_params_with_bands_and_impossible_layouts():
    p = choose_lsh_params(0.7, 128, bands=64)
    assert (p.bands, p.rows) == (64, 2) and p.recall >= 0.99
    assert candidate_probability(0.5, 10, 2, 1) == pytest.approx(1 - 0.75**10)
    with pytest.raises(ConfigError, match="num_perm"):
        choose_lsh_params(0.7, 128, bands=16)  # 8 rows per band: recall far below 0.99
    with pytest.raises(ConfigError):
        NearDupIndex(threshold=0.0)
    with pytest.raises(ConfigError):
        NearDupIndex(num_perm=128, bands=200)


def test_minhash_is_deterministic_and_estimates_multiset_jaccard():
    texts = [["a", "a", "a", "b"], ["a", "a", "a", "c"], ["x", "y"], []]
    sig = MinHasher(1024, seed=3).signatures(texts)
    assert sig.shape == (4, 1024) and sig.dtype == np.uint64
    assert np.array_equal(sig, MinHasher(1024, seed=3).signatures(texts))
    assert not np.array_equal(sig, MinHasher(1024, seed=4).signatures(texts))
    # multiset Jaccard 3/5 (the plain token sets would give 1/3)
    assert np.mean(sig[0] == sig[1]) == pytest.approx(0.6, abs=0.06)
    assert np.mean(sig[0] == sig[2]) < 0.01
    assert (sig[3] == 4294967291).all()  # empty: sentinel, matches nothing real


def test_pairs_at_the_bound_become_candidates_at_the_promised_rate():
    # ROUGE-L exactly 0.7 and Jaccard exactly 7/13: the worst case the layout was chosen for
    rng = random.Random(3)
    found = 0
    for seed in range(400):
        index = NearDupIndex(seed=seed)
        words = [f"w{rng.randrange(10**9)}" for _ in range(13)]
        index.add(" ".join(words[:10]))
        found += index.candidates(" ".join(words[:7] + words[10:])) == [0]
    assert found / 400 >= 0.97, (
        f"candidate rate {found / 400:.3f}, predicted {index.params.recall:.3f}"
    )


# --- the index ---


def test_index_query_add_and_self_instruct_rule():
    index = NearDupIndex(threshold=0.7)
    assert index.query("anything") == (0.0, None)
    assert index.add_if_novel("Write a short poem about the sea and the moon.") == (True, 0.0, None)
    assert index.add("Explain how photosynthesis works in simple terms.") == 1
    # 10 vs 10 tokens, LCS 8: F = 0.8 -> rejected, match at position 0
    added, sim, match = index.add_if_novel("Write a long poem about the sea and the sun.")
    assert (added, match) == (False, 0) and sim == pytest.approx(0.8)
    assert index.query("explain how photosynthesis works in simple terms") == (1.0, 1)
    added, sim, _ = index.add_if_novel("Give me three reasons to learn Rust.")
    assert added and sim < 0.7 and len(index) == 3
    assert index.add_if_novel("!!!") == (True, 0.0, None)  # no tokens: never a duplicate


def test_index_rejects_at_exactly_the_threshold():
    index = NearDupIndex(threshold=0.7)
    index.add("one two three four five six seven eight nine ten")
    added, sim, match = index.add_if_novel("one two three four five six seven x y z")
    assert (added, sim, match) == (False, 0.7, 0)
    added, sim, _ = index.add_if_novel("one two three four five six x y z w")  # 0.6
    assert added and sim < 0.7  # below the threshold the score is only a lower bound


HAND_MADE = [
    "Write a poem about the sea.",
    "write a poem about the sea!",  # exact after tokenizing -> dropped (1.0 vs 0)
    "Write a poem about the ocean.",  # 6 vs 6, LCS 5 -> 0.833 vs 0
    "Summarize the following article in three sentences.",
    "Summarize the following article in two sentences.",  # 0.857 vs 3
    "Translate the sentence into French.",
    "Translate this sentence into German, please.",  # LCS 3 of 5+6: 0.545 -> kept
    "List five fruits that are red.",
    "",
    "",
    "List five vegetables that are green and red.",  # LCS 5 of 6+8: 0.714 vs 7
    "a b c d e f g h i j",
    "a b c d e f g x y z",  # 0.7 vs 11 -> dropped
    "k b c d e f g h i j",  # 0.9 vs 11 (the match is only ever a kept text)
]


def test_filter_matches_exhaustive_exactly_on_hand_made_cases():
    expected_dropped = [(1, 0, 1.0), (2, 0, 5 / 6), (4, 3, 6 / 7), (10, 7, 5 / 7), (12, 11, 0.7)]
    expected_dropped.append((13, 11, 0.9))
    kept, dropped = exhaustive_filter(HAND_MADE)
    assert kept == [0, 3, 5, 6, 7, 8, 9, 11]
    assert [(i, j) for i, j, _ in dropped] == [(i, j) for i, j, _ in expected_dropped]
    assert [s for *_, s in dropped] == pytest.approx([s for *_, s in expected_dropped])
    for seed in range(5):
        assert filter_near_duplicates(HAND_MADE, seed=seed) == (kept, dropped)


def test_filter_breaks_ties_toward_the_first_kept_text():
    texts = ["a b c d x", "a b c d y", "a b c d z"]  # the third is 0.8 from both
    kept, dropped = filter_near_duplicates(texts, threshold=0.85)
    assert kept == [0, 1, 2] and dropped == []
    kept, dropped = filter_near_duplicates(texts + ["a b c d w"], threshold=0.8)
    assert kept == [0] and [(i, j) for i, j, _ in dropped] == [(1, 0), (2, 0), (3, 0)]
    assert exhaustive_filter(texts + ["a b c d w"], threshold=0.8) == (kept, dropped)


def test_filter_makes_the_exhaustive_decisions_on_2000_synthetic_instructions():
    texts = synthetic_instructions(2000, seed=7)
    kept_ref, dropped_ref = exhaustive_filter(texts)
    kept, dropped = filter_near_duplicates(texts)
    near = [s for *_, s in dropped_ref if s < 0.8]
    assert len(dropped_ref) > 200 and len(near) > 50  # many decisions sit near the threshold
    ref, got = set(kept_ref), set(kept)
    agreement = sum((i in ref) == (i in got) for i in range(len(texts))) / len(texts)
    ref_drop = {i for i, *_ in dropped_ref}
    recall = len(ref_drop & {i for i, *_ in dropped}) / len(ref_drop)
    msg = f"agreement {agreement:.4f}, recall of exhaustive drops {recall:.4f}"
    assert agreement >= 0.99 and recall >= 0.99, msg
    assert all(s >= 0.7 for *_, s in dropped), "a drop below the threshold is a false positive"


def test_filter_rejects_non_strings_with_the_row():
    with pytest.raises(DataFormatError, match="row 1"):
        filter_near_duplicates(["ok", None])


# --- exact duplicates ---


def test_normalize_for_exact():
    assert normalize_for_exact("  Hello,   WORLD!! ") == "hello world"
    assert normalize_for_exact("ﬁle_name\tStraße") == "file name strasse"  # NFKC + casefold
    assert normalize_for_exact("...") == ""


def test_exact_duplicates_keeps_first_occurrence():
    texts = ["Hello world", "hello, world!", "Hello there", "HELLO   WORLD", "hello there."]
    assert exact_duplicates(texts) == ([0, 2], [(1, 0), (3, 0), (4, 2)])
    with pytest.raises(DataFormatError, match="row 0"):
        exact_duplicates([3])
