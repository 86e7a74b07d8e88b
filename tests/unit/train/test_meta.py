"""train meta: the FOMAML / Reptile math on a one-parameter quadratic (closed form), episodes,
a meta-step on the tiny model, exact resume after SIGKILL, and config errors."""

import json
import random
import sys
from pathlib import Path

import pytest
import torch
from killing import kill_when
from safetensors.torch import load_file

from instructkit.data.task_suite import load_suite
from instructkit.errors import ConfigError
from instructkit.train.meta import (
    MetaConfig,
    fomaml_outer_grad,
    inner_adapt,
    mean_params,
    reptile_delta,
    run_meta,
    sample_episode,
)

TOY_TASKS = ("plural", "antonym", "first_letter")


def quadratic(a: float, c: float):
    """loss(w) = a/2 (w - c)^2; a 'batch' is ignored."""
    return lambda params, batch: a / 2 * (params["w"] - c).pow(2).sum()


def test_inner_adapt_is_sgd_on_the_quadratic():
    a, c, lr, w0 = 2.0, 3.0, 0.1, 1.0
    params = {"w": torch.tensor([w0])}
    out = inner_adapt(quadratic(a, c), params, [{}], lr, steps=3)
    w = w0
    for _ in range(3):
        w = w - lr * a * (w - c)  # w' = w - lr a (w - c)
    assert out["w"].item() == pytest.approx(w)
    assert params["w"].item() == w0  # the input is not modified
    assert not out["w"].requires_grad


def test_fomaml_gradient_is_the_query_gradient_at_the_adapted_point():
    a_s, c_s, a_q, c_q, lr, w0 = 1.5, 2.0, 3.0, -1.0, 0.2, 0.5
    adapted = inner_adapt(quadratic(a_s, c_s), {"w": torch.tensor([w0])}, [{}], lr, steps=2)
    w_k = w0
    for _ in range(2):
        w_k -= lr * a_s * (w_k - c_s)
    grad, loss = fomaml_outer_grad(quadratic(a_q, c_q), adapted, {})
    assert grad["w"].item() == pytest.approx(a_q * (w_k - c_q))
    assert loss == pytest.approx(a_q / 2 * (w_k - c_q) ** 2)


def test_reptile_delta_and_outer_update_in_closed_form():
    lr, outer, w0 = 0.1, 0.5, 0.0
    tasks = [(1.0, 2.0), (2.0, -1.0)]
    init = {"w": torch.tensor([w0])}
    deltas, expected = [], []
    for a, c in tasks:
        adapted = inner_adapt(quadratic(a, c), init, [{}], lr, steps=1)
        deltas.append(reptile_delta(init, adapted))
        expected.append(-lr * a * (w0 - c))  # w'_1 - w
    mean = mean_params(deltas)
    assert [d["w"].item() for d in deltas] == pytest.approx(expected)
    # init += outer_lr * mean(adapted - init), as SGD on the gradient -mean(delta)
    w = torch.nn.Parameter(torch.tensor([w0]))
    opt = torch.optim.SGD([w], lr=outer)
    w.grad = -mean["w"]
    opt.step()
    assert w.item() == pytest.approx(w0 + outer * sum(expected) / 2)


def test_episodes_are_seeded_and_support_and_query_are_disjoint():
    sizes = {"a": 10, "b": 6, "c": 3}  # c is too small for 2 + 2
    one = sample_episode(sizes, 5, 2, 2, random.Random("0:1"))
    two = sample_episode(sizes, 5, 2, 2, random.Random("0:1"))
    assert one == two
    assert sorted(e.task for e in one) == ["a", "b"]
    for e in one:
        assert len(e.support) == 2 and len(e.query) == 2
        assert not set(e.support) & set(e.query)
        assert max(e.support + e.query) < sizes[e.task]


@pytest.fixture(scope="module")
def toy_tasks(tmp_path_factory) -> Path:
    """Six short training items of each of three suite tasks."""
    items = [it for it in load_suite() if it["task"] in TOY_TASKS and it["split"] == "train"]
    picked = [it for t in TOY_TASKS for it in [x for x in items if x["task"] == t][:6]]
    path = tmp_path_factory.mktemp("meta") / "tasks.jsonl"
    path.write_text("".join(json.dumps(it) + "\n" for it in picked), "utf-8")
    return path


