"""LLM quality ratings of instruction data (AlpaGasus), as a scorer for the data filter.

AlpaGasus (Chen et al. 2023, "AlpaGasus: Training a Better Alpaca with Fewer Data") has an LLM
rate every (instruction, input, response) triplet (ChatGPT, on a 0-5 scale, for accuracy in its
main prompt) and keeps those rated >= 4.5. Here the scale is 1-5 with every point spelled out,
accuracy and helpfulness are judged together, the threshold is ``judge_threshold`` (default 4),
and a multi-turn conversation is rated on its last exchange with the earlier turns as context.

:class:`QualityScorer` wraps any :class:`~instructkit.lm.base.LM` into a
:data:`~instructkit.data.quality_filter.Scorer` for ``filter_records`` and ``run_filter``.
Requests are greedy; identical records are rated once. With ``journal=PATH`` each batch of
ratings is appended to a :class:`~instructkit.jobs.Job` journal keyed by
:func:`~instructkit.lm.base.request_key` (model, prompt, parameters), so a killed run loses at
most the batch in flight and a rerun asks only for the ratings still missing::

    scorer = QualityScorer(lm, journal="clean.judge.jsonl", batch_size=16)
    result = filter_records(records, QualityConfig(), scorer=scorer)
    print(scorer.summary())  # requests sent, ratings read back from the journal
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from instructkit.data.quality_config import QualityConfig
from instructkit.data.records import Conversation
from instructkit.errors import ConfigError, LMError
from instructkit.evaluate.judge import parse_score
from instructkit.io import beside
from instructkit.jobs import Job, fingerprint
from instructkit.lm.base import LM, ChatRequest, request_key
from instructkit.lm.options import LMOptions, build_lm_from

__all__ = [
    "RATING_SYSTEM",
    "RATING_TEMPLATE",
    "rating_request",
    "rating_of",
    "QUALITY_SCALE",
    "QualityScorer",
    "build_quality_scorer",
]

QUALITY_SCALE = (1, 5)  # the rating scale of the prompt below (AlpaGasus)
RATING_SYSTEM = "You review training examples for an AI assistant and rate each response."
RATING_TEMPLATE = """Rate the response to the instruction below on a scale from 1 to 5.

Judge accuracy (is everything it says correct?) and helpfulness (does it do what the \
instruction asks, completely and clearly?).
1 = wrong, off-topic or unusable; 2 = mostly wrong or unhelpful; 3 = partly correct or \
incomplete; 4 = correct and helpful with minor flaws; 5 = correct, complete and as helpful as \
it could be.

{context}### Instruction
{instruction}
{input}
### Response
{response}

