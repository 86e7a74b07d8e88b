"""Evol-Instruct: grow harder and rarer instructions from seeds with an LM, round by round.

Xu et al. 2023, "WizardLM: Empowering Large Language Models to Follow Complex Instructions".
Each round, every instruction in the pool is rewritten by one operation drawn with a seeded RNG:
five *in-depth* ones (add a constraint, deepen, concretize, add reasoning steps, complicate the
input) and one *in-breadth* one (a new instruction on a rarer topic of the same domain). The LM
then answers the evolved instruction. Evolutions that fail an elimination rule are written to a
rejects file with a reason code and their parent stays in the pool for the next round, as in
the paper. Usage::

    cfg = EvolConfig(rounds=3, seed=0)
    seeds = load_instructions("alpaca.json")
    result = run_evol(cfg, lm, seeds, "evol.jsonl")  # rejects in evol.rejects.jsonl

Output rows are Alpaca rows (``instruction``, ``output``) that carry their lineage: ``id``,
``parent_id``, ``root_id`` (the seed), ``operation`` and ``round``; ``load_records`` reads them
back directly. The seeds themselves are not copied to the output: the paper's training set is
the seeds plus every round's output. Runs resume: each finished (round, item) unit is appended
to the output or the rejects file (:class:`~instructkit.jobs.Job`); a restart skips
finished units and rebuilds the pool from them. Every random choice and request seed derives from
(seed, round, item id), so a resumed run writes exactly what an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm.auto import tqdm

from instructkit.data.formats import load_records
from instructkit.data.records import Conversation
from instructkit.data.similarity import normalize_for_exact, rouge_l_f, rouge_tokens
from instructkit.data.sources import SourceField, SpecLike, read_source_rows, source_label
from instructkit.errors import DataFormatError, LMError
from instructkit.io import beside
from instructkit.jobs import Job, fingerprint
from instructkit.lm.base import LM, ChatRequest

__all__ = [
    "OPERATIONS",
    "IN_DEPTH",
    "EVOL_PROMPTS",
    "LEAK_PHRASES",
    "REFUSAL_PHRASES",
    "STOP_WORDS",
    "EvolConfig",
    "EvolResult",
    "Candidate",
    "INSTRUCTION_RULES",
    "RESPONSE_RULES",
    "template_leak",
    "too_long",
    "identical_to_parent",
    "no_new_information",
    "too_short",
    "only_stop_words",
    "refusal",
    "copies_response",
    "first_failure",
    "choose_operation",
    "render_evol_prompt",
    "load_instructions",
    "run_evol",
]

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- prompts (data)

IN_DEPTH = ("add_constraints", "deepen", "concretize", "increase_reasoning", "complicate_input")
OPERATIONS = (*IN_DEPTH, "breadth")

_DEPTH_FRAME = """\
You turn a task prompt into a harder version of itself, so that even a strong AI assistant \
must work to answer it well. Rewrite the #Given Prompt# with this method:
{method}
Rules for the #Rewritten Prompt#:
- A person must still be able to understand it and answer it.
- Keep everything the #Given Prompt# contains that is not plain text (tables, code, data).
- Add only 10 to 20 words to the #Given Prompt#; do not pad it or make it wordy.
- Reply with the rewritten prompt alone. Never mention the #Given Prompt#, the \
#Rewritten Prompt#, the method or these rules in it.

#Given Prompt#:
{instruction}

#Rewritten Prompt#:
"""

_BREADTH_FRAME = """\
You write new task prompts for an AI assistant. Taking the #Given Prompt# as inspiration, \
write a brand-new prompt for the #Created Prompt#.
Rules for the #Created Prompt#:
- It belongs to the same domain as the #Given Prompt# but treats a rarer, long-tail topic.
- It is about as long and as hard as the #Given Prompt#.
- A person must be able to understand it and answer it.
- Reply with the created prompt alone. Never mention the #Given Prompt#, the #Created Prompt# \
or these rules in it.

#Given Prompt#:
{instruction}

