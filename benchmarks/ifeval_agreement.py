"""Agreement of instructkit's IFEval checks with the reference implementation, item by item.

The reference (Google's ``instruction_following_eval``, as vendored by lm-evaluation-harness in
``lm_eval.tasks.ifeval``) needs nltk's punkt model data; instructkit reimplements punkt's
sentence splitting without that data (``instructkit.evaluate.punkt``). This script measures
how often the two give the same verdict, on IFEval-format items built from natural text
(prose and markdown) with transformations that make each instruction pass or fail near its
boundaries (counts at +-1, case changes, markers spelled in several ways).

Three steps; the reference step runs in an environment that has ``lm_eval`` (or just its
``lm_eval/tasks/ifeval`` files), ``nltk`` and punkt_tab (``NLTK_DATA``), ``langdetect`` and
``immutabledict``::

    python benchmarks/ifeval_agreement.py build --out /tmp/ifa/items.jsonl --n 3000
    NLTK_DATA=... PYTHONPATH=DIR_WITH_LM_EVAL REF_PYTHON benchmarks/ifeval_agreement.py \\
        reference /tmp/ifa/items.jsonl --out /tmp/ifa/reference.jsonl
    instructkit eval ifeval /tmp/ifa/items.jsonl -o /tmp/ifa/ours.jsonl
    python benchmarks/ifeval_agreement.py compare /tmp/ifa/ours.jsonl /tmp/ifa/reference.jsonl

``build`` and ``reference`` use only the standard library and the reference; ``compare`` also
reports counts (sentences, words) side by side, using instructkit. The three types that need
language detection are left out of the total: the reference calls langdetect unseeded, so its
verdict can change from run to run on short or mixed text (instructkit seeds it).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import sys
from collections import Counter, defaultdict
from pathlib import Path

# The reference decides these with an unseeded langdetect call, so its verdict is not repeatable.
LANGDETECT = frozenset(
    {"language:response_language", "change_case:english_capital", "change_case:english_lowercase"}
)

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO.parent / "shared" / "seeds"

# --------------------------------------------------------------------------------- corpus


def _paragraphs_of(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if len(p.strip()) > 20]


def load_corpus(extra: list[Path]) -> list[list[str]]:
    """Documents as lists of paragraphs: the seed documents, the project's docs, then the long
    descriptions (READMEs) of installed packages."""
    docs: list[list[str]] = []
    files = (
        sorted(SEEDS.glob("*.txt")) + sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]
    )
    for f in files + extra:
        if f.is_file():
            docs.append(_paragraphs_of(f.read_text(encoding="utf-8", errors="replace")))
    for meta in sorted(Path(sys.prefix).glob("lib/python*/site-packages/*.dist-info/METADATA")):
        text = meta.read_text(encoding="utf-8", errors="replace")
        body = text.split("\n\n", 1)[1] if "\n\n" in text else ""
        if len(body) > 2000:
            docs.append(_paragraphs_of(body))
    return [d for d in docs if len(d) >= 3]


# ------------------------------------------------------------------------------- builders

WORDS = "apple river signal market garden bridge winter silver paper engine".split()
RELATIONS = ("less than", "at least")
LANGS = ("en", "fr", "de", "es", "it", "pt", "ko", "ja", "ru", "hi")
SPLITERS = ("Section", "SECTION", "PARAGRAPH", "Day", "Part", "Chapter")
ENDS = ("Is there anything else I can help with?", "Any other questions?", "Peace!")


def _near(rng: random.Random, n: int) -> int:
    """A threshold at or next to ``n``, so counting differences flip the verdict."""
    return max(1, n + rng.choice((-2, -1, 0, 0, 1, 1, 2)))


def _rough_words(text: str) -> int:
    return len(re.findall(r"\w+", text))


def _rough_sentences(text: str) -> int:
    return max(1, len(re.findall(r"[.!?](\s|$)", text)))


def _mutate(rng: random.Random, text: str) -> str:
    """Small random edits that sit on the edges of the checks."""
    edits = [
        lambda t: t.replace(",", "") if rng.random() < 0.5 else t,
        lambda t: "  " + t + "\n\n",
        lambda t: t.replace("\n\n", "\n\n\n", 1),
        lambda t: "**" + t.split("\n", 1)[0] + "**\n" + t,
        lambda t: t + "\n\n---",
        lambda t: t.replace(". ", ".  ", 3),
        lambda t: t.replace("e.g.", "e.g. Mr. Smith"),
        lambda t: t + ' "Quoted end."',
    ]
    return rng.choice(edits)(text) if rng.random() < 0.3 else text


def make_item(rng: random.Random, key: int, doc: list[str]) -> dict:
    """One IFEval row with 1-6 instructions; each is made to hold with probability 1/2."""
    start = rng.randrange(len(doc))
    paras = doc[start : start + rng.randint(1, 6)]
    text = "\n\n".join(paras)
    prompt = rng.choice(paras)[:200]
    ids: list[str] = []
    kwargs: list[dict] = []
    pool = list(_BUILDERS)
    for name in rng.sample(pool, rng.randint(1, 6)):
        make = rng.random() < 0.5
        text, kw = _BUILDERS[name](rng, text, make, prompt)
        ids.append(name)
        kwargs.append(kw)
    text = _mutate(rng, text)
    return {
        "key": key,
        "prompt": prompt,
        "instruction_id_list": ids,
        "kwargs": kwargs,
        "response": text,
    }


def _existence(rng, text, make, prompt):
    kws = rng.sample(WORDS, rng.randint(1, 3)) if not make else []
    if make:
        kws = [w for w in re.findall(r"[A-Za-z]{5,}", text)[:50]][:2] or ["apple"]
        if kws == ["apple"]:
            text += " An apple."
    return text, {"keywords": kws}


def _frequency(rng, text, make, prompt):
    word = rng.choice(WORDS)
    k = rng.randint(1, 5)
    if make:
        text += "".join(f" The {word}." for _ in range(k))
    return text, {"keyword": word, "frequency": _near(rng, k), "relation": rng.choice(RELATIONS)}


def _forbidden(rng, text, make, prompt):
    words = re.findall(r"[A-Za-z]{4,}", text)
    picked = rng.sample(words, min(2, len(words))) if words else ["zebra"]
    if make:
        for w in picked:
            text = re.sub(r"\b" + re.escape(w) + r"\b", "thing", text, flags=re.I)
    if rng.random() < 0.3:
        picked = [picked[0] + "s"]  # a word that may occur only inside another
    return text, {"forbidden_words": picked}


def _letter(rng, text, make, prompt):
    letter = rng.choice(string.ascii_lowercase)
    n = text.lower().count(letter)
    return text, {
        "letter": letter,
        "let_frequency": _near(rng, n) if make else rng.randint(1, 30),
        "let_relation": rng.choice(RELATIONS),
    }


def _language(rng, text, make, prompt):
    return text, {"language": "en" if make else rng.choice(LANGS)}


def _sentences(rng, text, make, prompt):
    n = _rough_sentences(text)
    return text, {"num_sentences": _near(rng, n), "relation": rng.choice(RELATIONS)}


def _words(rng, text, make, prompt):
    n = _rough_words(text)
    return text, {"num_words": _near(rng, n), "relation": rng.choice(RELATIONS)}


def _paragraph_split(text: str) -> list[str]:
    return [p for p in text.split("\n\n") if p.strip()]


def _paragraphs(rng, text, make, prompt):
    paras = _paragraph_split(text)
    if make:
        sep = rng.choice(("\n\n***\n\n", "\n***\n", " *** ", "\n\n* * *\n\n", "\n\n***\n\n"))
        text = sep.join(paras)
        if rng.random() < 0.2:
            text += "\n***\n"
    return text, {"num_paragraphs": _near(rng, len(paras))}


def _first_word(rng, text, make, prompt):
    paras = _paragraph_split(text)
    n = len(paras)
    nth = rng.randint(1, n)
    word = rng.choice(WORDS)
    if make:
        decorated = rng.choice(
            (word, word.capitalize(), f'"{word.upper()}', f"{word}:", f"*{word}*")
        )
        paras[nth - 1] = decorated + " " + paras[nth - 1]
        text = rng.choice(("\n\n", "\n\n\n", "\n \n")).join(paras)
    num = max(nth, _near(rng, n))  # instructkit refuses nth_paragraph > num_paragraphs
    return text, {"num_paragraphs": num, "nth_paragraph": nth, "first_word": word}


def _placeholders(rng, text, make, prompt):
    k = rng.randint(0, 5)
    if make:
        text += " " + " ".join(
            rng.choice(("[name]", "[ address ]", "[]", "[a b]")) for _ in range(k)
        )
    return text, {"num_placeholders": _near(rng, k)}


def _postscript(rng, text, make, prompt):
    marker = rng.choice(("P.S.", "P.P.S", "P.S"))
    if make:
        written = rng.choice((marker, marker.lower(), "P. S.", "p.s", "PS:", "P.P.S.", "P.S.:"))
        text += f"\n\n{written} Do not forget the meeting."
    return text, {"postscript_marker": marker}


def _bullets(rng, text, make, prompt):
    paras = _paragraph_split(text)
    if make:
        marks = ("* ", "- ", "*", "-", "** ", "--- ", "• ", "1. ", "  * ")
        text = "\n".join(rng.choice(marks) + p.replace("\n", " ") for p in paras)
    return text, {"num_bullets": _near(rng, len(paras))}


def _constrained(rng, text, make, prompt):
    if make:
        text += rng.choice(
            (
                "\nMy answer is yes.",
                "\nMy answer is no",
                "My answer is maybe.",
                "\nmy answer is yes.",
            )
        )
    return text, {}


def _highlights(rng, text, make, prompt):
    k = rng.randint(1, 4)
    if make:
        for i in range(k):
            text += rng.choice((f"\n*part {i}*", f" **bold {i}**", " * *", " *a\nb*", " ** **"))
    return text, {"num_highlights": _near(rng, k)}


def _sections(rng, text, make, prompt):
    spliter = rng.choice(SPLITERS)
    paras = _paragraph_split(text)
    if make:
        form = rng.choice(("{s} {i}\n", "{s} {i}:\n", "{S} {i}\n", "{s}{i}\n", "{s} X\n"))
        text = "\n\n".join(
            form.format(s=spliter, S=spliter.upper(), i=i + 1) + p for i, p in enumerate(paras)
        )
    return text, {"section_spliter": spliter, "num_sections": _near(rng, len(paras))}


def _json(rng, text, make, prompt):
    if make:
        body = json.dumps({"answer": text[:300]}, indent=rng.choice((None, 2)))
        text = rng.choice(
            ("{b}", "```json\n{b}\n```", "```JSON\n{b}\n```", "```\n{b}\n```", "{b}\n")
        )
        text = text.format(b=body)
    return text, {}


def _title(rng, text, make, prompt):
    if make:
        text = rng.choice(("<<A Title>>\n", "<<>>\n", "<< >>\n", "<<two\nlines>>\n")) + text
    return text, {}


def _two(rng, text, make, prompt):
    if make:
        paras = _paragraph_split(text)
        other = paras[-1] if rng.random() < 0.8 else paras[0]
        sep = rng.choice(("\n******\n", "\n\n******\n\n", "******", "\n*******\n"))
        text = paras[0] + sep + other
    return text, {}


def _repeat(rng, text, make, prompt):
    if make:
        text = rng.choice((prompt, prompt.upper(), " " + prompt, prompt[:-1])) + "\n" + text
    return text, {"prompt_to_repeat": prompt}


def _end(rng, text, make, prompt):
    phrase = rng.choice(ENDS)
    if make:
        text += rng.choice((" ", "\n")) + rng.choice(
            (phrase, phrase + " ", phrase.lower(), phrase + '"')
        )
    return text, {"end_phrase": phrase}


def _capital_words(rng, text, make, prompt):
    words = text.split(" ")
    k = rng.randint(0, 12)
    if make:
        for i in rng.sample(range(len(words)), min(k, len(words))):
            words[i] = words[i].upper()
        text = " ".join(words)
    return text, {"capital_frequency": _near(rng, k), "capital_relation": rng.choice(RELATIONS)}


def _capital(rng, text, make, prompt):
    return (text.upper() if make else text), {}


def _lower(rng, text, make, prompt):
    return (text.lower() if make else text), {}


def _comma(rng, text, make, prompt):
    return (text.replace(",", "") if make else text), {}


def _quotation(rng, text, make, prompt):
    if make:
        text = rng.choice(('"{t}"', ' "{t}" ', '"{t}', "“{t}”")).format(t=text)
    return text, {}


_BUILDERS = {
    "keywords:existence": _existence,
    "keywords:frequency": _frequency,
    "keywords:forbidden_words": _forbidden,
    "keywords:letter_frequency": _letter,
    "language:response_language": _language,
    "length_constraints:number_sentences": _sentences,
    "length_constraints:number_paragraphs": _paragraphs,
    "length_constraints:number_words": _words,
    "length_constraints:nth_paragraph_first_word": _first_word,
    "detectable_content:number_placeholders": _placeholders,
    "detectable_content:postscript": _postscript,
    "detectable_format:number_bullet_lists": _bullets,
    "detectable_format:constrained_response": _constrained,
    "detectable_format:number_highlighted_sections": _highlights,
    "detectable_format:multiple_sections": _sections,
    "detectable_format:json_format": _json,
    "detectable_format:title": _title,
    "combination:two_responses": _two,
    "combination:repeat_prompt": _repeat,
    "startend:end_checker": _end,
    "change_case:capital_word_frequency": _capital_words,
    "change_case:english_capital": _capital,
    "change_case:english_lowercase": _lower,
    "punctuation:no_comma": _comma,
    "startend:quotation": _quotation,
}


def build(out: Path, n: int, seed: int, extra: list[Path]) -> None:
    rng = random.Random(seed)
    docs = load_corpus(extra)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for key in range(n):
            f.write(json.dumps(make_item(rng, key, rng.choice(docs)), ensure_ascii=False) + "\n")
    print(f"wrote {n} items from {len(docs)} documents to {out}")


# ------------------------------------------------------------------------------ reference


def _loose_variants(response: str) -> list[str]:
    # The reference's loose procedure (its evaluation_lib), written out here rather than taken
    # from instructkit.evaluate.ifeval: this step runs where instructkit is not installed.
    lines = response.split("\n")
    cut = [
        "\n".join(lines[1:]).strip(),
        "\n".join(lines[:-1]).strip(),
        "\n".join(lines[1:-1]).strip(),
    ]
    base = [response, *cut]
    return base + [v.replace("*", "") for v in base]


def reference(src: Path, out: Path) -> None:
    """Score ``src`` with the reference checks, as its evaluation_lib does (kwargs with falsy
    values dropped; the prompt passed to checks that take it)."""
    from lm_eval.tasks.ifeval import instructions_registry, instructions_util

    def follows(iid: str, kw: dict, prompt: str, text: str) -> bool:
        check = instructions_registry.INSTRUCTION_DICT[iid](iid)
        check.build_description(**{k: v for k, v in kw.items() if v})
        args = check.get_instruction_args()
        if args and "prompt" in args:
            check.build_description(prompt=prompt)
        return bool(text.strip()) and bool(check.check_following(text))

    with src.open(encoding="utf-8") as f, out.open("w", encoding="utf-8") as g:
        for line in f:
            row = json.loads(line)
            r, p = row["response"], row["prompt"]
            pairs = list(zip(row["instruction_id_list"], row["kwargs"], strict=True))
            strict = [follows(i, k, p, r) for i, k in pairs]
            loose = [any(follows(i, k, p, v) for v in _loose_variants(r)) for i, k in pairs]
            counts = {
                "sentences": instructions_util.count_sentences(r),
                "words": instructions_util.count_words(r),
            }
            g.write(json.dumps({"key": row["key"], "strict": strict, "loose": loose, **counts}))
            g.write("\n")
    print(f"wrote {out}")


# -------------------------------------------------------------------------------- compare


def compare(ours_path: Path, ref_path: Path, show: int) -> int:
    from instructkit.evaluate.ifeval_checks import count_sentences, count_words

    ref = {r["key"]: r for r in map(json.loads, ref_path.open(encoding="utf-8"))}
    per: dict[str, Counter] = defaultdict(Counter)
    examples: dict[str, list] = defaultdict(list)
    sentence_same = word_same = rows = 0
    for ours in map(json.loads, ours_path.open(encoding="utf-8")):
        theirs = ref[ours["key"]]
        rows += 1
        sentence_same += count_sentences(ours["response"]) == theirs["sentences"]
        word_same += count_words(ours["response"]) == theirs["words"]
        for mode in ("strict", "loose"):
            mine = ours[mode]["follow_instruction_list"]
            for i, iid in enumerate(ours["instruction_id_list"]):
                c = per[iid]
                c[f"{mode}_n"] += 1
                c[f"{mode}_pass"] += bool(theirs[mode][i])
                if mine[i] == theirs[mode][i]:
                    c[f"{mode}_same"] += 1
                else:
                    examples[iid].append((ours["key"], mode, mine[i], theirs[mode][i]))
    print(f"{'instruction':46} {'n':>5} {'ref pass':>8} {'strict':>7} {'loose':>7}")
    total = Counter()
    for iid in sorted(per):
        c = per[iid]
        if iid not in LANGDETECT:
            total.update(c)
        print(
            f"{iid:46} {c['strict_n']:5d} {c['strict_pass'] / c['strict_n']:8.2f} "
            f"{c['strict_same'] / c['strict_n']:7.4f} {c['loose_same'] / c['loose_n']:7.4f}"
        )
    print(
        f"{'all 22 types without langdetect':46} {total['strict_n']:5d} "
        f"{total['strict_pass'] / total['strict_n']:8.2f} "
        f"{total['strict_same'] / total['strict_n']:7.4f} "
        f"{total['loose_same'] / total['loose_n']:7.4f}"
    )
    print(f"sentence counts equal: {sentence_same}/{rows}; word counts equal: {word_same}/{rows}")
    for iid, ex in sorted(examples.items()):
        print(f"{iid}: keys (mode, ours, reference) {ex[:show]}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write IFEval-format items with responses")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--n", type=int, default=3000)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--text", type=Path, nargs="*", default=[], help="more text files")
    r = sub.add_parser("reference", help="score items with lm_eval's IFEval checks")
    r.add_argument("items", type=Path)
    r.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare", help="agreement of instructkit's output with the reference's")
    c.add_argument("ours", type=Path)
    c.add_argument("reference", type=Path)
    c.add_argument("--show", type=int, default=5, help="disagreeing keys shown per instruction")
    a = ap.parse_args()
    if a.cmd == "build":
        build(a.out, a.n, a.seed, a.text)
    elif a.cmd == "reference":
        reference(a.items, a.out)
    else:
        return compare(a.ours, a.reference, a.show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
