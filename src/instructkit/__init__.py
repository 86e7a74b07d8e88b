"""instructkit: instruction tuning of language models, from data to weights to prompts."""

__version__ = "0.1.0"