#Created Prompt#:
"""

_METHODS = {
    "add_constraints": "Add exactly one more constraint or requirement that a good answer "
    "must satisfy.",
    "deepen": "Where the prompt asks about a subject, ask about it in more depth and from "
    "a wider angle.",
    "concretize": "Replace a general idea in the prompt with a more specific, concrete one.",
    "increase_reasoning": "Where the prompt can be answered with one or two obvious steps, "
    "reword it so that the answer needs explicit reasoning over several steps.",
    "complicate_input": "Give the prompt a concrete input to work on: a small table, a code "
    "snippet, a JSON or CSV sample, or a formula, written in the proper format, and make the "
    "prompt refer to it. The added input does not count toward the word limit.",
}

# One template per operation; ``{instruction}`` is filled by :func:`render_evol_prompt`.
EVOL_PROMPTS: dict[str, str] = {
    **{op: _DEPTH_FRAME.replace("{method}", m) for op, m in _METHODS.items()},
    "breadth": _BREADTH_FRAME,
}

# ---------------------------------------------------------------------------- word lists (data)

LEAK_PHRASES = tuple(
    "given prompt|rewritten prompt|created prompt|#given|#rewritten|#created|evolution".split("|")
)
REFUSAL_PHRASES = tuple(
    "as an ai|i cannot|i can't|i can not|i am unable|i'm unable|i am not able|i'm not able|"
    "i apologize|i'm sorry|i am sorry|i won't be able".split("|")
)
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing don down during each few for
    from further had has have having he her here hers herself him himself his how i if in into
    is it its itself just ll me more most my myself no nor not now of off on once only or other
    our ours ourselves out over own re s same she should so some such t than that the their
    theirs them themselves then there these they this those through to too under until up ve
    very was we were what when where which while who whom why will with would you your yours
    yourself yourselves yes ok okay d m""".split()
)
NO_GAIN_ROUGE = 0.9  # ROUGE-L F at or above which an evolution adds nothing
SORRY_MAX_WORDS = 80  # the paper: a short answer containing "sorry" is a failed evolution
_OPENING_CHARS = 160  # refusal phrases count only near the start of a response

# ---------------------------------------------------------------------------- config and result


class EvolConfig(BaseModel):
    """The ``synth evol`` workflow; YAML keys, attributes and CLI flags share these names."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(4, ge=1)
    operations: dict[str, float] = Field(default_factory=lambda: dict.fromkeys(OPERATIONS, 1.0))
    temperature: float = Field(0.7, ge=0)
    max_tokens: int = Field(1024, gt=0)  # per LM call, rewrites and responses alike
    seed: int = 0
    min_response_words: int = Field(5, ge=0)
    max_instruction_words: int = Field(512, gt=0)
    keep_failed: bool = False  # also write eliminated rows (with their reason) to the output
    chunk_size: int | None = Field(None, gt=0)  # requests per LM call; None: a whole round
    # the seed instructions when the SRC argument is left out: a path or a dataset spec (path,
    # split, subset, columns, format, file_type; docs/data.md)
    seeds: SourceField | None = None

    @field_validator("operations")
    @classmethod
    def _check_operations(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(OPERATIONS))
        if unknown:
            raise ValueError(f"unknown operation(s) {unknown}; valid: {', '.join(OPERATIONS)}")
        if any(w < 0 for w in v.values()) or not any(w > 0 for w in v.values()):
            raise ValueError("weights must be >= 0 with at least one > 0")
        return v


@dataclass
class EvolResult:
    """Counts of a finished run (units resumed from an earlier run included)."""

    out_path: Path
    rejects_path: Path
    n_seeds: int
    kept_per_round: dict[int, int] = field(default_factory=dict)
    eliminated_per_round: dict[int, int] = field(default_factory=dict)
    per_operation: dict[str, dict[str, int]] = field(default_factory=dict)  # op -> kept/elim.
    per_reason: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # reason -> rows
    n_resumed: int = 0  # units read back instead of computed

    @property
    def n_kept(self) -> int:
        return sum(self.kept_per_round.values())

    @property
    def n_eliminated(self) -> int:
        return sum(self.eliminated_per_round.values())


# ---------------------------------------------------------------------------- elimination rules


@dataclass(frozen=True)
class Candidate:
    """One evolution to judge: the parent instruction, the evolved one, the LM's response."""

    parent: str
    instruction: str
    response: str = ""
    operation: str = ""


