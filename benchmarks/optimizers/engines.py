"""The models of the optimizer benchmark: a fake task engine, the bank proposer, and the counter
every method runs with (the adapter is :class:`instructkit.optimize.peers.RoutingAdapter`).

- :class:`FakeTaskModel` (tier ``fake``, CI): answers PlainAdapter prompts of a task without a
  model. Whether an item comes back right depends on features of the instruction (it lists the
  labels, asks for the answer only, names the input field, asks for digits; asking to reason
  first or to write sentences hurts), plus a fixed per-instruction offset and per-item noise
  seeded by the item and the instruction, so better instructions score better on average and
  methods genuinely differ. Anything that is not a task prompt gets a useless reply (like the
  135M model asked to propose).
- :class:`BankProposer` (track ``bank``): answers every request for an instruction with the
  next unused candidate of a fixed bank (component-template candidates,
  ``generate_candidates(spec, n, seed)``), in the format the caller parses: DSPy's ChatAdapter
  (COPRO, MIPROv2), JSONAdapter (GEPA's default ``InstructionProposer``), PlainAdapter's answer
  form, a fenced block, or plain text (Evolutionary). Other proposer requests (MIPROv2's data
  and program summaries) get a fixed filler sentence; COPRO's output-prefix field gets the
  output field's own prefix, so the prefix never changes.
- :class:`BackstopCounter`: a :class:`~instructkit.optimize.CallCounter` that remembers how many
  calls it refused, so a run stopped by the budget is recorded as such.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from instructkit.lm.base import ChatRequest
from instructkit.lm.scripted import ScriptedLM
from instructkit.optimize import BudgetExceeded, CallCounter

FILLER = "The task maps each input to the output field it names."


def unit(*parts: object) -> float:
    """A stable pseudo-random number in [0, 1) from ``parts``."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class BackstopCounter(CallCounter):
    """A call counter that also counts the calls it refused (``refused``)."""

    def __init__(self, budget: int | None = None, *, budgets: Mapping[str, int] | None = None):
        super().__init__(budget, budgets=budgets)
        self.refused = 0

    def reserve(self, role: str) -> None:
        try:
            super().reserve(role)
        except BudgetExceeded:
            self.refused += 1
            raise


# ------------------------------------------------------------------------------ fake task model

REASONING = ("step by step", "then decide", "explain", "reason", "evidence")
ANSWER_ONLY = ("only", "nothing else", "do not add", "exactly one", "single", "just the")


def instruction_quality(instruction: str, task: Any, stage: int) -> float:
    """Chance that the fake model answers an item right under ``instruction`` (before noise)."""
    text, s = instruction.lower(), task.stages[stage]
    if not text.strip():
        return 0.05
    p = 0.30 + (unit("offset", task.name, instruction) - 0.5) * 0.16
    p += 0.08 if any(f in text for f in s.inputs) else 0.0
    p += 0.05 if s.output in text else 0.0
    if s.labels:
        p += 0.25 * sum(label in text for label in s.labels) / len(s.labels)
    p += 0.10 if any(w in text for w in ANSWER_ONLY) else 0.0
    p += 0.04 if "concise" in text else 0.0
    p -= 0.15 if any(w in text for w in REASONING) else 0.0
    p -= 0.15 if "sentences" in text and not s.labels else 0.0
    p += 0.15 if s.output_format == "number" and "digit" in text else 0.0
    p -= 0.05 if len(text) > 350 else 0.0
    return min(0.97, max(0.02, p))