def _cfg(toy: Path, out: Path, **kw) -> MetaConfig:
    base = dict(
        model="tiny-random-llama",
        output_dir=str(out),
        tasks={"path": str(toy)},
        tasks_per_batch=2,
        support_size=2,
        query_size=2,
        inner_steps=2,
        inner_lr=0.05,
        outer_lr=0.02,
        meta_steps=4,
        lora={"r": 4},
        max_seq_len=256,
        save_every=1,
    )
    return MetaConfig.model_validate({**base, **kw})


def test_meta_steps_change_only_lora_and_lower_the_adapted_query_loss(toy_tasks):
    from instructkit.models import load_model
    from instructkit.train.meta import (
        _meta_step,
        decoder_of,
        functional_loss,
        lora_params,
        padded_batch,
        task_conversations,
        task_pools,
    )
    from instructkit.train.sft import apply_lora

    cfg = _cfg(toy_tasks, Path("unused"), outer_lr=0.05)
    torch.manual_seed(0)
    model, tok = load_model("tiny-random-llama")
    from instructkit.data.templates import get_template

    pools, _ = task_pools(
        task_conversations(cfg.tasks, cfg.task_mix), tok, get_template("tokenizer", tok), 256
    )
    model = apply_lora(model, cfg.lora)
    module = decoder_of(model)
    loss_fn, init = functional_loss(model), lora_params(module)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.Adam(list(init.values()), lr=cfg.outer_lr)
    fixed = sample_episode({t: len(p) for t, p in pools.items()}, 3, 2, 2, random.Random(7))
    batches = [
        (
            padded_batch([pools[e.task][i] for i in e.support], 0, "cpu"),
            padded_batch([pools[e.task][i] for i in e.query], 0, "cpu"),
        )
        for e in fixed
    ]
    before_lora = {n: p.detach().clone() for n, p in init.items()}
    _, start = _meta_step(loss_fn, init, batches, cfg)
    for _ in range(8):
        grad, _ = _meta_step(loss_fn, init, batches, cfg)
        opt.zero_grad()
        for n, p in init.items():
            p.grad = grad[n]
        opt.step()
    _, end = _meta_step(loss_fn, init, batches, cfg)
    # the functional inner loop leaves the module's own parameters in place (a module with
    # aliased submodules once came back holding other tensors, and resume diverged)
    assert all(p is init[n] for n, p in lora_params(module).items())
    assert end["post_query_loss"] < start["post_query_loss"]
    assert any(not torch.equal(before_lora[n], p) for n, p in init.items())
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(frozen[n], p), n


@pytest.mark.parametrize("algorithm", ["fomaml", "reptile"])
def test_run_meta_writes_the_adapter_metrics_and_summary(toy_tasks, tmp_path, algorithm):
    result = run_meta(
        _cfg(toy_tasks, tmp_path / "run", algorithm=algorithm, meta_steps=2), progress=False
    )
    out = tmp_path / "run"
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events] == [1, 2]
    assert {"pre_query_loss", "post_query_loss", "seconds", "peak_rss_mb"} <= events[0].keys()
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny-random-llama"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algorithm"] == algorithm and result.n_tasks == 3


def test_full_weights_are_refused_with_a_fix(toy_tasks, tmp_path):
    with pytest.raises(ConfigError, match="LoRA"):
        run_meta(_cfg(toy_tasks, tmp_path / "x", lora={"enabled": False}))
    assert not (tmp_path / "x").exists()


_SCRIPT = """
import sys
from instructkit.train.meta import MetaConfig, run_meta
run_meta(MetaConfig.model_validate_json(sys.argv[1]), progress=False)
"""


