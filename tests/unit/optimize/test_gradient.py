"""Gradient-based instruction search (optimize.gradient) on the tiny random model."""

import contextlib
import io
import json
import random
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from instructkit.errors import ConfigError
from instructkit.lm.base import ChatRequest
from instructkit.lm.cache import CachedLM
from instructkit.lm.local import LocalLM
from instructkit.lm.scripted import ScriptedLM
from instructkit.models import TINY_MODEL
from instructkit.optimize.gradient import (
    GradientSettings,
    candidate_losses,
    discrete_search,
    fluency_nll,
    local_model,
    one_hot_objective,
    prompt_items,
    protected_positions,
    readable_token_mask,
    sample_swaps,
    token_gradient,
    top_k_tokens,
    train_soft_prompt,
)
from instructkit.optimize.prompt import PromptOptConfig, run_prompt_optimization
from instructkit.optimize.task import InstructionTask

INSTRUCTION = "Answer the question with yes or no."
TASK = InstructionTask(("question",), "answer", ("yes", "no"))


def toy_rows(n=8):
    return [
        {"question": f"is the number {i} even", "answer": "yes" if i % 2 == 0 else "no"}
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def lm():
    return LocalLM.load(TINY_MODEL)


@pytest.fixture(scope="module")
def items(lm):
    return prompt_items(lm, TASK, INSTRUCTION, TASK.examples(toy_rows()))


def ids_of(lm, text):
    return lm.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_settings_forbid_unknown_keys():
    with pytest.raises(ValidationError):
        GradientSettings(stepz=3)


def test_prompt_items_cut_the_prompt_around_the_instruction(lm, items):
    conv_text = lm.tokenizer.decode([*items[0].before, *ids_of(lm, INSTRUCTION), *items[0].after])
    assert INSTRUCTION + "\n\nQuestion: is the number 0 even" in conv_text
    answer = [t for t in items[0].after_labels if t != -100]
    assert lm.tokenizer.decode(answer).startswith("yes")
    assert len(items[0].after) == len(items[0].after_labels)


def test_readable_mask_keeps_words_only(lm):
    mask = readable_token_mask(lm.tokenizer)
    assert mask.shape == (len(lm.tokenizer),)
    kept = [lm.tokenizer.decode([i]) for i in mask.nonzero()[:, 0].tolist()]
    assert len(kept) > 50
    for text in kept:
        word = text[1:] if text.startswith(" ") else text
        assert word.isascii() and word.isalpha(), text
    for text in (".", ",", "\n", "<|im_end|>", "<|im_start|>"):
        ids = (
            ids_of(lm, text)
            if not text.startswith("<|")
            else [lm.tokenizer.convert_tokens_to_ids(text)]
        )
        assert not mask[ids].any(), text


def test_token_gradient_and_top_k_shapes(lm, items):
    ids = ids_of(lm, INSTRUCTION)
    grad = token_gradient(lm.model, items, ids, fluency=0.1)
    assert grad.shape == (len(ids), len(lm.tokenizer))
    assert grad.abs().sum() > 0
    allowed = readable_token_mask(lm.tokenizer)
    top = top_k_tokens(grad, allowed, 5)
    assert top.shape == (len(ids), 5)
    assert allowed[top].all()
    # the first of each row has the most negative gradient among allowed tokens
    best = grad.masked_fill(~allowed, float("inf")).argmin(-1)
    assert torch.equal(top[:, 0], best)
    # no parameter of the model is left with a gradient or a changed requires_grad
    assert all(p.grad is None for p in lm.model.parameters())


def test_sample_swaps_change_one_token_from_the_top_list():
    top = torch.tensor([[10, 11], [20, 21], [30, 31]])
    swaps = sample_swaps([1, 2, 3], top, 6, random.Random(0))
    assert len(swaps) == 6
    for cand in swaps:
        changed = [p for p in range(3) if cand[p] != [1, 2, 3][p]]
        assert len(changed) == 1 and cand[changed[0]] in top[changed[0]].tolist()
    assert {next(p for p in range(3) if c[p] != [1, 2, 3][p]) for c in swaps} == {0, 1, 2}


def test_sample_swaps_never_touch_protected_positions():
    top = torch.tensor([[10, 11], [20, 21], [30, 31]])
    swaps = sample_swaps([1, 2, 3], top, 8, random.Random(0), protected={0, 2})
    assert swaps and all(c[0] == 1 and c[2] == 3 and c[1] in (20, 21) for c in swaps)
    assert sample_swaps([1, 2, 3], top, 4, random.Random(0), protected={0, 1, 2}) == []


def test_protected_positions_cover_the_label_words_and_fields(lm):
    ids = ids_of(lm, INSTRUCTION)
    frozen = protected_positions(lm.tokenizer, ids, ["yes", "no", "question"])
    spelled = lm.tokenizer.decode([ids[i] for i in sorted(frozen)]).lower()
    for word in ("yes", "no", "question"):
        assert word in spelled
    assert "answer" not in spelled  # only the protected words, whole
    assert protected_positions(lm.tokenizer, ids, ["nothing-here"]) == set()


def test_discrete_search_keeps_the_label_words(lm, items):
    s = GradientSettings(steps=6, top_k=8, candidates=8, fluency=0.05)
    found = discrete_search(lm, items, INSTRUCTION, s, seed=1, protect=["yes", "no"])
    assert re.search(r"\byes\b", found.instruction) and re.search(r"\bno\b", found.instruction)


def _manual_answer_loss(lm, items, ids):
    losses = []
    for it in items:
        seq = torch.tensor([[*it.before, *ids, *it.after]])
        labels = torch.tensor([[-100] * (len(it.before) + len(ids)) + list(it.after_labels)])
        with torch.no_grad():
            logits = lm.model(input_ids=seq).logits
        losses.append(F.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100))
    return float(torch.stack(losses).mean())


