"""A two-stage DSPy program for ``instructkit optimize program``: extract the phrase of a review
that carries its opinion, then classify the sentiment of that phrase.

    instructkit optimize program benchmarks/optimizers/two_stage_sentiment.py:program \\
        --data sentiment.jsonl --target sentiment --labels positive,negative -o opt

``benchmarks/optimizers/permodule_smoke.py`` runs it on the bundled sentiment items.
"""

import dspy


class TwoStageSentiment(dspy.Module):
    """text -> phrase (``extract``), then phrase -> sentiment (``classify``)."""

    def __init__(self) -> None:
        super().__init__()
        self.extract = dspy.Predict("text -> phrase")
        self.extract.signature = self.extract.signature.with_instructions(
            "Extract the key phrase of the review that shows the writer's opinion."
        )
        self.classify = dspy.Predict("phrase -> sentiment")
        self.classify.signature = self.classify.signature.with_instructions(
            "Classify the sentiment of the phrase as positive or negative."
        )

    def forward(self, text: str) -> dspy.Prediction:
        phrase = self.extract(text=text).phrase
        return self.classify(phrase=phrase)


program = TwoStageSentiment()
