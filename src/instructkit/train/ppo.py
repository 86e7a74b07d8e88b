"""PPO with a per-token KL penalty to the reference policy: ``instructkit train ppo``.

``run_ppo(cfg, reward)`` reads top to bottom: read the prompt rows and check each with the
reward source (before any model loads); load the model; render every prompt with the chat
template as SFT does (too long for ``max_seq_len`` with ``max_new_tokens``: rejected, counted);
wrap the policy in LoRA with a linear value head on its last hidden state; resume from the
newest checkpoint; then, per step:

1. rollouts: ``rollout.batch_size`` prompts (a fixed shuffle per pass), one sampled response
   each (temperature, top_p, no top-k), with the torch seed set from (seed, step), so that a
   resumed run draws the same rollouts; a response ends at its end-of-turn token or at
   ``max_new_tokens`` (truncated: it may lose ``truncation_penalty``);
2. scores from the reward function; log-probs and values of the rollout policy, log-probs of
   the reference (on LoRA: the same base model with its adapters disabled, so one model in
   memory serves policy, reference and value; full weights keep a frozen copy); a
   :class:`~instructkit.train.reward_adapter.SharedBaseReward` is attached to that model as
   a second, frozen adapter, so the reward model needs no second base model either;
3. per-token rewards -beta * KL with the score at the last token (Ziegler et al. 2019;
   InstructGPT, Ouyang et al. 2022), optional reward whitening, GAE advantages (whitened)
   and returns;
4. ``train.epochs`` passes of shuffled minibatches of the clipped policy loss plus
   ``value_coef`` times the clipped value loss (minus ``entropy_coef`` times the entropy);
5. the KL coefficient update (fixed, or adaptive toward ``kl.target``), one metrics.jsonl row
   (reward_mean, reward_std, kl, entropy, clip_fraction, value_loss, response_length, loss,
   ...: docs/ppo.md), a few (prompt, response, reward) rows in samples.jsonl every
   ``samples_every`` steps, a checkpoint every ``train.save_every`` steps.

Outputs in ``output_dir``: adapter/ (or model/), value_head.safetensors, config.yaml,
metrics.jsonl, samples.jsonl, reward.png, kl.png, summary.json, rejects.jsonl when rows were
rejected.
The model runs in eval mode throughout (no dropout), so the first PPO epoch starts at ratio 1.
Sampling, response masks and the reference log-probs are in :mod:`instructkit.train.ppo_rollout`.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from instructkit.config import save_config
from instructkit.data.sources import SourceField, missing_source, source_name
from instructkit.data.templates import TemplateName, get_template
from instructkit.errors import ConfigError, TrainingError
from instructkit.io import write_atomic
from instructkit.losses import entropy_from_logits, kl_per_token, token_logprobs
from instructkit.models import DEFAULT_MODEL, load_model, mark_adapter_portable
from instructkit.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from instructkit.train.loop import window_means
from instructkit.train.ppo_rollout import (
    Rollout,
    RolloutConfig,
    causal_lm,
    generate_rollout,
    reference_logprobs,
    response_hidden,
    step_prompts,
    stop_token_ids,
)
from instructkit.train.prompts import (
    PromptFit,
    Query,
    checked_prompt_rows,
    encode_prompts,
    report_prompt_rejects,
)
from instructkit.train.reward_adapter import POLICY_ADAPTER, SharedBaseReward
from instructkit.train.rewards import RewardFn, RewardItem
from instructkit.train.rl_math import (
    AdaptiveKLController,
    FixedKLController,
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    kl_penalized_rewards,
    masked_mean,
    masked_whiten,
)
from instructkit.train.sft import AdapterConfig, apply_lora, removed_on_failure, resolve_dtype
from instructkit.train.tracking import (
    MetricsLogger,
    SampleLogger,
    check_backends,
    plot_series,
    read_metrics,
    run_figures,
    truncate_metrics,
)

__all__ = [
    "KLConfig",
    "PPOConfig",
    "PPOResult",
    "PPOTrainConfig",
    "PolicyWithValue",
    "RolloutConfig",
    "format_ppo_summary",
    "run_ppo",
]

# keys of a metrics row that depend on the machine's speed, not on the run's seeds
TIMING_KEYS = ("rollout_tokens_per_s", "step_seconds")


class KLConfig(BaseModel):
    """The KL penalty to the reference (the ``kl:`` section)."""

    model_config = ConfigDict(extra="forbid")

    coef: float = Field(default=0.05, ge=0)  # beta (the initial one when adaptive)
    estimator: Literal["k1", "k3"] = "k1"
    adaptive: bool = False  # Ziegler et al.: move beta toward `target` KL per sequence
    target: float = Field(default=6.0, gt=0)
    horizon: int = Field(default=10000, gt=0)


class PPOTrainConfig(BaseModel):
    """Optimisation and run control (the ``train:`` section)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=20, gt=0)  # rollout + update rounds
    epochs: int = Field(default=4, gt=0)  # PPO passes over each step's rollouts
    minibatch_size: int = Field(default=4, gt=0)
    lr: float = Field(default=1e-4, gt=0)  # constant; AdamW
    weight_decay: float = Field(default=0.0, ge=0)
    grad_clip: float | None = Field(default=1.0, gt=0)
    clip: float = Field(default=0.2, gt=0)  # policy ratio clip (epsilon)
    value_clip: float = Field(default=0.2, gt=0)
    value_coef: float = Field(default=0.1, ge=0)
    entropy_coef: float = Field(default=0.0, ge=0)
    gamma: float = Field(default=1.0, ge=0, le=1)
    lam: float = Field(default=0.95, ge=0, le=1)
    whiten_rewards: bool = False  # scale per-token rewards by their std (mean kept)
    save_every: int | None = Field(default=None, gt=0)  # steps between checkpoints
    keep_checkpoints: int = Field(default=2, gt=0)
    resume: bool = True
    seed: int = 0


