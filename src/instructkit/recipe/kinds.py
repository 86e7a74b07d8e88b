"""The stage kinds of a recipe: each one of the product's workflows, called as its CLI calls it.

A kind names the workflow's own config model (the one its command reads with ``--config``),
the outputs it leaves in the stage's folder (what ``${stages.NAME.OUTPUT}`` refers to), the
config keys the recipe sets itself (the output folder), whether the stage reads ``src`` and an
``lm``, and the function that runs it::

    KINDS["sft"].config      # SFTConfig
    KINDS["sft"].outputs     # {"dir": ".", "adapter": "adapter", "model": "model", ...}

=============== ======================================== ====================================
kind            workflow (config model)                  outputs
=============== ======================================== ====================================
convert         ``data convert`` (:class:`ConvertConfig`) data, rejects
filter          ``data filter`` (QualityConfig)          data, rejects, report
dedup           ``data dedup`` (DedupConfig)             data, rejects
self_instruct   ``synth self-instruct`` (SelfInstructC.) tasks, data (Alpaca rows)
evol            ``synth evol`` (EvolConfig)              data, rejects
sft             ``train sft`` (SFTConfig)                dir, adapter, model, merged, metrics
dpo             ``train dpo`` (DPORunConfig)             dir, adapter, model, metrics
reward          ``train reward`` (RewardConfig)          dir, adapter, model, metrics
eval            ``eval run`` (EvalConfig)                results, per_item
ifeval          ``eval ifeval`` (:class:`IFEvalConfig`)  scores, results
optimize        ``optimize prompt`` (PromptOptConfig)    dir, result, results, program, html
report          ``eval report`` (:class:`ReportConfig`)  html
=============== ======================================== ====================================

``data convert``, ``eval ifeval`` and ``eval report`` take flags, not a config file; their
stage configs (:class:`ConvertConfig`, :class:`IFEvalConfig`, :class:`ReportConfig`) hold
exactly those flags.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from instructkit.data.formats import FORMATS
from instructkit.lm.base import LM
from instructkit.lm.options import LMOptions, build_lm_from

__all__ = ["KINDS", "ConvertConfig", "IFEvalConfig", "Kind", "ReportConfig", "StageRun"]

Format = Literal["alpaca", "sharegpt", "messages", "prompt-completion", "preference"]
assert set(FORMATS) == set(Format.__args__)  # type: ignore[attr-defined]


class ConvertConfig(BaseModel):
    """``data convert``'s flags: the target format (``--to``), the input format (``--from``)."""

    model_config = ConfigDict(extra="forbid")

    to: Format
    fmt: Format | None = None  # input format; auto-detected when None
    skip_invalid: bool = False


class IFEvalConfig(BaseModel):
    """``eval ifeval``'s flags: score the responses file ``src``."""

    model_config = ConfigDict(extra="forbid")

    skip_invalid: bool = False
    system: str | None = None  # the system's name in the results (default: the file's stem)


class ReportConfig(BaseModel):
    """``eval report``'s flags: results files (``${stages.NAME.results}``) into one page."""

    model_config = ConfigDict(extra="forbid")

    results: list[str] = Field(min_length=1)
    examples: int = Field(5, ge=0)
    train_log: str | None = None  # a metrics.jsonl to plot (e.g. ${stages.train.metrics})


@dataclass
class StageRun:
    """What a stage's function gets: its folder, validated config, input and LM."""

    name: str
    folder: Path
    config: Any  # the kind's config model, validated
    src: str | None = None
    lm_options: LMOptions | None = None
    lm: LM | None = None  # given from Python (run_recipe(lms=...)); else built from lm_options
    progress: bool = True

    def the_lm(self) -> LM:
        """The stage's LM: the one given, else the one ``lm:`` names."""
        return self.lm if self.lm is not None else build_lm_from(self.lm_options or LMOptions())


@dataclass(frozen=True)
class Kind:
    """One stage kind (see the module docstring). ``model`` names the workflow's config
    class as ``module:Class``, imported on first use (so that a recipe imports only the
    workflows it runs: no dspy for a recipe without an optimize stage)."""

    model: str
    outputs: Mapping[str, str]  # name -> path inside the stage's folder ("." the folder)
    run: Callable[[StageRun], Any]
    owned: Mapping[str, str] = field(default_factory=dict)  # config key -> output it is set to
    src: Literal["required", "optional", "none"] = "none"
    lm: bool = False
    # ``module:function(cfg, exists=...) -> problems``: the workflow's own checks beyond its
    # model (files, options that go together), run before anything runs
    checks: str | None = None

    @property
    def config(self) -> type[BaseModel]:
        """The workflow's config model."""
        cls = _named(self.model)
        assert isinstance(cls, type) and issubclass(cls, BaseModel)
        return cls

    def problems(self, cfg: BaseModel, exists: Callable[[Path], bool]) -> list[str]:
        """The workflow's own checks of ``cfg`` (none when it has none)."""
        return list(_named(self.checks)(cfg, exists=exists)) if self.checks else []