def test_candidate_losses_are_the_exact_answer_loss(lm, items):
    ids = ids_of(lm, INSTRUCTION)
    other = ids_of(lm, "Say yes or no.")
    got = candidate_losses(lm.model, items, [ids, other], 0.0, rows_per_pass=3)
    assert got.shape == (2,)
    assert got[0].item() == pytest.approx(_manual_answer_loss(lm, items, ids), rel=1e-4)
    assert got[1].item() == pytest.approx(_manual_answer_loss(lm, items, other), rel=1e-4)


def test_fluency_is_the_instruction_nll(lm, items):
    ids = ids_of(lm, INSTRUCTION)
    before = list(items[0].before)
    with torch.no_grad():
        logp = lm.model(input_ids=torch.tensor([before + ids])).logits[0].log_softmax(-1)
    manual = -sum(logp[len(before) + j - 1, t] for j, t in enumerate(ids)) / len(ids)
    assert fluency_nll(lm.model, before, [ids])[0].item() == pytest.approx(float(manual), rel=1e-4)
    plain = candidate_losses(lm.model, items, [ids], 0.0)
    weighted = candidate_losses(lm.model, items, [ids], 0.5)
    assert (weighted - plain).item() == pytest.approx(0.5 * float(manual), rel=1e-4)


def test_the_one_hot_objective_is_the_exact_objective(lm, items):
    ids = ids_of(lm, INSTRUCTION)
    one_hot = F.one_hot(torch.tensor(ids), len(lm.tokenizer)).float()
    for fluency in (0.0, 0.7):
        with torch.no_grad():
            got = one_hot_objective(lm.model, items, one_hot, fluency).item()
        exact = candidate_losses(lm.model, items, [ids], fluency)[0].item()
        assert got == pytest.approx(exact, rel=1e-4)


def test_gradient_chosen_swaps_lower_the_loss_more_than_random_swaps(lm, items):
    ids = ids_of(lm, INSTRUCTION)
    allowed = readable_token_mask(lm.tokenizer)
    top = top_k_tokens(token_gradient(lm.model, items, ids), allowed, 4)
    words = allowed.nonzero()[:, 0].tolist()
    rng = random.Random(0)
    chosen, drawn = [], []
    for pos in range(len(ids)):
        for k in range(4):
            chosen.append([*ids[:pos], int(top[pos, k]), *ids[pos + 1 :]])
            drawn.append([*ids[:pos], rng.choice(words), *ids[pos + 1 :]])
    by_gradient = candidate_losses(lm.model, items, chosen, 0.0).mean()
    at_random = candidate_losses(lm.model, items, drawn, 0.0).mean()
    assert by_gradient < at_random


def test_discrete_search_lowers_the_objective_and_stays_readable(lm, items):
    s = GradientSettings(steps=4, top_k=8, candidates=8, fluency=0.05)
    found = discrete_search(lm, items, INSTRUCTION, s, seed=1)
    assert len(found.objective) == 5
    assert all(b <= a for a, b in zip(found.objective, found.objective[1:], strict=False))
    assert found.objective[-1] < found.objective[0]
    assert found.instruction != INSTRUCTION
    ids = ids_of(lm, found.instruction)
    assert lm.tokenizer.decode(ids) == found.instruction  # projects to text and back
    allowed = readable_token_mask(lm.tokenizer)
    new = [t for t, o in zip(ids, ids_of(lm, INSTRUCTION), strict=True) if t != o]
    assert new and allowed[new].all()
    assert discrete_search(lm, items, INSTRUCTION, s, seed=1) == found  # seeded


