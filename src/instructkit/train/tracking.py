"""Run tracking: metrics JSONL always; TensorBoard, Weights & Biases, MLflow when asked for.

``MetricsLogger(run_dir, report_to=["tensorboard"])`` appends one JSON object per event to
``run_dir/metrics.jsonl`` (flushed each time, so a killed run keeps what it logged) and mirrors
scalars to the backends named in ``report_to``, with the same step numbers. A backend that is
not installed is a ConfigError naming the package to install (``check_backends``: workflows
call it before any model loads). ``SampleLogger(run_dir, every=10)`` appends a few sampled
(prompt, response, reward) rows of a step to ``run_dir/samples.jsonl`` (PPO and GRPO).
``plot_losses`` draws the loss curve as a PNG, ``plot_series`` any logged metric against steps
(PPO's reward.png and kl.png).

The RL and preference workflows share one naming for what is the same concept (docs/ppo.md,
"Logged metrics"): :data:`RL_METRICS`.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from instructkit.errors import ConfigError

__all__ = [
    "BACKENDS",
    "RL_METRICS",
    "MetricsLogger",
    "SampleLogger",
    "check_backends",
    "plot_losses",
    "plot_series",
    "read_metrics",
    "run_figures",
    "truncate_metrics",
]

BACKENDS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}

# metrics.jsonl keys that mean the same thing in every workflow that logs them
RL_METRICS = {
    "reward_mean": "mean score of the step's sampled responses (reward model: of all responses)",
    "reward_std": "their standard deviation",
    "kl": "KL of the policy to the reference on the sampled responses",
    "entropy": "mean per-token entropy of the policy on the responses",
    "clip_fraction": "share of response tokens where the clipped policy term was taken",
    "value_loss": "clipped value loss (PPO only)",
    "response_length": "mean tokens per sampled response",
    "loss": "the optimised loss",
    "lr": "learning rate",
    "accuracy": "share of pairs whose chosen response outscores the rejected one",
    "margin": "mean reward of chosen minus rejected",
    "reward_chosen": "mean reward of the chosen responses",
    "reward_rejected": "mean reward of the rejected responses",
}


def check_backends(report_to: list[str]) -> None:
    """Fail early, naming the package, if a requested backend is unknown or not installed."""
    for name in report_to:
        if name not in BACKENDS:
            raise ConfigError(f"unknown report_to '{name}'.", fix=f"use {sorted(BACKENDS)}.")
        module = "torch.utils.tensorboard" if name == "tensorboard" else name
        probe = "tensorboard" if name == "tensorboard" else module
        if importlib.util.find_spec(probe) is None:
            raise ConfigError(
                f"report_to '{name}' needs '{BACKENDS[name]}'.",
                fix=f"pip install {BACKENDS[name]}, or drop it from report_to.",
            )


class MetricsLogger:
    """Append-only metrics log with optional mirrors (main process only).

    ``purge_step``: a resumed run's first step; TensorBoard hides what an earlier attempt
    logged at that step and after (the run logs those steps again), as ``truncate_metrics``
    does for metrics.jsonl."""

    def __init__(
        self,
        run_dir: str | Path,
        report_to: list[str] | None = None,
        run_name: str = "instructkit",
        enabled: bool = True,
        purge_step: int | None = None,
    ) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.report_to = list(report_to or [])
        self.run_name = run_name
        self.purge_step = purge_step
        self._backends: dict[str, Any] = {}
        if enabled:
            check_backends(self.report_to)
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def _open_backends(self) -> None:
        if "tensorboard" in self.report_to and "tensorboard" not in self._backends:
            from torch.utils.tensorboard import SummaryWriter

            self._backends["tensorboard"] = SummaryWriter(
                str(self.path.parent / "tensorboard"), purge_step=self.purge_step
            )
        if "wandb" in self.report_to and "wandb" not in self._backends:
            import wandb

            self._backends["wandb"] = wandb.init(name=self.run_name, dir=str(self.path.parent))
        if "mlflow" in self.report_to and "mlflow" not in self._backends:
            import mlflow

            self._backends["mlflow"] = mlflow.start_run(run_name=self.run_name)

    def log(self, event: dict[str, Any]) -> None:
        """Record one event (must hold 'step'); numeric fields are mirrored to backends."""
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")
        self._open_backends()
        step = int(event["step"])
        scalars = {
            k: float(v)
            for k, v in event.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        for name, backend in self._backends.items():
            if name == "tensorboard":
                for k, v in scalars.items():
                    backend.add_scalar(k, v, step)
            elif name == "wandb":
                backend.log(scalars, step=step)
            elif name == "mlflow":
                import mlflow

                mlflow.log_metrics(scalars, step=step)

    def close(self) -> None:
        for name, backend in self._backends.items():
            if name == "tensorboard":
                backend.close()
            elif name == "wandb":
                backend.finish()
            elif name == "mlflow":
                import mlflow

                mlflow.end_run()
        self._backends.clear()


class SampleLogger:
    """A few sampled (prompt, response, reward) rows per ``every`` steps in ``samples.jsonl``.

    ``every=0`` logs none; ``per_step`` rows are kept of a step's batch. Rows are appended and
    flushed like metrics, so a resumed run truncates them the same way (``truncate_metrics``).
    """

    def __init__(
        self, run_dir: str | Path, every: int, per_step: int = 4, enabled: bool = True
    ) -> None:
        self.path = Path(run_dir) / "samples.jsonl"
        self.every, self.per_step, self.enabled = every, per_step, enabled

    def due(self, step: int, *, last: bool = False) -> bool:
        """Whether ``step`` logs samples: every ``every`` steps and the last one."""
        return self.enabled and self.every > 0 and (step % self.every == 0 or last)

    def log(
        self, step: int, prompts: list[str], responses: list[str], rewards: list[float]
    ) -> None:
        """Append the first ``per_step`` (prompt, response, reward) of a step."""
        rows = zip(prompts, responses, rewards, strict=True)
        with self.path.open("a", encoding="utf-8") as f:
            for i, (prompt, response, reward) in enumerate(rows):
                if i == self.per_step:
                    break
                event = {"step": step, "prompt": prompt, "response": response}
                f.write(json.dumps({**event, "reward": float(reward)}) + "\n")


def truncate_metrics(path: str | Path, last_step: int) -> None:
    """Drop events after ``last_step`` (a resumed run logs those steps again)."""
    path = Path(path)
    if not path.exists():
        return
    from instructkit.io import write_jsonl

    write_jsonl([e for e in read_metrics(path) if e.get("step", 0) <= last_step], path)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Events of a metrics.jsonl (a torn last line from a kill is ignored)."""
    events = []
    for line in Path(path).read_text("utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def plot_losses(events: list[dict[str, Any]], out_png: str | Path, title: str = "") -> None:
    """Training loss per step and eval loss (if any) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(e["step"], e["loss"]) for e in events if "loss" in e]
    evals = [(e["step"], e["eval_loss"]) for e in events if "eval_loss" in e]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", linewidth=1)
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (token-weighted mean)")
    ax.set_title(title or "training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)


def plot_series(
    events: list[dict[str, Any]],
    keys: list[str],
    out_png: str | Path,
    *,
    title: str = "",
    ylabel: str = "",
) -> None:
    """Each metric in ``keys`` against ``step`` as one PNG (events without the key are skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key in keys:
        points = [(e["step"], e[key]) for e in events if key in e]
        if points:
            ax.plot(*zip(*points, strict=True), "o-", label=key, linewidth=1, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel or ", ".join(keys))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)


def run_figures(wall_s: float, rollout: tuple[int, float] | None = None) -> dict[str, Any]:
    """The cost figures every training workflow's summary records under the same keys:
    ``wall_s`` (the whole run: load, train, save), ``peak_rss_mb`` (the process's maximum
    resident memory), ``peak_cuda_mb`` (``torch.cuda.max_memory_allocated``; None off CUDA)
    and, for the methods that sample (``rollout`` = generated tokens, seconds spent
    generating), ``rollout_tokens_per_s``."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    torch: Any = sys.modules.get("torch")  # not imported just to learn that CUDA is unused
    cuda = torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()
    figures: dict[str, Any] = {
        "wall_s": round(wall_s, 2),
        "peak_rss_mb": round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
    }
    if rollout is not None:
        tokens, seconds = rollout
        figures["rollout_tokens_per_s"] = round(tokens / seconds, 2) if seconds > 0 else None
    return figures