def test_a_killed_run_resumes_to_the_same_weights(toy_tasks, tmp_path):
    full = _cfg(toy_tasks, tmp_path / "full", meta_steps=5)
    run_meta(full, progress=False)
    killed = _cfg(toy_tasks, tmp_path / "killed", meta_steps=5)
    ckpts = tmp_path / "killed" / "checkpoints"
    kill_when(
        [sys.executable, "-c", _SCRIPT, killed.model_dump_json()],
        lambda: (ckpts / "checkpoint-00000002" / "state.json").exists(),
    )
    assert not (tmp_path / "killed" / "summary.json").exists()
    result = run_meta(killed, progress=False)
    assert result.resumed_from is not None and 2 <= result.resumed_from < 5
    a = load_file(str(tmp_path / "full" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [
        json.loads(x)["step"]
        for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3, 4, 5]


def test_a_checkpoint_of_other_settings_or_tasks_is_not_resumed(toy_tasks, tmp_path):
    from instructkit.errors import ConfigError

    run_meta(_cfg(toy_tasks, tmp_path / "run", meta_steps=2, save_every=1), progress=False)
    with pytest.raises(ConfigError, match=r"inner_lr: 0.05 -> 0.1.*resume=false"):
        run_meta(_cfg(toy_tasks, tmp_path / "run", meta_steps=3, inner_lr=0.1), progress=False)
    edited = tmp_path / "tasks.jsonl"
    edited.write_text(toy_tasks.read_text() + toy_tasks.read_text().splitlines()[0] + "\n")
    with pytest.raises(ConfigError, match="the tasks differ"):
        run_meta(_cfg(edited, tmp_path / "run", meta_steps=3), progress=False)
    # more meta-steps from the same settings: training goes on from the last checkpoint
    longer = run_meta(_cfg(toy_tasks, tmp_path / "run", meta_steps=3), progress=False)
    assert longer.resumed_from == 2


def test_tasks_from_a_dataset_spec_with_a_column_mapping(tmp_path):
    """tasks.path (train meta) and tasks_path (eval adapt) take a spec: here a CSV whose
    columns are named otherwise."""
    import csv

    from instructkit.data.tasks import MixConfig
    from instructkit.rl.adapt import AdaptConfig, _task_items
    from instructkit.train.meta import TaskSource, task_conversations

    items = [it for it in load_suite() if it["task"] in TOY_TASKS]
    keys = sorted({k for it in items for k in it})
    assert all(isinstance(v, str) for it in items for v in it.values())
    renamed = {"task": "name", "split": "part", "answer": "gold"}
    with (tmp_path / "items.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([renamed.get(k, k) for k in keys])
        w.writerows([[it.get(k, "") for k in keys] for it in items])
    spec = {
        "path": str(tmp_path / "items.csv"),
        "columns": {"task": "name", "split": "part", "answer": "gold"},
    }
    pools = task_conversations(TaskSource.model_validate({"path": spec}), MixConfig())
    train = {t for t in TOY_TASKS if any(it["split"] == "train" for it in items if it["task"] == t)}
    assert set(pools) == train
    cfg = AdaptConfig.model_validate({"tasks_path": spec, "task_names": [TOY_TASKS[0]], "ks": [0]})
    assert len(_task_items(cfg)[TOY_TASKS[0]]) == sum(it["task"] == TOY_TASKS[0] for it in items)


def test_tasks_from_any_dataset_with_a_task_column(tmp_path):
    from instructkit.data.tasks import MixConfig
    from instructkit.errors import DataFormatError
    from instructkit.train.meta import TaskSource, task_conversations

    rows = [
        {"instruction": f"Say {w}.", "output": w, "task": t}
        for t, words in {"echo": ["a", "b", "c"], "shout": ["X", "Y"]}.items()
        for w in words
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    pools = task_conversations(TaskSource(path=str(path), kind="sft"), MixConfig())
    assert {t: len(c) for t, c in pools.items()} == {"echo": 3, "shout": 2}
    assert pools["shout"][0].messages[-1].text == "X"
    path.write_text(json.dumps({"instruction": "Hi.", "output": "Hello."}) + "\n", "utf-8")
    with pytest.raises(DataFormatError, match="task"):
        task_conversations(TaskSource(path=str(path), kind="sft"), MixConfig())


def test_cli_train_meta(toy_tasks, tmp_path):
    from click.testing import CliRunner

    from instructkit.cli.main import cli

    config = tmp_path / "meta.yaml"
    config.write_text(_cfg(toy_tasks, tmp_path / "cli").model_dump_json(), "utf-8")  # JSON is YAML
    result = CliRunner().invoke(
        cli, ["train", "meta", "--config", str(config), "--set", "meta_steps=1"]
    )
    assert result.exit_code == 0, result.output
    assert "fomaml: 1 meta-steps over 3 tasks" in result.output
    assert (tmp_path / "cli" / "adapter" / "adapter_config.json").exists()
    bad = CliRunner().invoke(
        cli, ["train", "meta", "--config", str(config), "--set", "inner_step=2"]
    )
    assert bad.exit_code != 0 and "inner_steps" in bad.output
