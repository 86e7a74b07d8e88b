"""instructkit: instruction tuning of language models, from data to weights to prompts.

The curated public API; everything here loads on first use, so ``import instructkit`` is fast
and does not import torch::

    import instructkit as ik

    records = ik.load_dataset("data.parquet").records        # any file kind, any format
    qa = ik.load_dataset({"path": "qa.csv", "columns": {"prompt": "q", "response": "a"}})
    model, tok = ik.load_model("smollm2-135m-instruct")       # the embedded default model
    ex = ik.tokenize_conversation(records[0], ik.get_template("tokenizer", tok), tok)
    print(ik.trained_text(ex, tok))                          # exactly what carries loss

    lm = ik.CachedLM(ik.LocalLM.load(), "lm-cache.sqlite")    # one LM protocol for every caller
    ik.run_self_instruct(ik.SelfInstructConfig(num_instructions=20), lm,
                         ik.load_seed_tasks().tasks, "synth.jsonl")
    ik.run_sft(ik.load_config(ik.SFTConfig, "recipes/sft_lora_smollm2.yaml"))

    # preference and RL tuning: a reward model, DPO on pairs, PPO/GRPO on prompts with a reward
    ik.run_reward(ik.RewardConfig(data="pairs.jsonl", output_dir="runs/rm"))
    ik.run_dpo(ik.DPORunConfig(data="pairs.jsonl", output_dir="runs/dpo"))
    ik.run_grpo_job(ik.GRPOJobConfig(data="prompts.jsonl", reward=ik.RewardSpec(kind="ifeval")))
    ik.run_ppo(ik.PPOConfig(prompts="prompts.jsonl"), my_reward)   # any ik.RewardFn

Workflows are ``run_*(cfg)`` functions over one typed config each (``load_config`` reads YAML
plus ``--set`` style overrides); errors are :class:`InstructkitError` subclasses whose message
names the file, row, field and the fix. Deeper modules stay importable, but only the names in
``__all__`` are the stable API.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # errors
    "InstructkitError": "instructkit.errors",
    "ConfigError": "instructkit.errors",
    "DataFormatError": "instructkit.errors",
    "TemplateError": "instructkit.errors",
    "ModelError": "instructkit.errors",
    "LMError": "instructkit.errors",
    "TrainingError": "instructkit.errors",
    # files, jobs, configs
    "read_rows": "instructkit.io",
    "write_rows": "instructkit.io",
    "Job": "instructkit.jobs",
    "fingerprint": "instructkit.jobs",
    "load_config": "instructkit.config",
    "save_config": "instructkit.config",
    # models
    "load_model": "instructkit.models",
    "load_tokenizer": "instructkit.models",
    "DEFAULT_MODEL": "instructkit.models",
    # data
    "Message": "instructkit.data.records",
    "Conversation": "instructkit.data.records",
    "PreferencePair": "instructkit.data.records",
    "load_dataset": "instructkit.data.loader",
    "DatasetSpec": "instructkit.data.sources",
    "load_records": "instructkit.data.formats",
    "save_records": "instructkit.data.formats",
    "get_template": "instructkit.data.templates",
    "tokenize_conversation": "instructkit.data.tokenize",
    "trained_text": "instructkit.data.tokenize",
    "render": "instructkit.data.workflows",
    "convert": "instructkit.data.workflows",
    "validate": "instructkit.data.workflows",
    "stats": "instructkit.data.workflows",
    "build_mixture": "instructkit.data.mixing",
    "build_task_mixture": "instructkit.data.tasks",
    "load_task_templates": "instructkit.data.tasks",
    "render_task_example": "instructkit.data.tasks",
    # language models
    "LM": "instructkit.lm.base",
    "ChatRequest": "instructkit.lm.base",
    "Completion": "instructkit.lm.base",
    "build_lm": "instructkit.lm",
    "LocalLM": "instructkit.lm.local",
    "OpenAILM": "instructkit.lm.openai",
    "CachedLM": "instructkit.lm.cache",
    "ScriptedLM": "instructkit.lm.scripted",
    # synthetic data
    "SelfInstructConfig": "instructkit.synth.self_instruct",
    "run_self_instruct": "instructkit.synth.self_instruct",
    "load_seed_tasks": "instructkit.synth.seeds",
    "EvolConfig": "instructkit.synth.evol_instruct",
    "run_evol": "instructkit.synth.evol_instruct",
    # training
    "SFTConfig": "instructkit.train.sft",
    "run_sft": "instructkit.train.sft",
    "TrainConfig": "instructkit.train.loop",
    "fit": "instructkit.train.loop",
    # preference and RL tuning (train/ takes a RewardFn; rl/ builds one from config)
    "RewardItem": "instructkit.train.rewards",
    "RewardFn": "instructkit.train.rewards",
    "RewardConfig": "instructkit.train.reward",
    "run_reward": "instructkit.train.reward",
    "DPORunConfig": "instructkit.train.dpo",
    "run_dpo": "instructkit.train.dpo",
    "PPOConfig": "instructkit.train.ppo",
    "run_ppo": "instructkit.train.ppo",
    "GRPORunConfig": "instructkit.train.grpo",
    "run_grpo": "instructkit.train.grpo",
    "RewardSpec": "instructkit.rl.rewards",
    "build_reward": "instructkit.rl.rewards",
    "PPOJobConfig": "instructkit.rl.workflows",
    "run_ppo_job": "instructkit.rl.workflows",
    "GRPOJobConfig": "instructkit.rl.grpo_job",
    "run_grpo_job": "instructkit.rl.grpo_job",
    "PairsConfig": "instructkit.rl.pairs",
    "run_pairs": "instructkit.rl.pairs",
    "MetaConfig": "instructkit.train.meta",
    "run_meta": "instructkit.train.meta",
    "AdaptConfig": "instructkit.rl.adapt",
    "run_adapt_eval": "instructkit.rl.adapt",
    # evaluation
    "EvalConfig": "instructkit.evaluate.runner",
    "EvalResults": "instructkit.evaluate.results",
    "load_eval_results": "instructkit.evaluate.results",
    "run_eval": "instructkit.evaluate.runner",
    "GenerateConfig": "instructkit.evaluate.generate",
    "run_generate": "instructkit.evaluate.generate",
    "compute_metric": "instructkit.evaluate.metrics",
    "score_ifeval": "instructkit.evaluate.ifeval",
    "compare_paired": "instructkit.evaluate.stats",
    "grade": "instructkit.evaluate.judge",
    "compare": "instructkit.evaluate.judge",
    # reports and the demo
    "write_report": "instructkit.report",
    "DemoConfig": "instructkit.demo",
    "run_demo": "instructkit.demo",
    # recipes: the whole lifecycle from one YAML file, as cached stages
    "RecipeConfig": "instructkit.recipe",
    "load_recipe": "instructkit.recipe",
    "plan_recipe": "instructkit.recipe",
    "run_recipe": "instructkit.recipe",
}

# short names the issue and README use for the main workflows
_ALIASES: dict[str, str] = {
    "self_instruct": "run_self_instruct",
    "evol_instruct": "run_evol",
    "ifeval": "score_ifeval",
}

__all__ = ["__version__", *_EXPORTS, *_ALIASES]


def __getattr__(name: str) -> Any:
    # PEP 562: import the defining module on first access and cache the attribute here.
    target = _ALIASES.get(name, name)
    module = _EXPORTS.get(target)
    if module is None:
        raise AttributeError(f"module 'instructkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), target)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # static type checkers and IDEs see the real names
    from instructkit.config import load_config, save_config
    from instructkit.data.formats import load_records, save_records
    from instructkit.data.loader import load_dataset
    from instructkit.data.mixing import build_mixture
    from instructkit.data.records import Conversation, Message, PreferencePair
    from instructkit.data.sources import DatasetSpec
    from instructkit.data.tasks import build_task_mixture, load_task_templates, render_task_example
    from instructkit.data.templates import get_template
    from instructkit.data.tokenize import tokenize_conversation, trained_text
    from instructkit.data.workflows import convert, render, stats, validate
    from instructkit.demo import DemoConfig, run_demo
    from instructkit.errors import (
        ConfigError,
        DataFormatError,
        InstructkitError,
        LMError,
        ModelError,
        TemplateError,
        TrainingError,
    )
    from instructkit.evaluate.generate import GenerateConfig, run_generate
    from instructkit.evaluate.ifeval import score_ifeval
    from instructkit.evaluate.ifeval import score_ifeval as ifeval
    from instructkit.evaluate.judge import compare, grade
    from instructkit.evaluate.metrics import compute_metric
    from instructkit.evaluate.results import EvalResults, load_eval_results
    from instructkit.evaluate.runner import EvalConfig, run_eval
    from instructkit.evaluate.stats import compare_paired
    from instructkit.io import read_rows, write_rows
    from instructkit.jobs import Job, fingerprint
    from instructkit.lm import build_lm
    from instructkit.lm.base import LM, ChatRequest, Completion
    from instructkit.lm.cache import CachedLM
    from instructkit.lm.local import LocalLM
    from instructkit.lm.openai import OpenAILM
    from instructkit.lm.scripted import ScriptedLM
    from instructkit.models import DEFAULT_MODEL, load_model, load_tokenizer
    from instructkit.report import write_report
    from instructkit.rl.adapt import AdaptConfig, run_adapt_eval
    from instructkit.rl.grpo_job import GRPOJobConfig, run_grpo_job
    from instructkit.rl.pairs import PairsConfig, run_pairs
    from instructkit.rl.rewards import RewardSpec, build_reward
    from instructkit.rl.workflows import PPOJobConfig, run_ppo_job
    from instructkit.synth.evol_instruct import EvolConfig, run_evol
    from instructkit.synth.evol_instruct import run_evol as evol_instruct
    from instructkit.synth.seeds import load_seed_tasks
    from instructkit.synth.self_instruct import SelfInstructConfig, run_self_instruct
    from instructkit.synth.self_instruct import run_self_instruct as self_instruct
    from instructkit.train.dpo import DPORunConfig, run_dpo
    from instructkit.train.grpo import GRPORunConfig, run_grpo
    from instructkit.train.loop import TrainConfig, fit
    from instructkit.train.meta import MetaConfig, run_meta
    from instructkit.train.ppo import PPOConfig, run_ppo
    from instructkit.train.reward import RewardConfig, run_reward
    from instructkit.train.rewards import RewardFn, RewardItem
    from instructkit.train.sft import SFTConfig, run_sft
