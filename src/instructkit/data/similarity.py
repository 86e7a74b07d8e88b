"""ROUGE-L near-duplicate filtering (the Self-Instruct rule) in near-linear time, and exact dedup.

Self-Instruct (Wang et al. 2022, "Self-Instruct: Aligning Language Models with Self-Generated
Instructions") adds a new instruction to the pool only when its ROUGE-L similarity with every
instruction already in the pool is below 0.7. Done naively that is one LCS per (new, pooled) pair,
quadratic in the pool size. Here the pool is a :class:`NearDupIndex`: MinHash signatures (Broder
1997) with LSH banding propose candidates, and only the candidates get the exact ROUGE-L. Usage::

    kept, dropped = filter_near_duplicates(instructions)  # first occurrence wins
    index = NearDupIndex(threshold=0.7)
    accepted, sim, match = index.add_if_novel("Write a poem about the sea.")

**Why candidate recall is at least 0.99.** ROUGE-L F1 of token lists a, b with LCS length L is
2PR/(P+R) = 2L/(|a|+|b|), so F >= t gives L >= t(|a|+|b|)/2. The LCS is a common sub-multiset,
so the multiset intersection I of the two token bags is >= L, and their multiset Jaccard is
J = I/(|a|+|b|-I) >= L/(|a|+|b|-L) >= t/(2-t) (0.538 at t=0.7; tight: 10 tokens each, 3
substituted). MinHash runs over the shingles (token, k-th occurrence of that token), whose set
Jaccard equals the multiset Jaccard (plain token sets do not: "a a a b" vs "a a a c"). A band of
r rows collides with probability J**r, independently over bands, so a pair is a candidate (it
collides in at least m of b bands) with probability P(Binomial(b, J**r) >= m), increasing in J.
:func:`choose_lsh_params` picks the largest r, then the largest m, with that probability >= 0.99
at J = t/(2-t): for num_perm=128 and t=0.7 that is b=42 bands of r=3 rows and m=2 hits (0.993).
Word n-grams with n >= 2 were rejected: an LCS in short runs guarantees only
L - (n-1)(1 + |a|+|b| - 2L) shared n-grams, 0.05(|a|+|b|) - 1 for n=2 at t=0.7: no useful
bound. Candidates are then scored exactly, so there are no false positives; misses are the only
error, and the unit tests and ``benchmarks/dedup_bench.py`` measure them against brute force.

The decision rule is ``sim >= threshold`` (the paper's "added only when less than 0.7"; the
released code rejects on ``> 0.7``). Tokens follow the ``rouge_score`` package's default
tokenizer without stemming, as Self-Instruct uses it.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from instructkit.errors import ConfigError, DataFormatError

__all__ = [
    "rouge_tokens",
    "lcs_length",
    "rouge_l_f",
    "LSHParams",
    "jaccard_lower_bound",
    "candidate_probability",
    "choose_lsh_params",
    "MinHasher",
    "NearDupIndex",
    "filter_near_duplicates",
    "exhaustive_filter",
    "normalize_for_exact",
    "exact_duplicates",
    "synthetic_instructions",
]

_TOKEN_RE = re.compile(r"[a-z0-9]+")
_PRIME = 4294967291  # largest prime < 2**32: (a*x + b) with a, x, b < p fits in uint64
_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1
_CHUNK_SHINGLES = 1 << 15  # rows of the (shingles, num_perm) hash matrix computed at once


# --- ROUGE-L ---------------------------------------------------------------------------------


def rouge_tokens(text: str) -> list[str]:
    """Lowercase and split on anything that is not [a-z0-9] (``rouge_score``, no stemmer)."""
    return _TOKEN_RE.findall(text.lower())


def _token_masks(seq: Sequence[Hashable]) -> dict[Hashable, int]:
    """Bit i of ``masks[x]`` is set where ``seq[i] == x``."""
    masks: dict[Hashable, int] = {}
    bit = 1
    for x in seq:
        masks[x] = masks.get(x, 0) | bit
        bit <<= 1
    return masks


def _token_bag(tokens: Iterable[str]) -> frozenset[str]:
    """The multiset as a set: the k-th repeat of a token t (k >= 1) becomes "t k"."""
    seen: dict[str, int] = {}
    out = []
    for t in tokens:
        k = seen.get(t, 0)
        seen[t] = k + 1
        out.append(f"{t} {k}" if k else t)
    return frozenset(out)


def _lcs_from_masks(masks: Iterable[int], width: int) -> int:
    """Bit-parallel LCS (Allison & Dix 1986; Hyyro 2004) over a ``width``-item sequence A.

    ``masks`` holds, for each item of the other sequence in order, the bits of A equal to it
    (items absent from A leave the state unchanged and can be left out). V starts all ones;
    each step V' = (V + U) | (V - U) with U = V & mask; the zero bits of V count the LCS.
    """
    full = (1 << width) - 1
    v = full
    for m in masks:
        u = v & m
        v = ((v + u) | (v - u)) & full
    return width - v.bit_count()


def lcs_length(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Length of the longest common subsequence: len(min) big-int steps of len(max) bits."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    masks = _token_masks(a)
    return _lcs_from_masks([masks[x] for x in b if x in masks], len(a))


def _f_from_lcs(lcs: int, len_target: int, len_prediction: int) -> float:
    """F1 exactly as ``rouge_score`` computes it (same float operations, so same ties)."""
    precision = lcs / len_prediction
    recall = lcs / len_target
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def rouge_l_f(a_tokens: Sequence[str], b_tokens: Sequence[str]) -> float:
    """ROUGE-L F1 with ``a`` as the target (reference) and ``b`` as the prediction.

    P = lcs/len(b), R = lcs/len(a), F = 2PR/(P+R): symmetric in a and b; 0.0 if either is empty.
    Self-Instruct scores the new instruction as the target against each pooled one.
    """
    if not a_tokens or not b_tokens:
        return 0.0
    return _f_from_lcs(lcs_length(a_tokens, b_tokens), len(a_tokens), len(b_tokens))


# --- LSH parameters --------------------------------------------------------------------------


@dataclass(frozen=True)
class LSHParams:
    """A banding layout and the candidate recall it guarantees at the threshold's Jaccard."""

    bands: int
    rows: int
    min_hits: int  # a pair is a candidate when it collides in at least this many bands
    jaccard_bound: float  # multiset Jaccard implied by ROUGE-L >= threshold
    recall: float  # candidate probability at jaccard_bound (the worst case)