def test_soft_prompt_trains_saves_and_generates_in_local_lm(tmp_path, items):
    base = LocalLM.load(TINY_MODEL)  # its own copy: the soft prompt wraps the model
    s = GradientSettings(soft_tokens=4, soft_steps=15, soft_lr=0.05, soft_batch=4)
    soft = train_soft_prompt(base, items, INSTRUCTION, s, seed=0)
    assert len(soft.losses) == 15
    assert sum(soft.losses[-3:]) / 3 < sum(soft.losses[:3]) / 3
    soft.model.save_pretrained(str(tmp_path / "soft"))
    config = json.loads((tmp_path / "soft" / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["num_virtual_tokens"] == 4

    loaded = LocalLM.load(TINY_MODEL, adapter=tmp_path / "soft")
    trained = soft.model.prompt_encoder["default"].embedding.weight
    assert torch.allclose(loaded.model.prompt_encoder["default"].embedding.weight, trained)
    short = ChatRequest.from_messages([{"role": "user", "content": "is 4 even"}], max_tokens=4)
    long = ChatRequest.from_messages(
        [{"role": "user", "content": "is the number 12345 even or odd, tell me"}], max_tokens=4
    )
    alone = loaded.complete([short])[0]
    together = loaded.complete([short, long])
    assert alone.completion_tokens > 0
    assert together[0].texts == alone.texts  # left padding does not change the answer
    plain = LocalLM.load(TINY_MODEL)
    with torch.no_grad():
        x = torch.tensor([[1, 2, 3]])
        assert not torch.allclose(
            loaded.model(input_ids=x).logits[:, -1], plain.model(input_ids=x).logits[:, -1]
        )


def test_local_model_refuses_other_lms(lm, tmp_path):
    assert local_model(lm) is lm
    assert local_model(CachedLM(lm, tmp_path / "c.sqlite")) is lm
    with pytest.raises(ConfigError, match="local model"):
        local_model(ScriptedLM(lambda r: "yes"))


def _cfg(tmp_path, **kw):
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in toy_rows(20)))
    return PromptOptConfig(
        data=str(data), inputs=["question"], target="answer", labels=["yes", "no"],
        instruction=INSTRUCTION, method="gradient", budget=8, max_tokens=3,
        out=str(tmp_path / "out"), **kw,
    )  # fmt: skip


def test_optimize_prompt_gradient_refuses_a_non_local_lm_before_any_call(tmp_path):
    scripted = ScriptedLM(lambda r: "yes")
    with pytest.raises(ConfigError, match="not a local model"):
        run_prompt_optimization(_cfg(tmp_path), lm=scripted, progress=False)
    assert scripted.calls == []


def test_optimize_prompt_gradient_end_to_end(tmp_path):
    settings = GradientSettings(
        train_items=4, steps=2, top_k=4, candidates=4, soft_tokens=2, soft_steps=3, soft_batch=2
    )
    cfg = _cfg(tmp_path, gradient=settings)
    result = run_prompt_optimization(cfg, lm=LocalLM.load(TINY_MODEL), progress=False)
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    grad = saved["gradient"]
    assert set(grad) == {"discrete", "soft_prompt"}
    assert result.best.instruction in (grad["discrete"]["instruction"], INSTRUCTION)
    assert re.search(r"\byes\b.*\bno\b", grad["discrete"]["instruction"])  # labels kept
    assert set(grad["discrete"]) >= {"instruction", "val", "test", "objective", "test_comparison"}
    assert set(grad["soft_prompt"]) >= {"test", "adapter", "test_comparison"}
    assert (tmp_path / "out" / "soft_prompt" / "adapter_config.json").is_file()
    assert saved["calls"]["task"] <= cfg.budget
    history = [json.loads(x) for x in (tmp_path / "out" / "history.jsonl").read_text().splitlines()]
    soft_rows = [r for r in history if r.get("phase") == "soft_prompt"]
    assert len(soft_rows) == result.sizes["test"]
    assert grad["soft_prompt"]["test"] == pytest.approx(
        sum(r["score"] for r in soft_rows) / len(soft_rows)
    )


def test_the_gradient_example_in_docs_optimize_runs():
    doc = Path(__file__).resolve().parents[3] / "docs" / "optimize.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text("utf-8"), re.S)
    code = next(b for b in blocks if "discrete_search" in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(doc), "exec"), {})
    assert out.getvalue().split() == ["True", "5"]
