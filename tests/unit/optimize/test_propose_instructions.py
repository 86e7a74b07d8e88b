"""LM-proposed instructions (APE/MIPRO-style): the proposer's prompt is grounded in the data,
the program and the failures; replies are cleaned, checked and deduplicated with reasons; in
``optimize prompt --method templates`` the accepted ones race with the template candidates."""

import json

from instructkit.lm.scripted import ScriptedLM
from instructkit.optimize.prompt import PromptOptConfig, run_prompt_optimization
from instructkit.optimize.propose import Failure, propose_instructions
from instructkit.optimize.templates import TaskSpec

SPEC = TaskSpec(
    "classify the sentiment of a review",
    ["text"],
    "label",
    ["positive", "negative"],
    examples=[{"text": "Great film.", "label": "positive"}, {"text": "Dull.", "label": "negative"}],
)
GOOD = "Read the text and answer positive or negative."


def test_proposals_are_grounded_checked_and_deduplicated():
    replies = iter([
        f'Instruction: "{GOOD}"',                           # cleaned, kept
        "Read the text and answer positive.",               # a label missing
        GOOD.upper(),                                       # exact duplicate
        "Read the text and then answer positive or negative.",  # near duplicate
        "",                                                 # empty
        "Classify the text as positive or negative.",       # an existing one
        "Decide whether the text sounds positive or negative to you.",  # kept
    ])  # fmt: skip
    prompts, seeds = [], []

    def ask(prompt, seed):
        prompts.append(prompt)
        seeds.append(seed)
        return next(replies)

    failures = [Failure({"text": "Dull."}, "negative", "positive")]
    found = propose_instructions(
        ask, SPEC, 7, structure="Predict(text -> label)", failures=failures, seed=3,
        existing=["Classify the text as positive or negative."],
    )  # fmt: skip
    assert found.accepted == [GOOD, "Decide whether the text sounds positive or negative to you."]
    reasons = [r for _, r in found.rejected]
    assert "does not list the label(s) ['negative']" in reasons[0]
    assert reasons[1] == "duplicate" and reasons[2].startswith("near duplicate (ROUGE-L")
    assert reasons[3] == "empty" and reasons[4] == "duplicate"
    prompt = prompts[0]
    assert "Labels: positive 1 (50%), negative 1 (50%)." in prompt  # describe_data
    assert "Predict(text -> label)" in prompt
    assert "- text: Dull. | expected: negative | got: positive" in prompt
    assert len(set(seeds)) == 7  # one seed per call, drawn from seed=3
    again = []
    propose_instructions(lambda p, s: again.append(s) or GOOD, SPEC, 7, structure="x", seed=3)
    assert again == seeds


def answer(request):
    """Right only when the instruction says "zebra" (no template says it)."""
    instruction, _, rest = request.messages[-1][1].partition("\n\n")
    right = "positive" if "good" in rest else "negative"
    wrong = "negative" if right == "positive" else "positive"
    return right if "zebra" in instruction.lower() else wrong


def propose(request):
    return f"Zebra rule {request.seed % 5}: read the text and answer positive or negative."


def config(tmp_path, **kw):
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "data.jsonl"
    rows = [
        {"text": f"review {i}: it was {'good' if i % 2 == 0 else 'bad'}",
         "label": "positive" if i % 2 == 0 else "negative"}
        for i in range(40)
    ]  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    values = {"data": str(data), "inputs": ["text"], "target": "label",
              "labels": ["positive", "negative"], "budget": 80, "candidates": 4,
              "out": str(tmp_path / "out")}  # fmt: skip
    values.update(kw)
    return PromptOptConfig(**values)


def test_templates_with_a_proposer_races_its_proposals_too(tmp_path):
    plain = run_prompt_optimization(config(tmp_path / "a"), lm=ScriptedLM(answer), progress=False)
    assert "zebra" not in plain.best.instruction.lower()
    proposer = ScriptedLM(propose)
    result = run_prompt_optimization(
        config(tmp_path / "b"), lm=ScriptedLM(answer), proposer_lm=proposer, progress=False
    )
    assert result.best.instruction.startswith("Zebra rule") and result.best.val == 1.0
    assert result.calls["proposer"] == len(proposer.calls) == 4  # `candidates` proposals
    assert result.calls["task"] <= 80
    # a rerun replays the journaled replies: the proposer is not asked again
    again = ScriptedLM(propose)
    rerun = run_prompt_optimization(
        config(tmp_path / "b"), lm=ScriptedLM(answer), proposer_lm=again, progress=False
    )
    assert again.calls == [] and rerun.best == result.best