def jaccard_lower_bound(threshold: float) -> float:
    """Smallest multiset Jaccard of two token lists whose ROUGE-L F1 is >= threshold: t/(2-t)."""
    return threshold / (2 - threshold)


def candidate_probability(jaccard: float, bands: int, rows: int, min_hits: int) -> float:
    """P(Binomial(bands, jaccard**rows) >= min_hits): chance that a pair becomes a candidate."""
    p = jaccard**rows
    miss = sum(math.comb(bands, k) * p**k * (1 - p) ** (bands - k) for k in range(min_hits))
    return max(0.0, 1.0 - miss)


def choose_lsh_params(
    threshold: float, num_perm: int, bands: int | None = None, target_recall: float = 0.99
) -> LSHParams:
    """Largest rows per band (fewest bucket hits), then most required hits, meeting the recall.

    With ``bands`` given, rows = num_perm // bands and only the required hits are chosen.
    """
    j0 = jaccard_lower_bound(threshold)
    row_options = [num_perm // bands] if bands else range(num_perm, 0, -1)
    for rows in row_options:
        b = bands or num_perm // rows
        if rows < 1 or candidate_probability(j0, b, rows, 1) < target_recall:
            continue
        m = 1
        while m < b and candidate_probability(j0, b, rows, m + 1) >= target_recall:
            m += 1
        return LSHParams(b, rows, m, j0, candidate_probability(j0, b, rows, m))
    raise ConfigError(
        f"num_perm={num_perm} with bands={bands} cannot reach candidate recall {target_recall} "
        f"at ROUGE-L threshold {threshold} (Jaccard {j0:.3f}).",
        fix="use more permutations (num_perm), more bands, or leave bands unset",
    )


# --- MinHash ---------------------------------------------------------------------------------


def _stable_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")


class MinHasher:
    """MinHash over (token, occurrence) shingles with h(x) = (a*x + b) mod p, p = 2**32 - 5.

    Tokens are hashed once per call with blake2b (stable across runs, unlike ``hash()``); the
    k-th repeat of a token is mixed in so that bags, not sets, are compared. Seeded by ``seed``.
    """

    def __init__(self, num_perm: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.a = rng.integers(1, _PRIME, size=num_perm, dtype=np.uint64)
        self.b = rng.integers(0, _PRIME, size=num_perm, dtype=np.uint64)

    def signatures(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """(n, num_perm) uint64 minima; an empty token list keeps the sentinel p everywhere."""
        out = np.full((len(token_lists), self.num_perm), _PRIME, dtype=np.uint64)
        start = 0
        while start < len(token_lists):
            stop, total = start, 0
            while stop < len(token_lists) and total < _CHUNK_SHINGLES:
                total += len(token_lists[stop])
                stop += 1
            self._fill(token_lists[start:stop], out[start:stop])
            start = stop
        return out

    def _fill(self, token_lists: Sequence[Sequence[str]], out: np.ndarray) -> None:
        hashes = {t: _stable_hash(t) for t in set(chain.from_iterable(token_lists))}
        values: list[int] = []
        for tokens in token_lists:
            seen: dict[str, int] = {}
            for t in tokens:
                k = seen.get(t, 0)
                seen[t] = k + 1
                values.append(hashes[t] ^ ((k * _GOLDEN) & _MASK64))
        if not values:
            return
        x = np.array(values, dtype=np.uint64) % np.uint64(_PRIME)  # (S,)
        h = x[:, None] * self.a  # (S, P)
        h += self.b
        h %= np.uint64(_PRIME)
        lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(out))
        rows = np.flatnonzero(lengths)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[rows]
        out[rows] = np.minimum.reduceat(h, starts, axis=0)


# --- the index -------------------------------------------------------------------------------


class NearDupIndex:
    """A growing pool of texts answering "most similar by ROUGE-L" through MinHash LSH.

    ``query`` scores LSH candidates exactly, skipping those that cannot reach the threshold
    (their lengths or token-bag overlap bound the LCS too low), so a returned score >= threshold
    is exact and a lower one is a lower bound on the best candidate. Positions count the added
    texts from 0; ties go to the lowest position. ``band_keys`` + ``query_tokens``/``add_tokens``
    let a batch compute its MinHash signatures at once (as :func:`filter_near_duplicates` does).
    """

    def __init__(
        self, threshold: float = 0.7, num_perm: int = 128, bands: int | None = None, seed: int = 0
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(
                f"threshold={threshold} is out of range.", fix="use 0 < threshold <= 1"
            )
        if num_perm < 1 or (bands is not None and not 1 <= bands <= num_perm):
            raise ConfigError(
                f"num_perm={num_perm}, bands={bands} is not a valid LSH layout.",
                fix="use num_perm >= 1 and 1 <= bands <= num_perm, or leave bands unset",
            )
        self.threshold = threshold
        self.params = choose_lsh_params(threshold, num_perm, bands)
        self._hasher = MinHasher(self.params.bands * self.params.rows, seed)
        self._band_mult = np.random.default_rng(seed + 1).integers(
            1, 1 << 63, size=self.params.rows, dtype=np.uint64
        ) * np.uint64(2) + np.uint64(1)  # odd multipliers fold a band's rows into one key
        self._tables: list[dict[int, list[int]]] = [{} for _ in range(self.params.bands)]
        # (length, token bag, LCS bit masks) of each indexed text
        self._entries: list[tuple[int, frozenset[str], dict[Hashable, int]]] = []
        self._exact: dict[tuple[str, ...], int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def band_keys(self, token_lists: Sequence[Sequence[str]]) -> list[list[int]]:
        """One bucket key per band for each token list (vectorised; reuse them for many texts)."""
        sig = self._hasher.signatures(token_lists)  # (n, bands*rows)
        folded = sig.reshape(len(token_lists), self.params.bands, self.params.rows)
        keys: list[list[int]] = (folded * self._band_mult).sum(axis=2, dtype=np.uint64).tolist()
        return keys  # (n, bands)

    def candidates(self, text: str) -> list[int]:
        """Positions of indexed texts that collide with ``text`` in at least ``min_hits`` bands."""
        tokens = rouge_tokens(text)
        return sorted(self._candidates(self.band_keys([tokens])[0])) if tokens else []

    def query(self, text: str) -> tuple[float, int | None]:
        """(max ROUGE-L among candidates, its position); (0.0, None) when nothing qualifies."""
        tokens = rouge_tokens(text)
        return self.query_tokens(tokens, self.band_keys([tokens])[0])

    def add(self, text: str) -> int:
        """Index ``text`` unconditionally; returns its position."""
        tokens = rouge_tokens(text)
        return self.add_tokens(tokens, self.band_keys([tokens])[0])

    def add_if_novel(self, text: str) -> tuple[bool, float, int | None]:
        """Self-Instruct's rule: add ``text`` unless some indexed text has ROUGE-L >= threshold.

        Returns (added, best similarity, position of the best match).
        """
        tokens = rouge_tokens(text)
        keys = self.band_keys([tokens])[0]
        sim, match = self.query_tokens(tokens, keys)
        if match is not None and sim >= self.threshold:
            return False, sim, match
        self.add_tokens(tokens, keys)
        return True, sim, match

    def query_tokens(self, tokens: Sequence[str], keys: list[int]) -> tuple[float, int | None]:
        """:meth:`query` on pre-tokenized text with its precomputed :meth:`band_keys` row."""
        if not tokens:
            return 0.0, None
        same = self._exact.get(tuple(tokens))
        if same is not None:  # F1 = 1 only for identical token lists: the first one wins ties
            return 1.0, same
        # Skips below use upper bounds on the LCS, with slack so that float rounding is safe.
        la, t, bag = len(tokens), self.threshold - 1e-9, _token_bag(tokens)
        best, best_pos = 0.0, None
        for pos in sorted(self._candidates(keys)):
            lb, other_bag, masks = self._entries[pos]
            if 2 * min(la, lb) < t * (la + lb) or 2 * len(bag & other_bag) < t * (la + lb):
                continue  # F = 2*lcs/(la+lb) and lcs <= min(la, lb), lcs <= bag overlap
            sim = _f_from_lcs(
                _lcs_from_masks([m for x in tokens if (m := masks.get(x))], lb), la, lb
            )
            if sim > best:
                best, best_pos = sim, pos
        return best, best_pos

    def add_tokens(self, tokens: Sequence[str], keys: list[int]) -> int:
        """:meth:`add` on pre-tokenized text with its precomputed :meth:`band_keys` row."""
        pos = len(self._entries)
        self._entries.append((len(tokens), _token_bag(tokens), _token_masks(tokens)))
        if tokens:  # an empty text matches nothing, so it needs no buckets
            self._exact.setdefault(tuple(tokens), pos)
            for table, key in zip(self._tables, keys, strict=True):
                table.setdefault(key, []).append(pos)
        return pos

    def _candidates(self, keys: list[int]) -> Iterable[int]:
        buckets = [
            b for table, key in zip(self._tables, keys, strict=True) if (b := table.get(key))
        ]
        if self.params.min_hits == 1:
            return set(chain.from_iterable(buckets))
        hits = Counter(chain.from_iterable(buckets))
        return [pos for pos, n in hits.items() if n >= self.params.min_hits]


# --- filters ---------------------------------------------------------------------------------

Dropped = list[tuple[int, int, float]]  # (dropped index, index of the kept match, ROUGE-L)


def _tokenize_all(texts: Sequence[str]) -> list[list[str]]:
    out = []
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataFormatError(
                f"expected a string, got {type(text).__name__}", row=row, fix="pass texts as str"
            )
        out.append(rouge_tokens(text))
    return out


def filter_near_duplicates(
    texts: Sequence[str],
    threshold: float = 0.7,
    *,
    num_perm: int = 128,
    bands: int | None = None,
    seed: int = 0,
) -> tuple[list[int], Dropped]:
    """Keep each text unless an earlier *kept* text has ROUGE-L >= threshold with it.

    Returns the kept indices in order and (dropped, kept match, similarity) for the rest,
    the match being the most similar kept text found (lowest index on ties).
    """
    index = NearDupIndex(threshold, num_perm, bands, seed)
    tokens = _tokenize_all(texts)
    keys = index.band_keys(tokens)
    kept: list[int] = []
    dropped: Dropped = []
    for i, (tok, key) in enumerate(zip(tokens, keys, strict=True)):
        sim, pos = index.query_tokens(tok, key)
        if pos is not None and sim >= threshold:
            dropped.append((i, kept[pos], sim))
        else:
            index.add_tokens(tok, key)
            kept.append(i)
    return kept, dropped


def exhaustive_filter(texts: Sequence[str], threshold: float = 0.7) -> tuple[list[int], Dropped]:
    """:func:`filter_near_duplicates` by brute force: every text against every kept text."""
    kept: list[int] = []
    pool: list[tuple[int, dict[Hashable, int]]] = []
    dropped: Dropped = []
    for i, tok in enumerate(_tokenize_all(texts)):
        best, best_j = 0.0, None
        for j, (lb, masks) in enumerate(pool):
            if tok and lb:
                hits = [m for x in tok if (m := masks.get(x))]
                sim = _f_from_lcs(_lcs_from_masks(hits, lb), len(tok), lb)
                if sim > best:
                    best, best_j = sim, j
        if best_j is not None and best >= threshold:
            dropped.append((i, kept[best_j], best))
        else:
            kept.append(i)
            pool.append((len(tok), _token_masks(tok)))
    return kept, dropped


def normalize_for_exact(text: str) -> str:
    """NFKC, casefold, punctuation and underscores to spaces, whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[\W_]+", " ", folded).split())


def exact_duplicates(texts: Sequence[str]) -> tuple[list[int], list[tuple[int, int]]]:
    """Kept indices (first occurrence) and (dropped, first occurrence) pairs after normalizing."""
    first: dict[str, int] = {}
    kept: list[int] = []
    dropped: list[tuple[int, int]] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataFormatError(
                f"expected a string, got {type(text).__name__}", row=i, fix="pass texts as str"
            )
        j = first.setdefault(normalize_for_exact(text), i)
        if j == i:
            kept.append(i)
        else:
            dropped.append((i, j))
    return kept, dropped


# --- synthetic instructions (tests and benchmarks) -------------------------------------------

_ONSETS = "b c d f g h j k l m n p r s t v w z br ch cl dr fl gr pl pr sh sl st str th tr".split()
_VOWELS = "a e i o u ai ea io ou".split()
_CODAS = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ck", "ng"]
_FUNCTION_WORDS = (
    "the a an of to in for with about and or on from by as into that this your".split()
)
_OPENERS = (
    "Write|Explain|Describe|Summarize|Create|Generate|Give me|List|Suggest|Design|Outline|Draft|"
    "Compare|Identify|Classify|Rewrite|Translate|Evaluate|Please write|Can you explain|"
    "I want you to describe|Tell me|Find|Come up with"
).split("|")
_BODIES = (
    "a {j} {n} about the {n} of {n}|the {n} in the following {n}: {x} {x} {x} {x}|"
    "{k} {j} ways to {v} a {n} with {n}|how to {v} my {n} without {v} the {n}|"
    "why the {n} {v} {n} and how it affects {j} {n}|the {j} {n} of a {n} as a {n}|"
    "an {j} {n} for a {n} that {v} {n} in {n}|the differences between {n} and {n}|"
    "this sentence in {j} {n}: {x} {x} {x} {x} {x} {x}|a {j} story about a {n} who {v} {n}|"
    "whether the {n} is {j} or {j}: {x} {x} {x}|a plan to {v} {n} from {n} using {j} {n}|"
    "{k} {n} that {v} the {j} {n} of {n} in {j} {n}|the {n}|{n} {n}|"
    "the main idea of the {n} {x} {x} {x} {x} {x}|a {n} for {v} {n} at {n}|"
    "what makes a {n} {j} and {j}|the pros and cons of {v} {n} for {n}|"
    "a {j} email to your {n} about {n}|a recipe for {j} {n} with {n} and {n}|"
    "a poem about {n} in the style of {n}|the steps to {v} a {j} {n}|"
    "a {n} that {v} {n} given a list of {n}|the role of {n} in {j} {n}|"
    "{k} questions to ask a {n} about {n}|a title for an article about {j} {n}|"
    "the meaning of the word {x} in the context of {n}|an {j} {n} between {n} and {n}|"
    "a short {n} that teaches {n} to {v} {n}"
).split("|")
_TAILS = (
    "|||| in {k} sentences| for a {j} {n}| using {n} and {n}|. Keep it {j}|. Use {j} language|"
    ". Explain your answer| for {n} who {v} {n}|. The answer should be {j}| in less than {k} words"
).split("|")
_SLOT_RE = re.compile(r"\{(\w)\}")


def synthetic_instructions(
    n: int, *, seed: int = 0, dup_rate: float = 0.2, vocab_size: int = 3000
) -> list[str]:
    """Deterministic instruction-like texts: opener + body + tail templates over made-up words.

    A ``dup_rate`` share are edits of an earlier text (substitutions, insertions, deletions,
    swaps of 1 to ~50% of its words), so many pairs sit near the ROUGE-L 0.7 threshold.
    """
    rng = random.Random(seed)
    vocab = sorted({_made_up_word(rng) for _ in range(3 * vocab_size)})[:vocab_size]
    rng.shuffle(vocab)
    q = vocab_size // 4
    pools = {"n": vocab[: 2 * q], "v": vocab[2 * q : 3 * q], "j": vocab[3 * q :]}
    pools["x"] = vocab + _FUNCTION_WORDS

    def fill(m: re.Match[str]) -> str:
        return str(rng.randint(2, 10)) if m.group(1) == "k" else rng.choice(pools[m.group(1)])

    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < dup_rate:
            out.append(_edit_words(rng.choice(out), rng, pools["x"]))
        else:
            template = f"{rng.choice(_OPENERS)} {rng.choice(_BODIES)}{rng.choice(_TAILS)}."
            out.append(_SLOT_RE.sub(fill, template))
    return out


def _made_up_word(rng: random.Random) -> str:
    syllables = (rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.randint(1, 3)))
    return "".join(syllables) + rng.choice(_CODAS)


def _edit_words(text: str, rng: random.Random, pool: list[str]) -> str:
    words = text.split()
    for _ in range(max(1, round(rng.uniform(0.0, 0.5) * len(words)))):
        op, i = rng.random(), rng.randrange(len(words))
        if op < 0.4:
            words[i] = rng.choice(pool)
        elif op < 0.7 or len(words) < 2:
            words.insert(i, rng.choice(pool))
        elif op < 0.85:
            del words[i]
        else:
            j = min(i + 1, len(words) - 1)
            words[i], words[j] = words[j], words[i]
    return " ".join(words)