def _words(text: str) -> list[str]:
    return text.split()


def template_leak(c: Candidate, cfg: EvolConfig) -> str | None:
    """Rule 4, ``template_leak``: the evolved instruction copies words of the evolution prompt.

    The paper drops evolutions that echo the prompt ("given prompt", "#Rewritten Prompt#"):
    the LM answered the meta-task instead of writing a task. A phrase the parent already held
    (a biology question about evolution) is not a leak.
    """
    text, parent = c.instruction.lower(), c.parent.lower()
    hit = next((p for p in LEAK_PHRASES if p in text and p not in parent), None)
    return None if hit is None else f"contains {hit!r}"


def too_long(c: Candidate, cfg: EvolConfig) -> str | None:
    """Rule 7, ``too_long``: more than ``max_instruction_words`` words.

    Each rewrite may add only 10-20 words; a far longer one has run away (repetition, an
    answer pasted in) and would not fit a training context anyway.
    """
    n = len(_words(c.instruction))
    return f"{n} words > {cfg.max_instruction_words}" if n > cfg.max_instruction_words else None


def identical_to_parent(c: Candidate, cfg: EvolConfig) -> str | None:
    """Rule 6a, ``identical_to_parent``: the same text as the parent after normalizing.

    The LM returned its input unchanged (case, punctuation and spacing aside): no evolution.
    """
    same = normalize_for_exact(c.instruction) == normalize_for_exact(c.parent)
    return "same text as the parent" if same else None


def no_new_information(c: Candidate, cfg: EvolConfig) -> str | None:
    """Rule 1, ``no_new_information``: the evolution adds nothing to the parent.

    The paper asks ChatGPT whether two instructions are equal; we use two lexical tests that
    need no LM: every word of the evolved text already occurs in the parent (a reordering or a
    cut), or ROUGE-L F >= 0.9 (a near copy with a word or two changed). Empty rewrites fail too.
    """
    new, old = rouge_tokens(c.instruction), rouge_tokens(c.parent)
    if not new:
        return "empty rewrite"
    if set(new) <= set(old):
        return "no word that the parent lacks"
    f = rouge_l_f(old, new)
    return f"ROUGE-L {f:.2f} with the parent" if f >= NO_GAIN_ROUGE else None


def too_short(c: Candidate, cfg: EvolConfig) -> str | None:
    """Rule 3, ``too_short``: an empty response or fewer than ``min_response_words`` words.

    Evolved instructions are harder by construction; a reply of a few words means the LM did
    not take it on (cut off, or an instruction it could not parse).
    """
    n = len(_words(c.response))
    if n == 0:
        return "empty response"
    return f"{n} words < {cfg.min_response_words}" if n < cfg.min_response_words else None


def only_stop_words(c: Candidate, cfg: EvolConfig) -> str | None:
    """Rule 5, ``only_stop_words``: the response is nothing but punctuation and stop words.

    One of the paper's failure cases: such a reply carries no content to learn from.
    """
    tokens = rouge_tokens(c.response)
    return "only punctuation and stop words" if all(t in STOP_WORDS for t in tokens) else None


def refusal(c: Candidate, cfg: EvolConfig) -> str | None:
    """Rule 2, ``refusal``: the LM refused or apologized instead of answering.

    The paper drops responses that contain "sorry" and are shorter than 80 words: the
    evolution made the instruction too hard or impossible. Refusal openers ("As an AI",
    "I cannot", ...) count only near the start, where they decline; later in a long answer
    they are ordinary prose.
    """
    text = c.response.lower().replace("\u2019", "'")
    n = len(_words(text))
    if "sorry" in text and n < SORRY_MAX_WORDS:
        return f"'sorry' in a {n}-word response"
    hit = next((p for p in REFUSAL_PHRASES if p in text[:_OPENING_CHARS]), None)
    return None if hit is None else f"opens with {hit!r}"


def copies_response(c: Candidate, cfg: EvolConfig) -> str | None:
    """Rule 6b, ``copies_response``: instruction and response are (nearly) the same text.

    Either the rewrite was an answer rather than a task, or the LM echoed the task back:
    the pair teaches nothing. Same ROUGE-L threshold as rule 1.
    """
    f = rouge_l_f(rouge_tokens(c.instruction), rouge_tokens(c.response))
    return f"ROUGE-L {f:.2f} between instruction and response" if f >= NO_GAIN_ROUGE else None