class PPOConfig(BaseModel):
    """The whole ``train ppo`` workflow; YAML keys, attributes and --set paths are the same."""

    model_config = ConfigDict(extra="forbid")

    model: str = DEFAULT_MODEL
    output_dir: str = "runs/ppo"
    # prompt rows (data/prompt_rows.py): a path or a dataset spec (path, split, subset,
    # columns, file_type; docs/data.md), any source the loader reads
    prompts: SourceField = ""
    template: TemplateName = "tokenizer"
    max_seq_len: int = Field(default=1024, gt=8)  # prompt + max_new_tokens must fit
    skip_invalid: bool = False
    lora: AdapterConfig = Field(default_factory=AdapterConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    kl: KLConfig = Field(default_factory=KLConfig)
    train: PPOTrainConfig = Field(default_factory=PPOTrainConfig)
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    report_to: list[str] = Field(default_factory=list)
    samples_every: int = Field(default=10, ge=0)  # steps between samples.jsonl rows (0: none)


class PPOResult(BaseModel):
    output_dir: str
    steps: int
    n_prompts: int
    rejected: int
    reward_start: float | None  # mean reward over the first `window` steps
    reward_end: float | None
    kl_end: float | None  # mean KL per sequence over the last `window` steps
    window: int
    resumed_from: int | None
    seconds: float


class PolicyWithValue(torch.nn.Module):
    """The policy LM (LoRA-wrapped or not) and a linear value head on its last hidden state.

    The LM head runs only at response positions: position P - 1 + t predicts response token t,
    and its hidden state also gives V(prompt + response[:t]).
    """

    def __init__(self, lm: Any) -> None:
        super().__init__()
        self.lm = lm
        self.value_head = torch.nn.Linear(causal_lm(lm).config.hidden_size, 1)
        torch.nn.init.zeros_(self.value_head.weight)  # V = 0 until trained
        torch.nn.init.zeros_(self.value_head.bias)

    def forward(
        self, ids: torch.Tensor, attention: torch.Tensor, n_prompt: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, R, V) and values (B, R) at the response positions."""
        hidden = response_hidden(self.lm, ids, attention, n_prompt)  # (B, R, H)
        logits = causal_lm(self.lm).get_output_embeddings()(hidden)
        return logits, self.value_head(hidden.float()).squeeze(-1)


def _check(cfg: PPOConfig) -> None:
    problems = []
    if not cfg.prompts:
        problems.append("prompts: a file of prompt rows is needed")
    elif missing := missing_source("prompts", cfg.prompts):
        problems.append(missing)
    if cfg.train.minibatch_size > cfg.rollout.batch_size:
        problems.append(
            f"train.minibatch_size ({cfg.train.minibatch_size}) > rollout.batch_size "
            f"({cfg.rollout.batch_size})"
        )
    if cfg.rollout.max_new_tokens >= cfg.max_seq_len:
        problems.append(
            f"rollout.max_new_tokens ({cfg.rollout.max_new_tokens}) leaves no room for a prompt "
            f"in max_seq_len ({cfg.max_seq_len})"
        )
    if problems:
        raise ConfigError(
            f"{len(problems)} config problem(s): " + "; ".join(problems),
            fix="correct the keys above (every key is listed in docs/ppo.md).",
        )
    check_backends(cfg.report_to)


def _prompt_fit(cfg: PPOConfig) -> PromptFit:
    return PromptFit(
        source_name(cfg.prompts), cfg.max_seq_len, cfg.rollout.max_new_tokens,
        "rollout.max_new_tokens",
        cfg.skip_invalid,
    )  # fmt: skip


def _scores(reward: RewardFn, queries: Sequence[Query], roll: Rollout) -> torch.Tensor:
    items = [
        RewardItem(q.source.messages[-1]["content"], text, q.source.row)
        for q, text in zip(queries, roll.texts, strict=True)
    ]
    scores = reward(items)
    if len(scores) != len(items) or not all(math.isfinite(float(s)) for s in scores):
        raise TrainingError(
            f"the reward '{reward.name}' returned {len(scores)} scores for {len(items)} "
            f"responses, or a score that is not a finite number: {list(scores)[:4]}",
            fix="make the reward function return one finite float per response.",
        )
    return torch.tensor([float(s) for s in scores], device=roll.mask.device)


@dataclass
class Experience:
    """One step's rollouts with what PPO's update needs, all (B, R) but the stats."""

    roll: Rollout
    old_logp: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    stats: dict[str, float]


@torch.no_grad()
def make_experience(
    policy: PolicyWithValue,
    ref_lm: Any,
    roll: Rollout,
    scores: torch.Tensor,
    cfg: PPOConfig,
    kl_coef: float,
) -> Experience:
    """Rollout log-probs, values and entropy; the KL to the reference; per-token rewards;
    GAE advantages (whitened) and returns."""
    tokens, m = roll.ids[:, roll.n_prompt :], roll.mask
    logits, values = policy(roll.ids, roll.attention, roll.n_prompt)
    logp = token_logprobs(logits, tokens, cfg.rollout.temperature)
    entropy = masked_mean(entropy_from_logits(logits / cfg.rollout.temperature), m)
    del logits
    ref_logp = reference_logprobs(policy.lm, ref_lm, roll, cfg.rollout.temperature)
    kl = kl_per_token(logp, ref_logp, cfg.kl.estimator) * m  # (B, R)
    rewards = kl_penalized_rewards(
        kl, m, scores, kl_coef, ended=roll.ended, truncation_penalty=cfg.rollout.truncation_penalty
    )
    if cfg.train.whiten_rewards:
        rewards = masked_whiten(rewards, m, shift_mean=False)
    advantages, returns = gae(rewards, values, m, cfg.train.gamma, cfg.train.lam)
    advantages = masked_whiten(advantages, m)
    stats = {
        "kl": float(kl.sum(-1).mean()),  # per sequence, the estimator in kl.estimator
        "entropy": float(entropy),
        "value_mean": float(masked_mean(values, m)),
        "return_mean": float(masked_mean(returns, m)),
    }
    return Experience(roll, logp, values, advantages, returns, stats)


def ppo_update(
    policy: PolicyWithValue,
    optimizer: torch.optim.Optimizer,
    exp: Experience,
    cfg: PPOConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    """``train.epochs`` passes of shuffled minibatches of the clipped losses; mean stats."""
    tc, roll = cfg.train, exp.roll
    stats: dict[str, list[float]] = defaultdict(list)
    params = [p for p in policy.parameters() if p.requires_grad]
    for _ in range(tc.epochs):
        order = torch.randperm(len(roll.ids), generator=generator)
        for start in range(0, len(order), tc.minibatch_size):
            i = order[start : start + tc.minibatch_size].to(roll.ids.device)
            m = roll.mask[i]
            logits, values = policy(roll.ids[i], roll.attention[i], roll.n_prompt)
            logp = token_logprobs(logits, roll.ids[i, roll.n_prompt :], cfg.rollout.temperature)
            pl = clipped_policy_loss(logp, exp.old_logp[i], exp.advantages[i], m, tc.clip)
            vl = clipped_value_loss(values, exp.old_values[i], exp.returns[i], m, tc.value_clip)
            loss = pl.loss + tc.value_coef * vl.loss
            if tc.entropy_coef:
                ent = masked_mean(entropy_from_logits(logits / cfg.rollout.temperature), m)
                loss = loss - tc.entropy_coef * ent
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            if tc.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            optimizer.step()
            for k, v in (("loss", loss.item()), ("policy_loss", pl.loss.item()),
                         ("value_loss", vl.loss.item()), ("clip_fraction", pl.clip_frac),
                         ("value_clip_fraction", vl.clip_frac),
                         ("approx_kl", pl.approx_kl)):  # fmt: skip
                stats[k].append(v)
    return {k: sum(v) / len(v) for k, v in stats.items()}


def _step_row(
    step: int, scores: torch.Tensor, exp: Experience, update: dict[str, float], kl_coef: float
) -> dict[str, Any]:
    roll = exp.roll
    lengths = roll.mask.sum(-1)
    return {
        "step": step,
        "reward_mean": float(scores.mean()),
        "reward_std": float(scores.std()) if len(scores) > 1 else 0.0,
        **exp.stats,
        **update,
        "kl_coef": kl_coef,
        "response_length": float(lengths.mean()),
        "truncated_frac": float((~roll.ended).float().mean()),
        "rollout_tokens_per_s": float(lengths.sum()) / max(roll.seconds, 1e-9),
    }


def _kl_controller(cfg: KLConfig) -> FixedKLController | AdaptiveKLController:
    if cfg.adaptive:
        return AdaptiveKLController(cfg.coef, cfg.target, cfg.horizon)
    return FixedKLController(cfg.coef)


def _models(cfg: PPOConfig) -> tuple[PolicyWithValue, Any, Any, torch.device]:
    """The policy with its value head, the frozen reference (None on LoRA), the tokenizer."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    lm, tokenizer = load_model(cfg.model, dtype=resolve_dtype(cfg.dtype))
    ref_lm = None
    if not cfg.lora.enabled:
        ref_lm = copy.deepcopy(lm).to(device).eval().requires_grad_(False)
    policy = PolicyWithValue(apply_lora(lm, cfg.lora)).to(device).eval()
    return policy, ref_lm, tokenizer, device


def run_ppo(cfg: PPOConfig, reward: RewardFn, *, progress: bool = True) -> PPOResult:
    """Run PPO on ``cfg.prompts`` with ``reward``; see the module docstring."""
    from tqdm.auto import tqdm

    _check(cfg)
    out = Path(cfg.output_dir)
    started = time.perf_counter()
    with removed_on_failure(out, enabled=True):
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        fit = _prompt_fit(cfg)
        rows, rejects = checked_prompt_rows(cfg.prompts, reward, skip_invalid=cfg.skip_invalid)

        policy, ref_lm, tokenizer, device = _models(cfg)
        if isinstance(reward, SharedBaseReward):  # the reward model as a second adapter
            reward.attach(policy.lm)
        template = get_template(cfg.template, tokenizer)
        queries, too_long = encode_prompts(rows, template, tokenizer, fit)
        rejects += too_long
        report_prompt_rejects(out, rejects, too_long, len(queries), fit)
        stop = stop_token_ids(tokenizer, template)

        params = [p for p in policy.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        kl_ctl = _kl_controller(cfg.kl)
        start = _resume(out, policy, optimizer, kl_ctl, cfg)
        logger = MetricsLogger(out, cfg.report_to, run_name=out.name, purge_step=start or None)
        samples = SampleLogger(out, cfg.samples_every)
        for step in tqdm(range(start, cfg.train.steps), disable=not progress, desc="ppo"):
            t0 = time.perf_counter()
            picked = step_prompts(len(queries), cfg.rollout.batch_size, cfg.train.seed, step)
            batch = [queries[i] for i in picked]
            torch.manual_seed(cfg.train.seed * 1_000_003 + step)  # the same rollouts on resume
            roll = generate_rollout(policy.lm, batch, cfg.rollout, tokenizer, stop)
            scores = _scores(reward, batch, roll)
            if samples.due(step, last=step == cfg.train.steps - 1):
                prompts = [q.source.messages[-1]["content"] for q in batch]
                samples.log(step, prompts, roll.texts, scores.tolist())
            exp = make_experience(policy, ref_lm, roll, scores, cfg, kl_ctl.value)
            gen = torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + step)
            update = ppo_update(policy, optimizer, exp, cfg, gen)
            row = _step_row(step, scores, exp, update, kl_ctl.value)
            kl_ctl.update(exp.stats["kl"], len(batch))
            logger.log({**row, "step_seconds": time.perf_counter() - t0})
            done = step + 1
            if done == cfg.train.steps or (
                cfg.train.save_every and done % cfg.train.save_every == 0
            ):
                state = {"kl_coef": kl_ctl.value}
                keep = cfg.train.keep_checkpoints
                save_checkpoint(out / "checkpoints", done, policy, optimizer, state, keep=keep)
        logger.close()
        seconds = time.perf_counter() - started
        return _write_outputs(policy, tokenizer, cfg, (len(queries), len(rejects)), start, seconds)


def _resume(
    out: Path,
    policy: PolicyWithValue,
    optimizer: torch.optim.Optimizer,
    kl_ctl: FixedKLController | AdaptiveKLController,
    cfg: PPOConfig,
) -> int:
    """Restore the newest checkpoint (weights, optimizer, KL coefficient); the next step."""
    ckpt = latest_checkpoint(out / "checkpoints") if cfg.train.resume else None
    if ckpt is None:
        truncate_metrics(out / "metrics.jsonl", -1)
        truncate_metrics(out / "samples.jsonl", -1)
        return 0
    print(f"resuming from {ckpt}")
    state = load_checkpoint(ckpt, policy, optimizer)
    kl_ctl.value = float(state["kl_coef"])
    truncate_metrics(out / "metrics.jsonl", int(state["step"]) - 1)  # rows are 0-based steps
    truncate_metrics(out / "samples.jsonl", int(state["step"]) - 1)
    return int(state["step"])


def _write_outputs(
    policy: PolicyWithValue,
    tokenizer: Any,
    cfg: PPOConfig,
    counts: tuple[int, int],
    start: int,
    seconds: float,
) -> PPOResult:
    """Weights, value head, plots and summary.json; ``counts`` = (prompts kept, rejected)."""
    from safetensors.torch import save_file

    writing = time.perf_counter()
    out = Path(cfg.output_dir)
    target = out / ("adapter" if cfg.lora.enabled else "model")
    if cfg.lora.enabled:  # the policy's adapter only, not a shared reward adapter
        policy.lm.save_pretrained(target, selected_adapters=[POLICY_ADAPTER])
        mark_adapter_portable(target, cfg.model)
    else:
        policy.lm.save_pretrained(target)
    tokenizer.save_pretrained(target)
    head = {k: v.detach().cpu().contiguous() for k, v in policy.value_head.state_dict().items()}
    save_file(head, str(out / "value_head.safetensors"))
    events = read_metrics(out / "metrics.jsonl")
    title = f"PPO {cfg.model}"
    plot_series(events, ["reward_mean"], out / "reward.png", title=title, ylabel="mean reward")
    plot_series(events, ["kl"], out / "kl.png", title=title, ylabel="KL to the reference")
    rewards = [e["reward_mean"] for e in events]
    r0, r1, k = window_means(rewards) if rewards else (None, None, 0)
    kls = [e["kl"] for e in events]
    result = PPOResult(
        output_dir=str(out), steps=len(events), n_prompts=counts[0], rejected=counts[1],
        reward_start=r0, reward_end=r1, kl_end=sum(kls[-k:]) / k if k else None, window=k,
        resumed_from=start or None, seconds=round(seconds, 2),
    )  # fmt: skip
    figures = run_figures(seconds + time.perf_counter() - writing, _rollout(events, start, cfg))
    write_atomic(out / "summary.json", [json.dumps({**result.model_dump(), **figures}, indent=2)])
    return result


def _rollout(events: list[dict[str, Any]], start: int, cfg: PPOConfig) -> tuple[int, float]:
    """(tokens generated, seconds generating) over the steps this process ran, from the
    metrics rows (each holds its mean response length and tokens per second)."""
    rows = [e for e in events if e["step"] >= start and e.get("rollout_tokens_per_s")]
    tokens = [e["response_length"] * cfg.rollout.batch_size for e in rows]
    seconds = sum(t / e["rollout_tokens_per_s"] for t, e in zip(tokens, rows, strict=True))
    return round(sum(tokens)), seconds


def format_ppo_summary(result: PPOResult) -> str:
    """What ``train ppo`` prints at the end of a run."""
    lines = [f"{result.steps} PPO steps on {result.n_prompts} prompts ({result.rejected} rejected)"]
    if result.reward_start is not None:
        lines.append(
            f"reward {result.reward_start:.4f} -> {result.reward_end:.4f} (mean of the first and "
            f"last {result.window} steps); KL to the reference at the end {result.kl_end:.4f}"
        )
    lines.append(f"outputs in {result.output_dir}")
    return "\n".join(lines)
