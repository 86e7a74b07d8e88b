"""Self-Instruct (Wang et al. 2022, "Self-Instruct: Aligning Language Models with Self-Generated
Instructions"): grow a set of instruction tasks from a few seed tasks with any LM.

Usage::

    from instructkit.synth.seeds import load_seed_tasks
    from instructkit.synth.self_instruct import SelfInstructConfig, run_self_instruct

    seeds = load_seed_tasks().tasks  # the bundled seed tasks, or load_seed_tasks("my.jsonl")
    result = run_self_instruct(SelfInstructConfig(num_instructions=500), lm, seeds, "si.jsonl")
    rows = to_alpaca_rows(read_rows("si.jsonl"))  # instruction/input/output rows for training

Each round follows the paper's pipeline:

1. **Instruction generation.** Each of ``prompts_per_round`` prompts lists 8 task instructions,
   6 sampled from the seeds and 2 from the tasks kept so far (seeds fill in while there are fewer
   than 2), numbered, and asks the LM to continue the list (:func:`build_instruction_prompt`).
   :func:`parse_numbered_instructions` reads the new items out of the completion.
2. **Filtering.** :func:`instruction_rejection` drops instructions that are too short or long,
   name something a text model cannot handle (image, file, audio, ...), or start with
   punctuation or a non-ASCII character; an instruction whose ROUGE-L with any pooled one
   (seeds and kept tasks) is >= ``similarity_threshold`` is dropped as too similar
   (:class:`~instructkit.data.similarity.NearDupIndex`).
3. **Classification identification.** A few-shot prompt asks whether the task is a
   classification task with finite output labels (:func:`build_classification_prompt`).
4. **Instance generation.** Classification tasks are prompted output-first (a class label,
   then an input with that label) so that labels are not skewed towards one class; the others
   input-first; both with examples from the seed tasks (:func:`build_instance_prompt`).
   Instances with an empty output, or an input equal to the output, are dropped, as are all
   instances of a task that gives one input two different outputs.

Nothing is dropped silently: every rejection and every malformed completion is counted by
reason in :class:`SelfInstructResult` (with a few examples each, also logged), and so are valid
tasks of the last round that the target leaves no room for (``n_surplus``).

**Resuming.** Kept tasks are appended to the output file with a
:class:`~instructkit.jobs.Job` after each round (and counters go to its state
file). Rerunning the same command continues where it stopped: the similarity pool is rebuilt from
the seeds and the file, the round's random state depends only on ``(seed, round)``, and a task
already in the file is never written again (it is in the pool, so an identical instruction is
rejected as too similar). A round cut short by a crash is redone from its start.

Where this differs from the paper's released code: only kept tasks (those with valid instances)
enter the similarity pool, so that the pool can be rebuilt from the output file alone;
"Write a program ..." instructions are kept unless ``drop_write_a_program``; the keyword list
adds video, audio, music, flowchart and diagram; ROUGE-L ties at the threshold are rejected.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm.auto import tqdm

from instructkit.data.similarity import NearDupIndex, rouge_tokens
from instructkit.data.sources import SourceField
from instructkit.errors import ConfigError, DataFormatError
from instructkit.io import read_rows, write_jsonl
from instructkit.jobs import Job, fingerprint
from instructkit.lm.base import LM, ChatRequest, Completion
from instructkit.synth.seeds import SeedTask

__all__ = [
    "SelfInstructConfig",
    "SelfInstructResult",
    "run_self_instruct",
    "build_instruction_prompt",
    "parse_numbered_instructions",
    "instruction_rejection",
    "build_classification_prompt",
    "parse_classification",
    "build_instance_prompt",
    "parse_instances",
    "validate_instances",
    "to_alpaca_rows",
    "export_alpaca",
    "BLACKLIST",
    "SOURCE",
]

logger = logging.getLogger(__name__)

SOURCE = "self-instruct"
BLACKLIST = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
)  # fmt: skip
_BLACKLIST_RE = re.compile(
    r"\b(?:" + "|".join(w.replace(" ", r"\s+") for w in BLACKLIST) + r")\b", re.IGNORECASE
)
_N_EXAMPLES = 3  # examples kept per rejection reason
_NO_INPUT = {"", "none", "n/a", "na", "null", "-", "<noinput>", "(none)", "no input", "empty"}


class SelfInstructConfig(BaseModel):
    """Settings of one Self-Instruct job (YAML keys = fields = ``--kebab-case`` CLI flags).

    ``temperature``/``top_p``/``max_tokens`` apply to instruction generation (the paper used
    0.7 and 0.5); classification and instance generation decode greedily, as in the paper.
    """

    model_config = ConfigDict(extra="forbid")

    num_instructions: int = Field(100, gt=0)  # target number of kept tasks
    prompts_per_round: int = Field(8, gt=0)
    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(0.5, gt=0.0, le=1.0)
    max_tokens: int = Field(1024, gt=0)
    seed: int = 0
    similarity_threshold: float = Field(0.7, gt=0.0, le=1.0)
    num_prompt_instructions: int = Field(8, gt=0)
    n_seed_in_prompt: int = Field(6, ge=0)
    min_words: int = Field(3, ge=1)
    max_words: int = Field(150, ge=1)
    max_instances: int = Field(5, gt=0)  # instances kept per task
    instance_shots: int = Field(2, ge=0)  # seed tasks shown in an instance prompt
    drop_write_a_program: bool = False
    max_stale_rounds: int = Field(20, gt=0)  # stop after this many rounds in a row keep nothing
    # seed tasks when --seeds is not given: a path or a dataset spec (path, split, subset,
    # columns, file_type; docs/data.md); None: the 120 bundled tasks
    seeds: SourceField | None = None

    @model_validator(mode="after")
    def _check(self) -> SelfInstructConfig:
        if self.n_seed_in_prompt > self.num_prompt_instructions:
            raise ValueError("n_seed_in_prompt must be <= num_prompt_instructions")
        if self.min_words > self.max_words:
            raise ValueError("min_words must be <= max_words")
        return self


@dataclass
class SelfInstructResult:
    """What a run produced and everything it rejected, by reason (totals over resumed runs).

    ``rejected_instructions`` counts instructions (filters, similarity, tasks left without
    valid instances); ``rejected_instances`` counts instances; ``malformed`` counts LM
    completions that could not be parsed (empty, no numbered list, no Yes/No, no instances).
    """

    out_path: str
    n_kept: int
    n_new: int
    n_resumed: int
    n_instances: int
    n_classification: int
    rounds: int
    n_candidates: int  # instructions parsed from completions
    n_requests: int  # LM requests sent
    n_surplus: int  # valid tasks of a last round beyond the target, not written
    rejected_instructions: dict[str, int] = field(default_factory=dict)
    rejected_instances: dict[str, int] = field(default_factory=dict)
    malformed: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    reached_target: bool = True


# --- 1. instruction generation -------------------------------------------------------------

_GENERATE_HEADER = (
    "Come up with a series of new tasks. Continue the numbered list below with tasks that "
    "differ from these in topic and in kind, one task per line."
)
_ITEM_RE = re.compile(
    r"^\s*(?:[-*#]\s*)?(?:\*\*)?(?:task|instruction)?\s*(\d{1,3})\s*[.):](?:\*\*)?(?=\s|$)\s*",
    re.IGNORECASE,
)
_LABEL_RE = re.compile(r"^(?:task|instruction)\s*:\s*", re.IGNORECASE)
_PREAMBLE_RE = re.compile(
    r"^(?:sure|here|okay|ok|certainly|of course|absolutely|great|i\b|i'm|as an)", re.IGNORECASE
)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def build_instruction_prompt(instructions: Sequence[str]) -> str:
    """The numbered list of ``instructions`` ending with the next number open, e.g. ``9.``."""
    lines = [_GENERATE_HEADER, ""]
    lines += [f"{i}. {_one_line(t).rstrip(':')}" for i, t in enumerate(instructions, start=1)]
    lines.append(f"{len(instructions) + 1}.")
    return "\n".join(lines)


def _clean_item(text: str) -> str:
    text = _one_line(text).strip("*").strip()
    text = _LABEL_RE.sub("", text).strip("*").strip()
    return text[:1].upper() + text[1:]


def parse_numbered_instructions(text: str) -> list[str]:
    """Instructions in an LM's continuation of a numbered list, in order.

    Items start at ``N.``, ``N)``, ``N:``, ``Task N:`` or ``**N.**`` at the start of a line and
    run on over the following lines up to a blank line. Text before the first number continues
    the item the prompt left open, unless it is a chat preamble ("Sure, here are ...:").
    """
    items: list[list[str]] = []
    lead: list[str] = []
    current: list[str] | None = None
    lead_open = True
    for line in text.replace("\r\n", "\n").split("\n"):
        m = _ITEM_RE.match(line)
        if m:
            current = [line[m.end() :]]
            items.append(current)
        elif not line.strip():
            current, lead_open = None, False
        elif current is not None:
            current.append(line)
        elif not items and lead_open:
            lead.append(line)
    head = _one_line(" ".join(lead))
    if head and not head.endswith(":") and not _PREAMBLE_RE.match(head):
        items.insert(0, [head])
    return [t for t in (_clean_item(" ".join(item)) for item in items) if t]


def instruction_rejection(text: str, cfg: SelfInstructConfig) -> str | None:
    """The reason to drop ``text`` (paper's heuristic filters), or None to keep it."""
    n_words = len(text.split())
    if n_words < cfg.min_words:
        return "too_short"
    if n_words > cfg.max_words:
        return "too_long"
    if _BLACKLIST_RE.search(text):
        return "blacklisted_word"
    if cfg.drop_write_a_program and text.lower().startswith("write a program"):
        return "write_a_program"
    if text[0] in string.punctuation:
        return "starts_with_punctuation"
    if not text[0].isascii():
        return "non_english_start"
    return None


# --- 2. classification identification -------------------------------------------------------

_CLASSIFY_QUESTION = (
    "Can the following task be regarded as a classification task with finite output labels?"
)
_CLASSIFY_SHOTS = (
    ("Decide whether the email below is a job offer or a rejection.", True),
    ("Write a short bedtime story about a sleepy owl.", False),
    ("Tell me whether the word is a noun or a verb.", True),
    ("Suggest three ways to reduce food waste at home.", False),
    ("Label the sentiment of the tweet as positive, negative, or neutral.", True),
    ("Translate the phrase into Italian.", False),
    ("Is the following number divisible by 3?", True),
    ("Summarize the news article in two sentences.", False),
    ("Which season does the description refer to: spring, summer, autumn, or winter?", True),
    ("Explain how a bill becomes a law.", False),
    ("Answer the trivia question.", False),
    ("Rate how difficult the math problem is on a scale from 1 to 5.", True),
)


def build_classification_prompt(instruction: str) -> str:
    """Few-shot Yes/No prompt: is ``instruction`` a classification task with finite labels?"""
    lines = [_CLASSIFY_QUESTION, ""]
    for task, is_clf in _CLASSIFY_SHOTS:
        lines += [f"Task: {task}", f"Is it classification? {'Yes' if is_clf else 'No'}", ""]
    lines += [f"Task: {_one_line(instruction)}", "Is it classification?"]
    return "\n".join(lines)


def parse_classification(text: str) -> bool | None:
    """True for Yes, False for No, None when the answer says neither (or both)."""
    t = text.strip().lower()
    t = re.sub(r"^(?:\d+[.)]\s*|task\s*:\s*)?(?:is it classification\s*\??|answer\s*:)?\s*", "", t)
    m = re.match(r"[\W_]*(yes|no)\b", t)
    if m:
        return m.group(1) == "yes"
    first = t.split("\n", 1)[0]
    if re.search(r"\bnot\b(?: a)? classification\b", first):
        return False
    has_yes, has_no = bool(re.search(r"\byes\b", first)), bool(re.search(r"\bno\b", first))
    return has_yes if has_yes != has_no else None


# --- 3. instance generation -----------------------------------------------------------------

_OUTPUT_FIRST_HEADER = (
    "Given a classification task, write a class label and then an input that has that label. "
    "Cover each possible label. If the task needs no input, write only the class labels."
)
_INPUT_FIRST_HEADER = (
    "Come up with examples for the following tasks. Write several examples when you can. "
    "If a task needs no input, leave out the Input line and write the Output directly."
)
_EXAMPLE_RE = re.compile(r"^\s*(?:\*\*)?example\s*\d+\s*(?:\*\*)?\s*:?\s*(?:\*\*)?\s*", re.I)
_FIELD_RE = re.compile(
    r"^\s*(?:[-*]\s*)?(?:\*\*)?(class\s*label|label|input|output)\s*(?:\*\*)?\s*:\s*(?:\*\*)?\s*",
    re.IGNORECASE,
)
_TASK_RE = re.compile(r"^\s*task\s*:", re.IGNORECASE)


def _shot_lines(task: SeedTask, output_first: bool) -> list[str]:
    lines = [f"Task: {_one_line(task.instruction)}"]
    for k, x in enumerate(task.instances, start=1):
        if output_first:
            lines += [f"Class label: {x.output}"] + ([f"Input: {x.input}"] if x.input else [])
        else:
            lines += [f"Example {k}"] + ([f"Input: {x.input}"] if x.input else [])
            lines.append(f"Output: {x.output}")
    return lines


def build_instance_prompt(
    instruction: str, is_classification: bool, shots: Sequence[SeedTask]
) -> str:
    """Output-first prompt for classification tasks, input-first otherwise, with seed shots."""
    lines = [_OUTPUT_FIRST_HEADER if is_classification else _INPUT_FIRST_HEADER, ""]
    for task in shots:
        lines += _shot_lines(task, is_classification) + [""]
    lines.append(f"Task: {_one_line(instruction)}")
    return "\n".join(lines) + "\n"


def _same_task(a: str, b: str) -> bool:
    return _one_line(a).rstrip(" .:").lower() == _one_line(b).rstrip(" .:").lower()


def _until_next_task(text: str, instruction: str | None) -> list[str]:
    """Lines before the LM starts inventing another task (an echo of the task is skipped)."""
    lines = text.replace("\r\n", "\n").split("\n")
    for i, line in enumerate(lines):
        m = _TASK_RE.match(line)
        if m:
            seen = any(x.strip() for x in lines[:i])
            echo = instruction is None or _same_task(line[m.end() :], instruction)
            if seen or not echo:
                return lines[:i]
            lines[i] = ""
    return lines


def _example_chunks(lines: list[str]) -> list[list[str]]:
    """The lines before the first ``Example N`` header, then those under each header."""
    chunks: list[list[str]] = [[]]
    for line in lines:
        m = _EXAMPLE_RE.match(line)
        if m:
            chunks.append([line[m.end() :]])
        else:
            chunks[-1].append(line)
    return chunks


def _fields(lines: list[str]) -> list[tuple[str, str]]:
    """("input" | "output", value) pairs; a class label is an output; values may span lines."""
    out: list[tuple[str, list[str]]] = []
    for line in lines:
        m = _FIELD_RE.match(line)
        if m:
            key = "input" if m.group(1).lower() == "input" else "output"
            out.append((key, [line[m.end() :]]))
        elif out:
            out[-1][1].append(line)
    return [(k, "\n".join(v).strip()) for k, v in out]


def _pair(fields: dict[str, str]) -> tuple[str, str]:
    inp = fields.get("input", "")
    return ("" if inp.lower().strip(" .") in _NO_INPUT else inp), fields.get("output", "")


def _pairs(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Group fields into (input, output) pairs: a repeated field starts the next pair."""
    pairs: list[tuple[str, str]] = []
    cur: dict[str, str] = {}
    for key, value in fields:
        if key in cur:
            pairs.append(_pair(cur))
            cur = {}
        cur[key] = value
    return [*pairs, _pair(cur)] if cur else pairs


def parse_instances(
    text: str, instruction: str | None = None, *, output_first: bool = False
) -> list[tuple[str, str]]:
    """(input, output) pairs from "Example N / Input: / Output:" or "Class label: / Input:" text.

    Parsing stops where the LM begins another ``Task:`` (other than an echo of
    ``instruction``). A new pair starts at an ``Example N`` header or where a field repeats;
    "None", "N/A" and similar inputs become "". As in the paper, an example (or a whole answer)
    with no fields is an output with no input, except for output-first (classification) answers,
    which need their ``Class label:``. A pair without an output keeps "" (rejected later).
    """
    chunks = _example_chunks(_until_next_task(text, instruction))
    pairs: list[tuple[str, str]] = []
    for k, chunk in enumerate(chunks):
        fields = _fields(chunk)
        free = "\n".join(chunk).strip()
        if fields:
            pairs += _pairs(fields)
        elif free and not output_first and (k > 0 or len(chunks) == 1):
            pairs.append(("", free))
    return pairs


def validate_instances(
    pairs: Sequence[tuple[str, str]], max_instances: int
) -> tuple[list[dict[str, str]], Counter[str]]:
    """Keep valid, distinct instances (at most ``max_instances``); count the rest by reason."""
    rejected: Counter[str] = Counter()
    kept: list[dict[str, str]] = []
    for inp, out in pairs:
        if not out.strip():
            rejected["empty_output"] += 1
        elif inp.strip() == out.strip():
            rejected["input_equals_output"] += 1
        elif {"input": inp, "output": out} in kept:
            rejected["duplicate_instance"] += 1
        else:
            kept.append({"input": inp, "output": out})
    outputs: dict[str, set[str]] = {}
    for x in kept:
        if x["input"]:
            outputs.setdefault(x["input"], set()).add(x["output"])
    if any(len(v) > 1 for v in outputs.values()):  # one input, two answers: trust none
        rejected["conflicting_outputs"] += len(kept)
        return [], rejected
    if len(kept) > max_instances:
        rejected["over_max_instances"] += len(kept) - max_instances
    return kept[:max_instances], rejected


def to_alpaca_rows(tasks: Iterable[Mapping[str, Any] | tuple[int, Any]]) -> list[dict[str, str]]:
    """One ``{"instruction", "input", "output"}`` row per instance of each task row.

    Accepts task dicts or the ``(row_no, row)`` pairs of :func:`~instructkit.io.read_rows`.
    """
    rows = []
    for task in tasks:
        t = task[1] if isinstance(task, tuple) else task
        for x in t["instances"]:
            rows.append(
                {"instruction": t["instruction"], "input": x["input"], "output": x["output"]}
            )
    return rows


def export_alpaca(tasks_path: str | Path, alpaca_path: str | Path) -> int:
    """Write one Alpaca row per instance of the tasks in ``tasks_path``; returns the count."""
    rows = to_alpaca_rows(read_rows(tasks_path)) if Path(tasks_path).stat().st_size else []
    write_jsonl(rows, alpaca_path)
    return len(rows)


# --- the job --------------------------------------------------------------------------------


class _Tally:
    """Counters by reason, with a few examples each, kept in the journal's state file."""

    KINDS = ("rejected_instructions", "rejected_instances", "malformed")

    def __init__(self, state: Mapping[str, Any]) -> None:
        counts = state.get("counts", {})
        self.counts = {k: Counter(counts.get(k, {})) for k in self.KINDS}
        self.examples: dict[str, list[str]] = {
            k: list(v) for k, v in state.get("examples", {}).items()
        }
        self.n_candidates = int(state.get("n_candidates", 0))
        self.n_requests = int(state.get("n_requests", 0))
        self.n_surplus = int(state.get("n_surplus", 0))

    def add(self, kind: str, reason: str, example: str, n: int = 1) -> None:
        self.counts[kind][reason] += n
        shown = self.examples.setdefault(reason, [])
        if len(shown) < _N_EXAMPLES and example[:300] not in shown:
            shown.append(example[:300])
            logger.info("self-instruct %s: %s: %r", kind.replace("_", " "), reason, example[:300])

    def state(self) -> dict[str, Any]:
        return {
            "counts": {k: dict(v) for k, v in self.counts.items()},
            "examples": self.examples,
            "n_candidates": self.n_candidates,
            "n_requests": self.n_requests,
            "n_surplus": self.n_surplus,
        }


def _derive_seed(*parts: object) -> int:
    """A 31-bit seed from the parts (stable across processes, unlike ``hash``)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _ask(
    lm: LM, tally: _Tally, prompts: Sequence[str], seed: int, **params: Any
) -> list[Completion]:
    """One batch of single-turn requests; request i gets its own seed derived from ``seed``."""
    requests = [
        ChatRequest((("user", p),), seed=_derive_seed(seed, i), **params)
        for i, p in enumerate(prompts)
    ]
    tally.n_requests += len(requests)
    return lm.complete(requests, progress=False)


@dataclass
class _Pool:
    """Seed tasks, kept tasks (for prompts), and the ROUGE-L index over both instructions."""

    index: NearDupIndex
    seeds: list[SeedTask]
    machine: list[tuple[str, str]]  # (id, instruction) of the kept tasks

    @classmethod
    def build(
        cls, cfg: SelfInstructConfig, seeds: list[SeedTask], kept: list[dict[str, Any]]
    ) -> _Pool:
        pool = cls(NearDupIndex(cfg.similarity_threshold), seeds, [])
        pool._index([s.instruction for s in seeds])
        pool.add(kept)
        return pool

    def _index(self, texts: list[str]) -> None:
        if texts:  # one vectorised MinHash pass for the batch
            tokens = [rouge_tokens(t) for t in texts]
            for tok, keys in zip(tokens, self.index.band_keys(tokens), strict=True):
                self.index.add_tokens(tok, keys)

    def add(self, rows: list[dict[str, Any]]) -> None:
        self._index([r["instruction"] for r in rows])
        self.machine += [(r["id"], r["instruction"]) for r in rows]

    def too_similar(self, text: str, round_index: NearDupIndex) -> bool:
        """ROUGE-L >= threshold with a pooled instruction, or with one earlier this round."""
        sim, match = self.index.query(text)
        if match is not None and sim >= self.index.threshold:
            return True
        return not round_index.add_if_novel(text)[0]


def _sample_prompt(
    rng: random.Random, pool: _Pool, cfg: SelfInstructConfig
) -> list[tuple[str, str]]:
    """(id, instruction) of the prompt's tasks: kept tasks first sampled, seeds fill the rest."""
    k = cfg.num_prompt_instructions
    machine = rng.sample(pool.machine, min(k - cfg.n_seed_in_prompt, len(pool.machine)))
    seeds = rng.sample(pool.seeds, k - len(machine))
    chosen = machine + [(s.id, s.instruction) for s in seeds]
    rng.shuffle(chosen)
    return chosen


def _instructions_in(completion: Completion, tally: _Tally) -> list[str]:
    text = completion.text
    if not text.strip():
        tally.add("malformed", "empty_completion", text)
        return []
    items = parse_numbered_instructions(text)
    if not items:
        tally.add("malformed", "no_numbered_list", text)
        return []
    tally.n_candidates += len(items)
    if completion.finish_reasons[:1] == ["length"]:  # the last item was cut off mid-sentence
        tally.add("rejected_instructions", "truncated", items.pop())
    return items


Candidate = tuple[str, list[str]]  # (instruction, ids of the prompt's tasks)


def _generate_instructions(
    cfg: SelfInstructConfig, lm: LM, pool: _Pool, rng: random.Random, round_no: int, tally: _Tally
) -> list[Candidate]:
    """Step 1 and 2: prompt for new instructions, parse them, filter them."""
    prompts = [_sample_prompt(rng, pool, cfg) for _ in range(cfg.prompts_per_round)]
    completions = _ask(
        lm,
        tally,
        [build_instruction_prompt([text for _, text in p]) for p in prompts],
        _derive_seed(cfg.seed, round_no, "instructions"),
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_tokens=cfg.max_tokens,
        stop=(f"\n{2 * cfg.num_prompt_instructions}.",),
    )
    round_index = NearDupIndex(cfg.similarity_threshold)
    out: list[Candidate] = []
    for prompt, completion in zip(prompts, completions, strict=True):
        for text in _instructions_in(completion, tally):
            reason = instruction_rejection(text, cfg)
            if reason is None and pool.too_similar(text, round_index):
                reason = "too_similar"
            if reason:
                tally.add("rejected_instructions", reason, text)
            else:
                out.append((text, [task_id for task_id, _ in prompt]))
    return out


def _classify(
    cfg: SelfInstructConfig, lm: LM, candidates: list[Candidate], round_no: int, tally: _Tally
) -> list[bool]:
    """Step 3: is each candidate a classification task? (an unclear answer counts as No)."""
    prompts = [build_classification_prompt(text) for text, _ in candidates]
    seed = _derive_seed(cfg.seed, round_no, "classify")
    completions = _ask(lm, tally, prompts, seed, temperature=0.0, max_tokens=8)
    flags = []
    for (text, _), completion in zip(candidates, completions, strict=True):
        flag = parse_classification(completion.text)
        if flag is None:
            tally.add("malformed", "unclear_classification", f"{text} -> {completion.text!r}")
        flags.append(bool(flag))
    return flags


def _generate_instances(
    cfg: SelfInstructConfig,
    lm: LM,
    pool: _Pool,
    todo: list[tuple[str, bool]],
    rng: random.Random,
    round_no: int,
    tally: _Tally,
) -> list[list[dict[str, str]]]:
    """Step 4: instances for each (instruction, is_classification), validated."""
    by_kind = {
        f: [s for s in pool.seeds if s.is_classification == f] or pool.seeds for f in (False, True)
    }
    prompts = []
    for text, flag in todo:
        shots = rng.sample(by_kind[flag], min(cfg.instance_shots, len(by_kind[flag])))
        prompts.append(build_instance_prompt(text, flag, shots))
    seed = _derive_seed(cfg.seed, round_no, "instances")
    stop = ("\nTask:", f"Example {cfg.max_instances + 1}")
    completions = _ask(
        lm, tally, prompts, seed, temperature=0.0, max_tokens=cfg.max_tokens, stop=stop
    )
    out = []
    for (text, flag), completion in zip(todo, completions, strict=True):
        pairs = parse_instances(completion.text, text, output_first=flag)
        if not pairs:
            tally.add("malformed", "no_instances_parsed", f"{text} -> {completion.text!r}")
        kept, rejected = validate_instances(pairs, cfg.max_instances)
        for reason, n in rejected.items():
            tally.add("rejected_instances", reason, f"{text} -> {completion.text!r}", n)
        out.append(kept)
    return out


def _run_round(
    cfg: SelfInstructConfig, lm: LM, pool: _Pool, round_no: int, start_id: int, tally: _Tally
) -> list[dict[str, Any]]:
    """One round of the pipeline; returns the kept task rows (not yet written or pooled)."""
    rng = random.Random(_derive_seed(cfg.seed, round_no, "round"))
    candidates = _generate_instructions(cfg, lm, pool, rng, round_no, tally)
    if not candidates:
        return []
    flags = _classify(cfg, lm, candidates, round_no, tally)
    todo = [(text, flag) for (text, _), flag in zip(candidates, flags, strict=True)]
    instances = _generate_instances(cfg, lm, pool, todo, rng, round_no, tally)
    rows: list[dict[str, Any]] = []
    for (text, parents), flag, kept in zip(candidates, flags, instances, strict=True):
        if not kept:
            tally.add("rejected_instructions", "no_valid_instances", text)
            continue
        rows.append(
            {
                "id": f"si-{start_id + len(rows):06d}",
                "instruction": text,
                "instances": kept,
                "is_classification": flag,
                "round": round_no,
                "source": SOURCE,
                "parents": parents,
            }
        )
    return rows


def _open_job(
    cfg: SelfInstructConfig, lm: LM, seeds: list[SeedTask], out_path: str | Path, fresh: bool
) -> Job:
    seed_rows = [
        [s.id, s.instruction, [[x.input, x.output] for x in s.instances], s.is_classification]
        for s in seeds
    ]
    # the target may grow between a run and its resumption; everything else must match
    # the seeds count by content (seed_rows), not by where they were read from
    exclude = ("num_instructions", "max_stale_rounds", "seeds")
    fp = fingerprint(cfg, exclude=exclude, seeds=seed_rows, lm=lm.name)
    job = Job(out_path, fp, fresh=fresh)
    for row_no, row in enumerate(job.records, start=1):
        ok = isinstance(row, dict) and row.get("source") == SOURCE
        if not ok or not isinstance(row.get("instruction"), str) or "instances" not in row:
            raise DataFormatError(
                "this row is not a Self-Instruct task (the output file holds other data).",
                path=out_path,
                row=row_no,
                field="source",
                fix="choose another output path, or start over with --fresh (fresh=True).",
            )
    return job


def _check_seeds(seeds: list[SeedTask], cfg: SelfInstructConfig) -> list[SeedTask]:
    if len(seeds) < cfg.num_prompt_instructions:
        raise ConfigError(
            f"{len(seeds)} seed tasks are fewer than num_prompt_instructions="
            f"{cfg.num_prompt_instructions}.",
            fix="add seed tasks, or lower num_prompt_instructions.",
        )
    return seeds


def _next_round(job: Job) -> int:
    """The state's next round; the rows' last round + 1 if a kill came before the state save."""
    last = max((int(r.get("round", -1)) for r in job.records), default=-1)
    return max(int(job.state.get("next_round", 0)), last + 1)


def run_self_instruct(
    cfg: SelfInstructConfig,
    lm: LM,
    seeds: Sequence[SeedTask],
    out_path: str | Path,
    *,
    fresh: bool = False,
    progress: bool = True,
) -> SelfInstructResult:
    """Generate tasks until ``out_path`` holds ``cfg.num_instructions`` (resumes if it exists).

    Stops early, with ``reached_target=False``, after ``max_stale_rounds`` rounds in a row that
    keep nothing. ``fresh=True`` deletes an earlier output and its state first.
    """
    seeds = _check_seeds(list(seeds), cfg)
    job = _open_job(cfg, lm, seeds, out_path, fresh)
    tally, pool = _Tally(job.state), _Pool.build(cfg, seeds, job.records)
    n_resumed, round_no = len(job.records), _next_round(job)
    if n_resumed and progress:
        tqdm.write(
            f"resuming {out_path}: {n_resumed} of {cfg.num_instructions} tasks already "
            f"written; continuing at round {round_no}"
        )
    stale = 0
    bar = tqdm(
        total=cfg.num_instructions,
        initial=min(n_resumed, cfg.num_instructions),
        desc="self-instruct",
        unit="task",
        disable=not progress,
    )
    with bar:
        while len(job.records) < cfg.num_instructions and stale < cfg.max_stale_rounds:
            rows = _run_round(cfg, lm, pool, round_no, len(job.records), tally)
            need = cfg.num_instructions - len(job.records)
            tally.n_surplus += len(rows[need:])
            job.append(rows[:need])
            pool.add(rows[:need])
            round_no += 1
            job.save_state(next_round=round_no, **tally.state())
            stale = 0 if rows else stale + 1
            bar.update(len(rows[:need]))
            bar.set_postfix(
                round=round_no, rejected=sum(tally.counts["rejected_instructions"].values())
            )
    return _result(cfg, job, tally, n_resumed, round_no)


def _result(
    cfg: SelfInstructConfig, job: Job, tally: _Tally, n_resumed: int, rounds: int
) -> SelfInstructResult:
    rows = job.records
    return SelfInstructResult(
        out_path=str(job.out),
        n_kept=len(rows),
        n_new=len(rows) - n_resumed,
        n_resumed=n_resumed,
        n_instances=sum(len(r["instances"]) for r in rows),
        n_classification=sum(bool(r.get("is_classification")) for r in rows),
        rounds=rounds,
        n_candidates=tally.n_candidates,
        n_requests=tally.n_requests,
        n_surplus=tally.n_surplus,
        rejected_instructions=dict(tally.counts["rejected_instructions"].most_common()),
        rejected_instances=dict(tally.counts["rejected_instances"].most_common()),
        malformed=dict(tally.counts["malformed"].most_common()),
        examples=tally.examples,
        reached_target=len(rows) >= cfg.num_instructions,
    )