Answer with "Score: N" (N from 1 to 5) on the first line, then one sentence saying why."""

# The journal's identity: the prompt (keys name the model and the request parameters). The
# same dict as before the rating left data/quality.py, so older journals still resume.
_JOURNAL_FINGERPRINT = fingerprint({"prompt": RATING_TEMPLATE, "system": RATING_SYSTEM})


def rating_request(conv: Conversation, max_tokens: int = 256) -> ChatRequest:
    """The rating request for the last exchange, earlier turns given as context."""
    msgs = conv.messages
    last = max(
        i
        for i in range(len(msgs) - 1)
        if msgs[i].role == "user" and msgs[i + 1].role == "assistant"
    )
    user, reply = msgs[last], msgs[last + 1]
    context = "".join(f"{m.role.capitalize()}: {m.text}\n" for m in msgs[:last])
    prompt = RATING_TEMPLATE.format(
        context=f"### Earlier conversation\n{context}\n" if context else "",
        instruction=user.content,
        input=f"\n### Input\n{user.input}\n" if user.input else "",
        response=reply.content,
    )
    messages = (("system", RATING_SYSTEM), ("user", prompt))
    return ChatRequest(messages, temperature=0.0, max_tokens=max_tokens)


def rating_of(text: str) -> float | None:
    """The 1-5 score in a judgment (see :func:`~instructkit.evaluate.judge.parse_score`)."""
    return parse_score(text, QUALITY_SCALE).score


class QualityScorer:
    """A :data:`~instructkit.data.quality_filter.Scorer` over ``lm`` (see the module docstring).

    ``requests`` counts the requests sent to the LM and ``resumed`` the ratings read back from
    the journal, over all calls.
    """

    def __init__(
        self,
        lm: LM,
        *,
        journal: str | Path | None = None,
        batch_size: int = 16,
        max_tokens: int = 256,
        progress: bool = True,
        fresh: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} < 1.", fix="pass a batch_size >= 1.")
        self.lm, self.batch_size, self.max_tokens = lm, batch_size, max_tokens
        self.journal = Path(journal) if journal is not None else None
        self.progress, self.fresh = progress, fresh
        self.requests = self.resumed = 0
        self._job: Job | None = None

    def __call__(self, convs: Sequence[Conversation]) -> list[tuple[float | None, str]]:
        """Per conversation, in order: its 1-5 score (None if unparseable) and the raw text."""
        requests = [rating_request(c, self.max_tokens) for c in convs]
        keys = [request_key(self.lm.name, r) for r in requests]
        texts = self._ask(dict(zip(keys, requests, strict=True)))
        return [(rating_of(texts[k]), texts[k]) for k in keys]

    def summary(self) -> str:
        """One line for people: the model, requests sent, ratings resumed, the journal."""
        where = f" from {self.journal}" if self.journal else ""
        return (
            f"judge {self.lm.name}: {self.requests} requests sent, "
            f"{self.resumed} ratings resumed{where}"
        )

    def _open(self) -> Job | None:
        """The journal, opened on first use (``fresh`` deletes an old one then, only)."""
        if self._job is None and self.journal is not None:
            self._job = Job(self.journal, _JOURNAL_FINGERPRINT, fresh=self.fresh)
        return self._job

    def _ask(self, unique: dict[str, ChatRequest]) -> dict[str, str]:
        """key -> rating text for every request: journaled ones read back, the rest asked."""
        job = self._open()
        done = {r["key"]: r["judgment"] for r in job.records} if job else {}
        pending = [(k, r) for k, r in unique.items() if k not in done]
        self.resumed += len(unique) - len(pending)
        with tqdm(
            total=len(unique),
            initial=len(unique) - len(pending),
            desc=f"judge {self.lm.name}",
            unit="record",
            disable=not self.progress,
        ) as bar:
            for start in range(0, len(pending), self.batch_size):
                chunk = pending[start : start + self.batch_size]
                done.update(self._rate(chunk, job))
                bar.update(len(chunk))
        return done

    def _rate(self, chunk: list[tuple[str, ChatRequest]], job: Job | None) -> dict[str, str]:
        """Ask the LM for one batch; journal it durably before the next batch starts."""
        completions = self.lm.complete([r for _, r in chunk])
        if len(completions) != len(chunk):
            raise LMError(
                f"judge {self.lm.name} answered {len(completions)} of {len(chunk)} requests."
            )
        self.requests += len(chunk)
        texts = {k: c.text for (k, _), c in zip(chunk, completions, strict=True)}
        if job is not None:
            job.append({"key": k, "score": rating_of(t), "judgment": t} for k, t in texts.items())
            job.save_state(judged=len(job.records))
        return texts


def build_quality_scorer(
    cfg: QualityConfig, out: str | Path, *, progress: bool = True, fresh: bool = False
) -> QualityScorer | None:
    """The scorer ``cfg.judge`` names (None without one), journaled to ``cfg.judge_journal``
    or, by default, OUT.judge.jsonl beside the filter's output."""
    if not cfg.judge:
        return None
    journal = cfg.judge_journal or beside(out, ".judge.jsonl")
    opts = LMOptions(
        lm=cfg.judge,
        model=cfg.judge_model,
        base_url=cfg.judge_base_url,
        api_key_env=cfg.judge_api_key_env,
        cache=cfg.judge_cache,
        concurrency=cfg.judge_concurrency,
    )
    return QualityScorer(
        build_lm_from(opts),
        journal=journal,
        batch_size=cfg.judge_batch_size,
        max_tokens=cfg.judge_max_tokens,
        progress=progress,
        fresh=fresh,
    )