class FakeTaskModel:
    """A scripted model for one task (see the module docstring). ``lm`` is the instructkit LM."""

    def __init__(self, task: Any) -> None:
        self.task = task
        self.rows = {r[task.inputs[0]]: r for r in task.rows()}
        self.labels = {adapter_label(s.inputs[0]): i for i, s in enumerate(task.stages)}
        self.lm = ScriptedLM(self.answer, name=f"fake-{task.name}")

    def answer(self, request: ChatRequest) -> str:
        prompt = request.messages[-1][1]
        instruction, _, block = prompt.rpartition("\n\n")
        label, _, value = block.partition(": ")
        stage = self.labels.get(label.strip())
        if stage is None or "\n" in value:
            return "I am not sure what you mean."
        return self.stage_answer(stage, instruction, value.strip())

    def stage_answer(self, stage: int, instruction: str, value: str) -> str:
        s, last = self.task.stages[stage], stage == len(self.task.stages) - 1
        row = self.rows.get(value) if stage == 0 else self.row_of_summary(value)
        if row is None:  # a lost item: a label at random
            return s.labels[int(unit("lost", value) * len(s.labels))] if s.labels else value
        p = instruction_quality(instruction, self.task, stage)
        right = unit("item", self.task.name, value) + (unit(instruction, value) - 0.5) * 0.2 < p
        if not last:  # the summary carries the item on only when it is right
            words = row[self.task.inputs[0]].split()
            return " ".join(words[:6]) if right else "The customer needs help with something."
        gold = str(row[self.task.target])
        if right:
            return gold
        if s.labels:
            others = [x for x in s.labels if x != gold]
            return others[int(unit("wrong", value, instruction) * len(others))]
        return f"It is {gold}."

    def row_of_summary(self, summary: str) -> dict[str, Any] | None:
        if len(summary.split()) < 3:
            return None
        return next((r for key, r in self.rows.items() if key.startswith(summary)), None)


def adapter_label(field: str) -> str:
    """The label PlainAdapter shows for an input field (its DSPy prefix without the colon)."""
    return field.replace("_", " ").title() if "_" in field else field.capitalize()


# ------------------------------------------------------------------------------- bank proposer

_OUTPUTS = re.compile(r"\d+\.\s+`(\w+)`")


class BankProposer:
    """Answers proposer requests with the next unused candidate of ``bank`` (one list per
    predictor of the task; cycling when a list runs out). ``lm`` is the instructkit LM."""

    def __init__(self, task: Any, bank: Sequence[Sequence[str]]) -> None:
        self.task, self.bank = task, [list(b) for b in bank]
        self.next = [0] * len(self.bank)
        self.known = {text: i for i, text in enumerate(task.initial)}
        self.issued: list[str] = []
        self.lm = ScriptedLM(self.answer, name="bank-proposer")

    def answer(self, request: ChatRequest) -> str:
        system = "\n".join(c for role, c in request.messages if role == "system")
        user = request.messages[-1][1]
        outputs = self.output_fields(system)
        wants = not outputs or any("instruction" in f for f in outputs)
        stage = self.stage_of(system + "\n" + user)
        text = self.draw(stage) if wants else FILLER
        values = {f: self.value(f, text, stage) for f in outputs}
        if "Outputs will be a JSON object" in system:
            return json.dumps(values)
        if "[[ ## completed ## ]]" in system:
            body = "\n\n".join(f"[[ ## {f} ## ]]\n{v}" for f, v in values.items())
            return body + "\n\n[[ ## completed ## ]]"
        if "Answer in this form:" in user:
            return "\n".join(f"{f.replace('_', ' ').title()}: {v}" for f, v in values.items())
        if "```" in user:
            return f"```\n{text}\n```"
        return text

    @staticmethod
    def output_fields(system: str) -> list[str]:
        _, found, rest = system.partition("Your output fields are:")
        if not found:
            return []
        return _OUTPUTS.findall(rest.split("All interactions")[0])

    def value(self, field: str, text: str, stage: int) -> str:
        if "prefix" in field:  # COPRO's output prefix: the predictor's own, unchanged
            return f"{adapter_label(self.task.stages[stage].output)}:"
        return text if "instruction" in field else FILLER

    def draw(self, stage: int) -> str:
        pool = self.bank[stage]
        text = pool[self.next[stage] % len(pool)]
        self.next[stage] += 1
        self.known[text] = stage
        self.issued.append(text)
        return text

    def stage_of(self, context: str) -> int:
        """Which predictor a request is about: the one whose instructions it quotes."""
        if len(self.bank) == 1:
            return 0
        votes = [0] * len(self.bank)
        for text, stage in self.known.items():
            if text in context:
                votes[stage] += 1
        if max(votes) > 0 and votes.count(max(votes)) == 1:
            return votes.index(max(votes))
        fields = [context.count(s.output) + context.count(s.inputs[0]) for s in self.task.stages]
        return fields.index(max(fields))
