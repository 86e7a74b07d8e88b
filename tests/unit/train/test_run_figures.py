"""`run_figures`: the cost keys every training summary shares (wall_s, peak_rss_mb,
peak_cuda_mb, rollout_tokens_per_s)."""

import pytest

from instructkit.train.tracking import run_figures


def test_the_figures_of_a_run_without_sampling():
    figures = run_figures(12.345)
    assert set(figures) == {"wall_s", "peak_rss_mb", "peak_cuda_mb"}
    assert figures["wall_s"] == 12.35
    assert 10 < figures["peak_rss_mb"] < 1e6  # this process, in MiB: tens of MiB at least
    import torch

    cuda_used = torch.cuda.is_available() and torch.cuda.is_initialized()
    assert (figures["peak_cuda_mb"] is None) == (not cuda_used)


def test_rollout_throughput_is_tokens_over_generation_seconds():
    assert run_figures(1.0, (300, 2.0))["rollout_tokens_per_s"] == pytest.approx(150.0)
    assert run_figures(1.0, (0, 0.0))["rollout_tokens_per_s"] is None  # nothing was generated
