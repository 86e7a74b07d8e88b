"""One error tree for instructkit.

Every message says what was wrong, where (file, row, field) and how to fix it. The CLI
prints ``str(error)`` as one line and exits 1; ``--debug`` shows the traceback.
"""

from __future__ import annotations

__all__ = [
    "InstructkitError",
    "ConfigError",
    "DataFormatError",
    "TemplateError",
    "ModelError",
    "LMError",
    "TrainingError",
    "where",
]


def where(path: object | None = None, row: int | None = None, field: str | None = None) -> str:
    """Format a location as ``file:row: field 'x'`` (parts that are None are left out)."""
    parts = []
    if path is not None:
        parts.append(str(path) + (f":{row}" if row is not None else ""))
    elif row is not None:
        parts.append(f"row {row}")
    if field is not None:
        parts.append(f"field '{field}'")
    return ": ".join(parts)


class InstructkitError(Exception):
    """Base of all errors instructkit raises on purpose."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(message + (f" Fix: {fix}" if fix else ""))


class ConfigError(InstructkitError):
    """A config value or flag is wrong (all problems are reported together)."""


class DataFormatError(InstructkitError):
    """A data file or row is malformed. Carries the location of the problem."""

    def __init__(
        self,
        message: str,
        *,
        path: object | None = None,
        row: int | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.path, self.row, self.field = path, row, field
        self.reason = message
        loc = where(path, row, field)
        super().__init__(f"{loc}: {message}" if loc else message, fix=fix)


class TemplateError(InstructkitError):
    """A prompt or chat template cannot render the data it was given."""


class ModelError(InstructkitError):
    """A model, tokenizer or the package that carries them cannot be found or loaded."""


class LMError(InstructkitError):
    """A language-model backend failed to answer."""


class TrainingError(InstructkitError):
    """Training cannot start or continue (no trainable tokens, NaN loss, ...)."""