def _named(ref: str) -> Any:
    """``module:name`` imported on use; ``:name`` is defined in this module."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name) if module else globals()[name]


def _convert(s: StageRun) -> Any:
    from instructkit.data.workflows import convert

    c: ConvertConfig = s.config
    assert s.src is not None
    return convert(s.src, s.folder / "data.jsonl", c.to, fmt=c.fmt,
                   skip_invalid=c.skip_invalid, rejects=s.folder / "rejects.jsonl")  # fmt: skip


def _filter(s: StageRun) -> Any:
    from instructkit.data.quality import run_filter
    from instructkit.evaluate.quality_judge import build_quality_scorer

    out = s.folder / "data.jsonl"
    scorer = build_quality_scorer(s.config, out, progress=s.progress)
    assert s.src is not None
    return run_filter(s.src, out, s.config, scorer=scorer, rejects=s.folder / "rejects.jsonl",
                      report=s.folder / "quality.json")  # fmt: skip


def _dedup(s: StageRun) -> Any:
    from instructkit.data.quality import run_dedup

    assert s.src is not None
    return run_dedup(s.src, s.folder / "data.jsonl", s.config, rejects=s.folder / "rejects.jsonl")


def _self_instruct(s: StageRun) -> Any:
    from instructkit.synth.seeds import load_seed_tasks
    from instructkit.synth.self_instruct import export_alpaca, run_self_instruct

    seeds = load_seed_tasks(s.src)
    tasks = s.folder / "tasks.jsonl"
    result = run_self_instruct(s.config, s.the_lm(), seeds.tasks, tasks, progress=s.progress)
    export_alpaca(tasks, s.folder / "data.jsonl")
    return result


def _evol(s: StageRun) -> Any:
    from instructkit.synth.evol_instruct import load_instructions, run_evol

    assert s.src is not None
    seeds = load_instructions(s.src)
    return run_evol(s.config, s.the_lm(), seeds, s.folder / "data.jsonl",
                    s.folder / "rejects.jsonl", progress=s.progress)  # fmt: skip


def _sft(s: StageRun) -> Any:
    from instructkit.train.sft import format_summary, run_sft

    result = run_sft(s.config, progress=s.progress)
    print(format_summary(result))
    return result


def _dpo(s: StageRun) -> Any:
    from instructkit.train.dpo import format_summary, run_dpo

    result = run_dpo(s.config, progress=s.progress)
    print(format_summary(result))
    return result


def _reward(s: StageRun) -> Any:
    from instructkit.train.reward import format_reward_summary, run_reward

    result = run_reward(s.config, progress=s.progress)
    print(format_reward_summary(result))
    return result


def _eval(s: StageRun) -> Any:
    from instructkit.evaluate.results import format_results
    from instructkit.evaluate.runner import run_eval

    results = run_eval(s.config)  # resumes its own journal after a kill
    print(format_results(results))
    return results


def _ifeval(s: StageRun) -> Any:
    from instructkit.evaluate.ifeval import evaluate_ifeval_file

    assert s.src is not None
    c: IFEvalConfig = s.config
    report = evaluate_ifeval_file(s.src, s.folder / "ifeval.jsonl", c.skip_invalid,
                                  system=c.system)  # fmt: skip
    print(report.format())
    return report


def _optimize(s: StageRun) -> Any:
    from instructkit.optimize.prompt import run_prompt_optimization
    from instructkit.report.prompt import write_prompt_report

    result = run_prompt_optimization(s.config, lm=s.lm, progress=s.progress)  # resumes
    print(f"best val {result.best.val:.3f} test {result.best.test:.3f}: {result.best.instruction}")
    write_prompt_report(s.config.out)
    return result


def _report(s: StageRun) -> Any:
    from instructkit.report import write_report

    c: ReportConfig = s.config
    return write_report(c.results, s.folder / "report.html", examples=c.examples,
                        train_log=c.train_log)  # fmt: skip


_TRAINED = {"dir": ".", "adapter": "adapter", "model": "model", "metrics": "metrics.jsonl"}
_DATA = {"data": "data.jsonl", "rejects": "rejects.jsonl"}
_OPTIMIZED = {"dir": ".", "result": "result.json", "results": "results.json",
              "program": "program.json", "html": "report.html"}  # fmt: skip

KINDS: dict[str, Kind] = {
    "convert": Kind(":ConvertConfig", _DATA, _convert, src="required"),
    "filter": Kind("instructkit.data.quality_config:QualityConfig",
                   {**_DATA, "report": "quality.json"}, _filter, src="required"),
    "dedup": Kind("instructkit.data.dedup:DedupConfig", _DATA, _dedup, src="required"),
    "self_instruct": Kind("instructkit.synth.self_instruct:SelfInstructConfig",
                          {"tasks": "tasks.jsonl", "data": "data.jsonl"}, _self_instruct,
                          src="optional", lm=True),
    "evol": Kind("instructkit.synth.evol_instruct:EvolConfig", _DATA, _evol, src="required",
                 lm=True),
    "sft": Kind("instructkit.train.sft:SFTConfig", {**_TRAINED, "merged": "merged"}, _sft,
                owned={"output_dir": "."},
                checks="instructkit.train.sft:sft_config_problems"),
    "dpo": Kind("instructkit.train.dpo:DPORunConfig", _TRAINED, _dpo,
                owned={"output_dir": "."}, checks="instructkit.train.dpo:dpo_config_problems"),
    "reward": Kind("instructkit.train.reward:RewardConfig", _TRAINED, _reward,
                   owned={"output_dir": "."},
                   checks="instructkit.train.reward:reward_config_problems"),
    "eval": Kind("instructkit.evaluate.runner:EvalConfig",
                 {"results": "results.json", "per_item": "results.per_item.jsonl"}, _eval,
                 owned={"out": "results.json"},
                 checks="instructkit.evaluate.runner:eval_config_problems"),
    "ifeval": Kind(":IFEvalConfig", {"scores": "ifeval.jsonl", "results": "ifeval.results.json"},
                   _ifeval, src="required"),
    "optimize": Kind("instructkit.optimize.prompt:PromptOptConfig", _OPTIMIZED, _optimize,
                     owned={"out": "."}),
    "report": Kind(":ReportConfig", {"html": "report.html"}, _report),
}  # fmt: skip
