"""The settings of ``instructkit data filter``: :class:`QualityConfig` and its default lists.

One pydantic model is the single source for the Python API, the YAML file (``--config``) and
``--set KEY=VALUE``; unknown keys and out-of-order bounds are reported together when it is
built::

    cfg = QualityConfig(filters=["refusal", "copy"], max_copy_rouge=0.9)
    cfg = load_config(QualityConfig, "quality.yaml", ["max_repetition=0.2"])

The heuristics that read these thresholds live in :mod:`instructkit.data.heuristics`; the
``judge*`` keys configure the optional model score (:mod:`instructkit.evaluate.quality_judge`
builds the scorer from them, :func:`instructkit.data.quality_filter.filter_records` applies
``judge_threshold`` and ``drop_unparsed``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["HEURISTIC_NAMES", "DEFAULT_REFUSAL_PHRASES", "DEFAULT_UNSAFE_WORDS", "QualityConfig"]

DEFAULT_REFUSAL_PHRASES: tuple[str, ...] = tuple(
    "as an ai|as a language model|as an ai language model|i'm sorry|i am sorry|i apologize|"
    "i cannot|i can't assist|i can't help with|i can't provide|i'm unable to|i am unable to|"
    "i'm not able to|i am not able to|i won't be able to|i must decline|cannot fulfill|"
    "can't fulfill|against my programming|my knowledge cutoff".split("|")
)
# A deliberately small seed list of phrases that have no benign reading in instruction data;
# real deployments pass their own list (``unsafe_words_file``), one phrase a line.
DEFAULT_UNSAFE_WORDS: tuple[str, ...] = tuple(
    "child pornography|child porn|how to build a bomb|how to make a bomb|pipe bomb|make meth|"
    "cook meth|synthesize sarin|kill yourself".split("|")
)
HEURISTIC_NAMES: tuple[str, ...] = tuple(
    "instruction_length response_length refusal copy format repetition garbage unsafe".split()
)


class QualityConfig(BaseModel):
    """Thresholds of ``instructkit data filter`` (YAML keys = fields = ``--set`` keys)."""

    model_config = ConfigDict(extra="forbid")

    filters: list[str] = Field(default_factory=lambda: list(HEURISTIC_NAMES))
    min_instruction_words: int = Field(3, ge=0)
    max_instruction_words: int = Field(2048, ge=1)
    min_response_words: int = Field(1, ge=0)
    max_response_words: int = Field(2048, ge=1)
    min_response_chars: int = Field(1, ge=0)
    max_response_chars: int = Field(16384, ge=1)
    refusal_phrases: list[str] = Field(default_factory=lambda: list(DEFAULT_REFUSAL_PHRASES))
    max_copy_rouge: float = Field(0.8, gt=0.0, le=1.0)
    copy_min_words: int = Field(8, ge=1)  # shorter responses may legitimately quote the prompt
    truncation_min_words: int = Field(10, ge=1)
    repetition_ngram: int = Field(3, ge=1)
    max_repetition: float = Field(0.3, ge=0.0, le=1.0)
    max_garbage: float = Field(0.2, ge=0.0, le=1.0)
    garbage_min_chars: int = Field(20, ge=1)
    unsafe_words: list[str] = Field(default_factory=lambda: list(DEFAULT_UNSAFE_WORDS))
    unsafe_words_file: str | None = None
    judge: str | None = None  # BACKEND[:MODEL] for the CLI; the API takes a scorer
    # the rest of the judge LM's options (LMOptions; --judge-model, --judge-base-url, ...)
    judge_model: str | None = None
    judge_base_url: str | None = None
    judge_api_key_env: str | None = None
    judge_cache: str | None = None
    judge_concurrency: int | None = Field(None, gt=0)
    judge_threshold: float = Field(4.0, ge=1.0, le=5.0)
    drop_unparsed: bool = False
    judge_batch_size: int = Field(16, ge=1)
    judge_max_tokens: int = Field(256, ge=8)
    judge_journal: str | None = None  # default for the CLI: OUT.judge.jsonl

    @field_validator("filters")
    @classmethod
    def _known_filters(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in HEURISTIC_NAMES]
        if unknown:
            raise ValueError(f"unknown filter(s) {unknown}; valid: {', '.join(HEURISTIC_NAMES)}")
        return value

    @model_validator(mode="after")
    def _bounds_in_order(self) -> QualityConfig:
        problems = [
            f"{lo}={getattr(self, lo)} > {hi}={getattr(self, hi)}"
            for lo, hi in (
                ("min_instruction_words", "max_instruction_words"),
                ("min_response_words", "max_response_words"),
                ("min_response_chars", "max_response_chars"),
            )
            if getattr(self, lo) > getattr(self, hi)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self
