"""A scripted Self-Instruct model for tests: numbered new tasks, Yes/No for "is it a
classification task", and instances, drawn deterministically from the prompt and the seed."""

from __future__ import annotations

import hashlib
import random
from typing import Any

WORDS = (
    "apple river garden engine winter market letter poem budget station recipe museum planet "
    "bridge lesson ticket harbor forest teacher doctor village castle island ocean mountain"
).split()


def self_instruct_answer(
    request: Any, *, tasks: int = 3, extra: str = "", sentence: bool = False
) -> str:
    """The reply to one Self-Instruct prompt: ``tasks`` new numbered tasks (+ ``extra`` lines),
    a classification verdict, or an instance whose output is a few words (``sentence``: a
    short sentence)."""
    prompt = request.messages[-1][1]
    rng = random.Random(hashlib.sha256((prompt + str(request.seed)).encode()).hexdigest())
    if prompt.startswith("Come up with a series"):
        opener = ["Describe the", "Classify whether the", "Explain the"]
        items = [f"{rng.choice(opener)} {' '.join(rng.sample(WORDS, 6))}." for _ in range(tasks)]
        return "\n".join(f"{9 + i}. {t}" for i, t in enumerate(items)) + extra
    if prompt.startswith("Can the following"):
        return "Yes" if "Task: Classify" in prompt[-120:] else "No"
    a, b = " ".join(rng.sample(WORDS, 3)), " ".join(rng.sample(WORDS, 3))
    if prompt.startswith("Given a classification"):
        return f"Class label: Yes\nInput: {a}\nClass label: No\nInput: {b}"
    return f"Example 1\nInput: {a}\nOutput: " + (f"The {b} is near the {a}." if sentence else b)