Rule = Callable[[Candidate, EvolConfig], str | None]
# Checked in order, the first failure names the reason; instruction rules run before the LM is
# asked for a response, so failed rewrites cost no response call.
INSTRUCTION_RULES: tuple[tuple[str, Rule], ...] = (
    ("template_leak", template_leak),
    ("too_long", too_long),
    ("identical_to_parent", identical_to_parent),
    ("no_new_information", no_new_information),
)
RESPONSE_RULES: tuple[tuple[str, Rule], ...] = (
    ("too_short", too_short),
    ("only_stop_words", only_stop_words),
    ("refusal", refusal),
    ("copies_response", copies_response),
)


def first_failure(
    rules: Sequence[tuple[str, Rule]], c: Candidate, cfg: EvolConfig
) -> tuple[str, str] | None:
    """(reason code, detail) of the first rule that ``c`` fails, or None when it passes all."""
    for code, rule in rules:
        detail = rule(c, cfg)
        if detail is not None:
            return code, detail
    return None


# ---------------------------------------------------------------------------- small pure helpers


def _unit_seed(seed: int, rnd: int, item_id: str, purpose: str) -> int:
    """A 32-bit seed from (seed, round, item id, purpose), stable across runs and processes."""
    digest = hashlib.sha256(f"{seed}|{rnd}|{item_id}|{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def choose_operation(weights: dict[str, float], seed: int, rnd: int, item_id: str) -> str:
    """The operation for one item in one round: a weighted draw seeded by (seed, round, id)."""
    ops = [op for op in OPERATIONS if weights.get(op, 0) > 0]
    rng = random.Random(_unit_seed(seed, rnd, item_id, "operation"))
    return rng.choices(ops, weights=[weights[op] for op in ops])[0]


def render_evol_prompt(operation: str, instruction: str) -> str:
    """The evolution prompt of ``operation`` around ``instruction`` (braces in it are safe)."""
    return EVOL_PROMPTS[operation].replace("{instruction}", instruction)


# ---------------------------------------------------------------------------- input


def load_instructions(spec: SpecLike) -> list[dict[str, Any]]:
    """Seeds ``{id?, instruction, response?}`` from any source :func:`load_records` reads (a
    path or a dataset spec with split, subset, columns, format, file_type).

    Rows that all have ``instruction`` are read directly (Alpaca ``input`` is appended; the
    response, from ``output`` or ``response``, is optional). Anything else goes through
    ``load_records``: the first user message is the instruction and the assistant turn after
    it (or the chosen one of a preference pair) the response.
    """
    rows, path = read_source_rows(spec), source_label(spec)
    if all(isinstance(v, dict) and "instruction" in v for _, v in rows):
        return [_plain_seed(v, path, row_no) for row_no, v in rows]
    seeds = []
    loaded = load_records(spec)
    for record in loaded.records:
        conv = record if isinstance(record, Conversation) else record.chosen_conversation()
        turns = conv.turns
        seed: dict[str, Any] = {"instruction": turns[0].text}
        if len(turns) > 1:
            seed["response"] = turns[1].text
        if "id" in record.metadata:
            seed["id"] = record.metadata["id"]
        seeds.append(seed)
    return seeds


def _plain_seed(row: dict[str, Any], path: object, row_no: int) -> dict[str, Any]:
    text = row["instruction"]
    if not isinstance(text, str) or not text.strip():
        fix = "give every row a non-empty 'instruction' string."
        raise DataFormatError(
            "expected a non-empty string.", path=path, row=row_no, field="instruction", fix=fix
        )
    extra = row.get("input")
    seed: dict[str, Any] = {"instruction": f"{text}\n\n{extra}" if extra else text}
    response = row.get("output", row.get("response"))
    if isinstance(response, str) and response.strip():
        seed["response"] = response
    if row.get("id") is not None:
        seed["id"] = row["id"]
    return seed


def _seed_items(instructions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pool items for round 0: ids from the input (or ``seed-N``), checked to be unique."""
    items: list[dict[str, Any]] = []
    first_row: dict[str, int] = {}
    for i, d in enumerate(instructions):
        text = d.get("instruction")
        if not isinstance(text, str) or not text.strip():
            raise DataFormatError(
                "expected a non-empty string.",
                row=i + 1,
                field="instruction",
                fix="drop or fill the empty instruction.",
            )
        item_id = str(d["id"]) if d.get("id") is not None else f"seed-{i}"
        if item_id in first_row:
            msg = f"duplicate id {item_id!r} (first at row {first_row[item_id]})."
            raise DataFormatError(msg, row=i + 1, field="id", fix="give every seed its own id.")
        first_row[item_id] = i + 1
        items.append({"id": item_id, "root_id": item_id, "round": 0, "instruction": text})
    return items


# ---------------------------------------------------------------------------- one chunk of a round


def _complete(lm: LM, requests: list[ChatRequest], progress: bool) -> list[str]:
    if not requests:
        return []
    out = lm.complete(requests, progress=progress)
    if len(out) != len(requests):
        raise LMError(
            f"{lm.name} answered {len(out)} of {len(requests)} requests.",
            fix="check the backend; every request needs one completion.",
        )
    return [c.text.strip() for c in out]


def _request(cfg: EvolConfig, text: str, rnd: int, item_id: str, purpose: str) -> ChatRequest:
    """One user-turn request, its sampling seed derived from (seed, round, item, purpose)."""
    return ChatRequest(
        (("user", text),),
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        seed=_unit_seed(cfg.seed, rnd, item_id, purpose),
    )


def _row(item: dict[str, Any], op: str, rnd: int, instruction: str) -> dict[str, Any]:
    """An output row with its lineage; ``output`` is filled once the LM has answered."""
    return {
        "id": f"{item['root_id']}.r{rnd}",
        "parent_id": item["id"],
        "root_id": item["root_id"],
        "operation": op,
        "round": rnd,
        "instruction": instruction,
        "output": None,
    }


def _evolve_chunk(
    cfg: EvolConfig, lm: LM, items: list[dict[str, Any]], rnd: int, progress: bool
) -> list[dict[str, Any]]:
    """Rewrite every item (one LM call), answer those whose rewrite passed (one call), judge."""
    ops = [choose_operation(cfg.operations, cfg.seed, rnd, it["id"]) for it in items]
    rewrite_requests = [
        _request(cfg, render_evol_prompt(op, it["instruction"]), rnd, it["id"], "rewrite")
        for op, it in zip(ops, items, strict=True)
    ]
    rows = [
        _row(it, op, rnd, text)
        for it, op, text in zip(items, ops, _complete(lm, rewrite_requests, progress), strict=True)
    ]
    verdicts = [
        first_failure(INSTRUCTION_RULES, Candidate(it["instruction"], r["instruction"]), cfg)
        for it, r in zip(items, rows, strict=True)
    ]
    ask = [i for i, v in enumerate(verdicts) if v is None]
    answer_requests = [
        _request(cfg, rows[i]["instruction"], rnd, items[i]["id"], "answer") for i in ask
    ]
    answers = _complete(lm, answer_requests, progress)
    for i, text in zip(ask, answers, strict=True):
        rows[i]["output"] = text
        c = Candidate(items[i]["instruction"], rows[i]["instruction"], text, ops[i])
        verdicts[i] = first_failure(RESPONSE_RULES, c, cfg)
    for it, row, v in zip(items, rows, verdicts, strict=True):
        if v is not None:
            row.update(reason=v[0], detail=v[1], parent_instruction=it["instruction"])
    return rows


# ---------------------------------------------------------------------------- resume bookkeeping


def _open_job(
    cfg: EvolConfig, lm: LM, seeds: list[dict[str, Any]], out: Path, rejects: Path, fresh: bool
) -> Job:
    """The run's job; rounds may grow and chunks change between a run and its resumption."""
    seed_rows = [(s["id"], s["instruction"]) for s in seeds]
    # the seeds count by content (seed_rows), not by where they were read from
    exclude = ("rounds", "chunk_size", "seeds")
    fp = fingerprint(cfg, exclude=exclude, seeds=seed_rows, lm=lm.name)
    job = Job(out, fp, fresh=fresh, journals={"rejects": rejects})
    if cfg.keep_failed:  # a kill between the two appends of a unit: finish the second one
        have = {r["id"] for r in job.records}
        job.append(r for r in job.records_of("rejects") if r["id"] not in have)
    return job


def _finished_units(job: Job) -> dict[tuple[int, str], dict[str, Any]]:
    """(round, root id) -> the row that finished that unit, read back from both files."""
    done = {(r["round"], r["root_id"]): r for r in job.records_of("rejects")}
    done.update({(r["round"], r["root_id"]): r for r in job.records if "reason" not in r})
    return done


def _record(rows: list[dict[str, Any]], job: Job, keep_failed: bool) -> None:
    job.append((r for r in rows if "reason" in r), to="rejects")  # first: see _open_job
    job.append(r for r in rows if keep_failed or "reason" not in r)


def _tally(result: EvolResult, rnd: int, rows: list[dict[str, Any]]) -> None:
    """Add one finished round to the counts, keeping up to 3 example rows per reason."""
    failed = [r for r in rows if "reason" in r]
    result.kept_per_round[rnd] = len(rows) - len(failed)
    result.eliminated_per_round[rnd] = len(failed)
    for r in rows:
        op = result.per_operation.setdefault(r["operation"], {"kept": 0, "eliminated": 0})
        op["eliminated" if "reason" in r else "kept"] += 1
    for r in failed:
        result.per_reason[r["reason"]] = result.per_reason.get(r["reason"], 0) + 1
        examples = result.examples.setdefault(r["reason"], [])
        if len(examples) < 3:
            examples.append(r)


def _log_round(result: EvolResult, rnd: int, rows: list[dict[str, Any]]) -> None:
    log.info(
        "evol round %d: %d kept, %d eliminated",
        rnd,
        result.kept_per_round.get(rnd, 0),
        result.eliminated_per_round.get(rnd, 0),
    )
    seen: set[str] = set()
    for r in rows:
        if "reason" in r and r["reason"] not in seen:
            seen.add(r["reason"])
            log.info("  e.g. %s (%s): %.120r", r["reason"], r["detail"], r["instruction"])


# ---------------------------------------------------------------------------- the workflow


def run_evol(
    cfg: EvolConfig,
    lm: LM,
    instructions: Sequence[dict[str, Any]],
    out_path: str | Path,
    rejects_path: str | Path | None = None,
    progress: bool = True,
    *,
    fresh: bool = False,
) -> EvolResult:
    """Evolve ``instructions`` for ``cfg.rounds`` rounds; kept rows to ``out_path``.

    Eliminated evolutions go to ``rejects_path`` (default ``OUT.rejects.jsonl``) with
    ``reason``, ``detail`` and ``parent_instruction``. An existing output of the same run is
    resumed; ``fresh=True`` deletes it first.
    """
    out_path = Path(out_path)
    rejects_path = Path(rejects_path or beside(out_path, ".rejects.jsonl"))
    seeds = _seed_items(instructions)
    job = _open_job(cfg, lm, seeds, out_path, rejects_path, fresh)
    done = _finished_units(job)
    result = EvolResult(out_path, rejects_path, len(seeds))
    pool = {s["root_id"]: s for s in seeds}  # root id -> its latest kept evolution
    for rnd in range(1, cfg.rounds + 1):
        todo = [it for root, it in pool.items() if (rnd, root) not in done]
        result.n_resumed += len(pool) - len(todo)
        size = cfg.chunk_size or max(len(todo), 1)
        bar = tqdm(
            total=len(pool),
            initial=len(pool) - len(todo),
            desc=f"evol round {rnd}",
            unit="item",
            disable=not progress,
        )
        for start in range(0, len(todo), size):
            rows = _evolve_chunk(cfg, lm, todo[start : start + size], rnd, progress)
            _record(rows, job, cfg.keep_failed)
            done.update({(rnd, r["root_id"]): r for r in rows})
            bar.update(len(rows))
        bar.close()
        rows = [done[(rnd, root)] for root in pool]
        pool.update({r["root_id"]: r for r in rows if "reason" not in r})
        _tally(result, rnd, rows)
        _log_round(result, rnd, rows)
        job.save_state(rounds_done=rnd)
    return result
