"""Data mixing: draw one training set from several sources at chosen rates.

A source is a named list of examples (opaque objects: records, tokenized examples, strings) of
kind ``"sft"`` (instruction data) or ``"text"`` (plain pretraining text, trained with full loss
by the caller). The rates of the sft sources follow one of three strategies:

- ``proportional``: rate_i ∝ min(n_i, cap_i), examples-proportional mixing with a per-source cap
  K, as in FLAN (Wei et al. 2021, "Finetuned Language Models Are Zero-Shot Learners"; Chung et
  al. 2022, "Scaling Instruction-Finetuned Language Models").
- ``temperature``: rate_i ∝ min(n_i, cap_i) ** (1/T), temperature-scaled mixing from T5 (Raffel
  et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
  Transformer"); T=1 is proportional, large T tends to uniform.
- ``weights``: rate_i ∝ weight_i, set by hand on every source.

Text sources make up ``text_ratio`` of the drawn examples, split among them in proportion to
min(n_j, cap_j). Counts are allocated by largest remainder so they sum exactly to ``total`` (by
default: one pass over the capped sft data, plus text at ``text_ratio``). Each source is drawn
as a seeded shuffle without replacement, starting a new shuffle (an epoch) only when it must be
up-sampled. Usage::

    cfg = MixtureConfig(strategy="temperature", temperature=2.0, text_ratio=0.05, seed=1)
    mix = build_mixture([Source("alpaca", rows), Source("wiki", docs, kind="text")], cfg)
    examples = [ex for _, ex in mix.items]
    print(mix.report.format_table())
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from instructkit.errors import ConfigError

__all__ = [
    "Source",
    "MixtureConfig",
    "Mixture",
    "MixtureReport",
    "mixture_rates",
    "allocate",
    "build_mixture",
]

Kind = Literal["sft", "text"]


@dataclass
class Source:
    """A named list of examples.

    ``cap`` limits how many examples count towards the rates (FLAN's K); draws still come from
    all of them. ``weight`` is used only by strategy ``weights``.
    """

    name: str
    examples: list[Any]
    weight: float | None = None
    cap: int | None = None
    kind: Kind = "sft"


class MixtureConfig(BaseModel):
    """How to mix sources (one name per concept: YAML key = attribute = CLI flag)."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["proportional", "temperature", "weights"] = "proportional"
    temperature: float = Field(1.0, gt=0)
    text_ratio: float = Field(0.0, ge=0, lt=1)  # fraction of drawn examples that are text
    total: int | None = Field(None, gt=0)  # default: sum of min(n, cap) over sft sources
    seed: int = 0

    @model_validator(mode="after")
    def _temperature_needs_strategy(self) -> MixtureConfig:
        if self.temperature != 1.0 and self.strategy != "temperature":
            raise ValueError(
                f"temperature {self.temperature} is only used with strategy 'temperature' "
                f"(strategy is '{self.strategy}'); set strategy: temperature or drop temperature"
            )
        return self


@dataclass
class MixtureReport:
    """Per source: available, rate_target, drawn, share_realised, epochs, kind; plus total.

    ``rate_target`` and ``share_realised`` are fractions of the whole mixture (text included);
    ``epochs`` is drawn / available (above 1 means the source was up-sampled).
    """

    per_source: dict[str, dict[str, Any]]
    total: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format_table(self) -> str:
        """A plain-text table, one row per source, then the total."""
        header = ("source", "kind", "available", "target", "drawn", "realised", "epochs")
        rows = [header]
        for name, s in self.per_source.items():
            rows.append(
                (
                    name,
                    s["kind"],
                    str(s["available"]),
                    f"{s['rate_target']:.2%}",
                    str(s["drawn"]),
                    f"{s['share_realised']:.2%}",
                    f"{s['epochs']:.2f}",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        # Names and kinds left-aligned, numbers right-aligned.
        lines = [
            "  ".join(r[i].ljust(w) if i < 2 else r[i].rjust(w) for i, w in enumerate(widths))
            for r in rows
        ]
        lines.append(f"total: {self.total}")
        return "\n".join(lines)


@dataclass
class Mixture:
    """The drawn examples, as ``(source name, example)`` in shuffled order, and their report."""

    items: list[tuple[str, Any]]
    report: MixtureReport


def _counted(sizes: dict[str, int], caps: dict[str, int | None]) -> dict[str, int]:
    """min(n_i, cap_i): the examples of each source that count towards the rates."""
    out: dict[str, int] = {}
    for name, n in sizes.items():
        cap = caps.get(name)
        out[name] = n if cap is None else min(n, cap)
    return out


def _check_weights(weights: dict[str, float | None], names: list[str], strategy: str) -> None:
    given: dict[str, float] = {n: w for n in names if (w := weights.get(n)) is not None}
    if strategy != "weights":
        if given:
            raise ConfigError(
                f"source(s) {', '.join(sorted(given))} set a weight but strategy is '{strategy}'.",
                fix="set strategy: weights, or remove the weights.",
            )
        return
    problems = [f"source '{n}' has no weight" for n in names if n not in given]
    problems += [f"source '{n}' has negative weight {w}" for n, w in given.items() if w < 0]
    if problems:
        raise ConfigError(
            "; ".join(problems) + ".",
            fix="give every sft source a weight >= 0 (strategy: weights).",
        )
    if not any(given.values()):
        raise ConfigError(
            "all sft source weights are 0.", fix="give at least one source a weight > 0."
        )


def mixture_rates(
    sizes: dict[str, int],
    caps: dict[str, int | None],
    weights: dict[str, float | None],
    cfg: MixtureConfig,
) -> dict[str, float]:
    """Sampling rate of each sft source under ``cfg.strategy``; the rates sum to 1."""
    if not sizes:
        raise ConfigError("no sft source to mix.", fix="add at least one source of kind 'sft'.")
    names = list(sizes)
    _check_weights(weights, names, cfg.strategy)
    counted = _counted(sizes, caps)
    if any(m < 0 for m in counted.values()) or not any(counted.values()):
        raise ConfigError(
            f"sft source sizes {counted} leave nothing to sample from.",
            fix="give at least one sft source examples (and a cap > 0).",
        )
    if cfg.strategy == "weights":
        raw = {n: float(weights[n] or 0.0) for n in names}
    elif cfg.strategy == "proportional":
        raw = {n: float(m) for n, m in counted.items()}
    else:  # temperature, in log space: m ** (1/T) overflows for large m and small T
        top = math.log(max(counted.values()))
        t = cfg.temperature
        raw = {n: math.exp((math.log(m) - top) / t) if m else 0.0 for n, m in counted.items()}
    norm = sum(raw.values())
    return {n: r / norm for n, r in raw.items()}


def allocate(rates: dict[str, float], total: int) -> dict[str, int]:
    """Split ``total`` into integer counts by largest remainder; they sum to ``total`` exactly.

    Each name gets floor(rate * total); the rest go one each to the largest fractional parts,
    ties broken by name. Rates are normalized first, so they need only be >= 0 with a sum > 0.
    """
    if total < 0:
        raise ConfigError(f"cannot allocate a negative total ({total}).", fix="use total >= 0.")
    norm = sum(rates.values())
    if not rates or any(r < 0 for r in rates.values()) or norm <= 0:
        raise ConfigError(
            f"rates {rates} cannot be allocated.", fix="give rates >= 0 with a positive sum."
        )
    exact = {n: r / norm * total for n, r in rates.items()}
    counts = {n: math.floor(x) for n, x in exact.items()}
    left = total - sum(counts.values())
    # Rounded so that float noise does not beat the tie-break by name.
    order = sorted(exact, key=lambda n: (-round(exact[n] - counts[n], 9), n))
    for name in order[:left]:
        counts[name] += 1
    return counts


def _check_sources(sources: list[Source], cfg: MixtureConfig) -> None:
    """Raise one ConfigError listing every problem with the sources."""
    problems: list[str] = []
    seen: set[str] = set()
    for s in sources:
        if s.name in seen:
            problems.append(f"source name '{s.name}' is used twice (rename one)")
        seen.add(s.name)
        if s.kind not in ("sft", "text"):
            problems.append(f"source '{s.name}' has kind '{s.kind}' (use 'sft' or 'text')")
        if not s.examples:
            problems.append(f"source '{s.name}' is empty (check its file or remove it)")
        if s.cap is not None and s.cap <= 0:
            problems.append(f"source '{s.name}' has cap {s.cap} (use a cap > 0 or none)")
        if s.kind == "text" and s.weight is not None:
            problems.append(f"text source '{s.name}' sets a weight (text_ratio sets text's share)")
    kinds = [s.kind for s in sources]
    if "sft" not in kinds:
        problems.append("no source of kind 'sft' (add instruction data)")
    if cfg.text_ratio > 0 and "text" not in kinds:
        problems.append(f"text_ratio is {cfg.text_ratio} but no source has kind 'text'")
    if cfg.text_ratio == 0 and "text" in kinds:
        problems.append("text sources are given but text_ratio is 0 (set e.g. text_ratio: 0.05)")
    if problems:
        raise ConfigError(
            f"{len(problems)} mixture problem(s): " + "; ".join(problems) + ".",
            fix="correct the sources listed above.",
        )


def _draw(examples: list[Any], k: int, rng: random.Random) -> list[Any]:
    """k examples: a shuffle without replacement, then a fresh shuffle per extra epoch."""
    out: list[Any] = []
    while len(out) < k:
        order = list(range(len(examples)))
        rng.shuffle(order)
        out.extend(examples[i] for i in order[: k - len(out)])
    return out


def _target_rates(sources: list[Source], cfg: MixtureConfig) -> dict[str, float]:
    """Rate of every source as a fraction of the whole mixture (sft and text together)."""
    sft = [s for s in sources if s.kind == "sft"]
    rates = mixture_rates(
        {s.name: len(s.examples) for s in sft},
        {s.name: s.cap for s in sft},
        {s.name: s.weight for s in sft},
        cfg,
    )
    out = {n: r * (1.0 - cfg.text_ratio) for n, r in rates.items()}
    text = _counted(
        {s.name: len(s.examples) for s in sources if s.kind == "text"},
        {s.name: s.cap for s in sources if s.kind == "text"},
    )
    out.update({n: cfg.text_ratio * m / sum(text.values()) for n, m in text.items()})
    return out


def _counts(sources: list[Source], rates: dict[str, float], cfg: MixtureConfig) -> dict[str, int]:
    """Split the total between sft and text (text_ratio to the nearest example), then within.

    Without ``cfg.total``, sft gets exactly sum(min(n_i, cap_i)) examples and text the nearest
    count that makes up text_ratio of the whole.
    """
    sft = {s.name for s in sources if s.kind == "sft"}
    r = cfg.text_ratio
    if cfg.total is None:
        counted = _counted(
            {s.name: len(s.examples) for s in sources if s.kind == "sft"},
            {s.name: s.cap for s in sources},
        )
        n_sft = sum(counted.values())
        n_text = math.floor(n_sft * r / (1.0 - r) + 0.5)
    else:
        split = allocate({"sft": 1.0 - r, "text": r}, cfg.total)
        n_sft, n_text = split["sft"], split["text"]
    counts = allocate({n: x for n, x in rates.items() if n in sft}, n_sft)
    if r > 0:  # _check_sources made sure text sources exist
        counts.update(allocate({n: x for n, x in rates.items() if n not in sft}, n_text))
    return counts


def build_mixture(sources: list[Source], cfg: MixtureConfig) -> Mixture:
    """Draw ``cfg.total`` examples from ``sources`` at the rates of ``cfg``; deterministic in seed.

    Each source is shuffled with its own RNG (seeded by ``cfg.seed`` and its name): which examples
    it contributes depends only on the seed, its name and its count, not on the other sources.
    """
    _check_sources(sources, cfg)
    rates = _target_rates(sources, cfg)
    counts = _counts(sources, rates, cfg)
    total = sum(counts.values())
    items: list[tuple[str, Any]] = []
    per_source: dict[str, dict[str, Any]] = {}
    for s in sources:
        drawn = _draw(s.examples, counts[s.name], random.Random(f"{cfg.seed}/{s.name}"))
        items.extend((s.name, ex) for ex in drawn)
        per_source[s.name] = {
            "available": len(s.examples),
            "rate_target": rates[s.name],
            "drawn": len(drawn),
            "share_realised": len(drawn) / total if total else 0.0,
            "epochs": len(drawn) / len(s.examples),
            "kind": s.kind,
        }
    random.Random(cfg.seed).shuffle(items)
    return Mixture(items, MixtureReport(per_source, total))
