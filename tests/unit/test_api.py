"""The curated public API: `import instructkit as ik` exposes exactly these names, lazily."""

import subprocess
import sys

import instructkit as ik

PINNED = {
    "__version__",
    # errors
    "InstructkitError", "ConfigError", "DataFormatError", "TemplateError", "ModelError",
    "LMError", "TrainingError",
    # files, jobs, configs
    "read_rows", "write_rows", "Job", "fingerprint", "load_config", "save_config",
    # models
    "load_model", "load_tokenizer", "DEFAULT_MODEL",
    # data
    "Message", "Conversation", "PreferencePair", "load_dataset", "DatasetSpec", "load_records",
    "save_records", "get_template",
    "tokenize_conversation", "trained_text", "render", "convert", "validate", "stats",
    "build_mixture", "build_task_mixture", "load_task_templates", "render_task_example",
    # language models
    "LM", "ChatRequest", "Completion", "build_lm", "LocalLM", "OpenAILM", "CachedLM",
    "ScriptedLM",
    # synthetic data
    "SelfInstructConfig", "run_self_instruct", "self_instruct", "load_seed_tasks", "EvolConfig",
    "run_evol", "evol_instruct",
    # training
    "SFTConfig", "run_sft", "TrainConfig", "fit",
    # preference and RL tuning
    "RewardItem", "RewardFn", "RewardConfig", "run_reward", "DPORunConfig", "run_dpo",
    "PPOConfig", "run_ppo", "GRPORunConfig", "run_grpo", "RewardSpec", "build_reward",
    "PPOJobConfig", "run_ppo_job", "GRPOJobConfig", "run_grpo_job", "PairsConfig", "run_pairs",
    "MetaConfig", "run_meta", "AdaptConfig", "run_adapt_eval",
    # evaluation and reports
    "EvalConfig", "EvalResults", "load_eval_results", "run_eval", "compute_metric",
    "GenerateConfig", "run_generate",
    "score_ifeval", "ifeval", "compare_paired",
    "grade", "compare", "write_report", "DemoConfig", "run_demo",
    # recipes
    "RecipeConfig", "load_recipe", "plan_recipe", "run_recipe",
}  # fmt: skip


def test_all_is_pinned_and_every_name_resolves():
    assert set(ik.__all__) == PINNED and len(ik.__all__) == len(PINNED)
    for name in ik.__all__:
        assert getattr(ik, name) is not None, name
    assert ik.self_instruct is ik.run_self_instruct and ik.ifeval is ik.score_ifeval
    assert set(dir(ik)) == PINNED


def test_unknown_names_raise_attribute_error():
    try:
        ik.no_such_thing  # noqa: B018
    except AttributeError as e:
        assert "no_such_thing" in str(e)
    else:
        raise AssertionError("expected AttributeError")


def test_import_is_light_and_lazy():
    code = (
        "import sys, instructkit as ik\n"
        "assert 'torch' not in sys.modules and 'instructkit.data' not in sys.modules\n"
        "ik.load_records\n"
        "assert 'instructkit.data.formats' in sys.modules and 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_rl_workflows_are_the_modules_own():
    from instructkit.rl import grpo_job, pairs, rewards, workflows
    from instructkit.train import dpo, grpo, ppo, reward

    assert ik.run_ppo_job is workflows.run_ppo_job and ik.run_grpo_job is grpo_job.run_grpo_job
    assert ik.run_pairs is pairs.run_pairs and ik.build_reward is rewards.build_reward
    assert ik.run_dpo is dpo.run_dpo and ik.run_grpo is grpo.run_grpo
    assert ik.run_ppo is ppo.run_ppo and ik.run_reward is reward.run_reward
    reward_fn = ik.build_reward(ik.RewardSpec(kind="exact"))
    assert isinstance(reward_fn, ik.RewardFn)  # a runtime-checkable protocol
    items = [ik.RewardItem(prompt="6 x 7?", response=r, row={"answer": "42"}) for r in ("42", "41")]
    assert reward_fn(items) == [1.0, 0.0]
