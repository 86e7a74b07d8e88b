"""Tests on the embedded SmolLM2-135M-Instruct (marked slow: `make test-slow`)."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from instructkit.cli.main import cli
from instructkit.data.records import Conversation, Message
from instructkit.data.templates import get_template
from instructkit.data.tokenize import tokenize_conversation, trained_text
from instructkit.errors import TemplateError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol():
    from instructkit.models import load_model

    return load_model("smollm2-135m-instruct")


@pytest.mark.parametrize(
    "name,eot",
    [
        ("tokenizer", "<|im_end|>"),
        ("chatml", "<|im_end|>"),
        ("alpaca", "<|im_end|>"),
        ("vicuna", "<|im_end|>"),
    ],
)
def test_trained_text_is_responses_plus_eot(smol, name, eot):
    _, tok = smol
    conv = Conversation(
        [
            Message("system", "Be brief."),
            Message("user", "Hi there!"),
            Message("assistant", "Hello! How can I help?"),
            Message("user", "Name a fruit.", input="One word."),
            Message("assistant", " Apple.\n"),
        ]
    )
    ex = tokenize_conversation(conv, get_template(name, tok), tok)
    expected = (
        "Hello! How can I help?" + eot + ("Apple." if name == "llama3" else " Apple.\n") + eot
    )
    assert trained_text(ex, tok) == expected


def test_llama3_is_refused_on_smollm2_with_the_templates_that_fit(smol):
    # SmolLM2 splits <|eot_id|> and the header markers into several tokens
    _, tok = smol
    with pytest.raises(TemplateError) as e:
        get_template("llama3", tok)
    assert "needs <|start_header_id|> as one token" in str(e.value)
    assert "alpaca, vicuna, chatml, tokenizer" in str(e.value)


def test_segmentwise_ids_equal_whole_text_ids_for_own_template(smol):
    _, tok = smol
    conv = Conversation(
        [
            Message("user", "What is 2+2?"),
            Message("assistant", "4"),
            Message("user", "And 3+3?"),
            Message("assistant", "6, of course."),
        ]
    )
    t = get_template("tokenizer", tok)
    ex = tokenize_conversation(conv, t, tok)
    assert (
        ex.input_ids == tok(t.render(conv.to_chat(), False), add_special_tokens=False)["input_ids"]
    )


def test_generation_answers(smol):
    from instructkit.lm.base import ChatRequest
    from instructkit.lm.local import LocalLM

    model, tok = smol
    lm = LocalLM(model, tok)
    req = ChatRequest.from_messages(
        [{"role": "user", "content": "What is the capital of France?"}], max_tokens=16
    )
    assert "Paris" in lm.complete([req])[0].text


def test_demo_small_run_writes_results(tmp_path):
    out = tmp_path / "demo"
    small = ["eval.seen_limit=1", "eval.unseen_limit=1", "sft.train.max_steps=4"]
    recipe = Path(__file__).parents[2] / "recipes" / "demo.yaml"
    args = ["demo", "--config", str(recipe), "--out", str(out)]
    r = CliRunner().invoke(cli, [*args, *(x for s in small for x in ("--set", s))])
    assert r.exit_code == 0, r.output
    from instructkit.evaluate.results import load_eval_results

    results = load_eval_results(out / "results.json")
    assert results.systems == ["base", "tuned"] and {"seen", "unseen"} <= set(results.groups)
    assert (
        results.meta["unseen_tasks"] and (out / "sft" / "adapter" / "adapter_config.json").exists()
    )
    assert (out / "report.html").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unseen"]["lenient"]["n"] == 9 and summary["wall_s"] > 0


def test_readme_python_examples_run_as_written(run_readme_python):
    out = run_readme_python("smollm2-135m-instruct")
    assert "Red.<|im_end|>" in out
