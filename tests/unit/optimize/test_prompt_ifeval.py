"""`optimize prompt --metric ifeval`: rows carry IFEval's checks instead of a reference; an item
scores the share of its instructions the reply follows (strict), with IFEval's own checker."""

import json

import dspy
import pytest

from instructkit.errors import DataFormatError
from instructkit.lm.scripted import ScriptedLM
from instructkit.optimize.metrics import ifeval_metric
from instructkit.optimize.prompt import PromptOptConfig, run_prompt_optimization

CHECKS = ["punctuation:no_comma", "change_case:english_lowercase"]


def reply(request):
    """Lowercase when told "lowercase", without commas when told "no comma"."""
    instruction = request.messages[-1][1].partition("\n\n")[0].lower()
    text = "Hello, World. Here is my answer, as asked."
    if "lowercase" in instruction:
        text = text.lower()
    if "no comma" in instruction:
        text = text.replace(",", "")
    return text


def rows(n=20):
    return [
        {"prompt": f"Write a line about topic {i}.", "instruction_id_list": CHECKS,
         "kwargs": [{}, {}]}
        for i in range(n)
    ]  # fmt: skip


def config(tmp_path, data, **kw):
    path = tmp_path / "ifeval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in data))
    values = {"data": str(path), "inputs": ["prompt"], "target": "response", "metric": "ifeval",
              "method": "initial", "budget": 20, "out": str(tmp_path / "out")}  # fmt: skip
    values.update(kw)
    return PromptOptConfig(**values)


@pytest.mark.parametrize(
    ("instruction", "score"),
    [("Answer the prompt.", 0.0), ("Answer in lowercase.", 0.5),
     ("Answer in lowercase, with no comma.", 1.0)],
)  # fmt: skip
def test_an_item_scores_the_share_of_checks_the_reply_passes(tmp_path, instruction, score):
    cfg = config(tmp_path, rows(), instruction=instruction)
    result = run_prompt_optimization(cfg, lm=ScriptedLM(reply), progress=False)
    assert result.metric == "ifeval"
    assert result.initial.val == score and result.initial.test == score


def test_the_search_finds_the_instruction_that_passes_the_checks(tmp_path):
    def propose(request):
        return f"Give the response in lowercase with no comma ({request.seed % 7})."

    cfg = config(tmp_path, rows(), instruction="Give the response.", method="opro", budget=40)
    result = run_prompt_optimization(
        cfg, lm=ScriptedLM(reply), proposer_lm=ScriptedLM(propose), progress=False
    )
    assert result.initial.val == 0.0 and result.best.val == 1.0


def test_bad_ifeval_fields_name_the_row_before_any_call(tmp_path):
    bad = rows()
    bad[4]["instruction_id_list"] = ["punctuation:no_commas"]
    bad[4]["kwargs"] = [{}]
    lm = ScriptedLM(reply)
    with pytest.raises(DataFormatError, match="no_commas") as info:
        run_prompt_optimization(config(tmp_path, bad), lm=lm, progress=False)
    assert info.value.row == 5 and lm.calls == []
    missing = rows()
    del missing[2]["kwargs"]
    with pytest.raises(DataFormatError, match="kwargs") as info:
        run_prompt_optimization(config(tmp_path, missing), lm=lm, progress=False)
    assert info.value.row == 3 and lm.calls == []


def test_the_metric_scores_blank_replies_zero():
    metric = ifeval_metric("prompt", "response")
    example = dspy.Example(prompt="p", instruction_id_list=CHECKS, kwargs=[{}, {}])
    assert metric(example, dspy.Prediction(response="  ")) == 0.0
    assert metric(example, dspy.Prediction(response="here is my answer as asked.")) == 1.0
    assert metric(example, dspy.Prediction(response="Here is my answer, as asked.")) == 0.0
