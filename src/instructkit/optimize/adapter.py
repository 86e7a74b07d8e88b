"""PlainAdapter: DSPy prompts that small models can follow.

DSPy's ChatAdapter asks for ``[[ ## field ## ]]`` markers and JSONAdapter for a JSON object;
SmolLM2-135M produced a parseable ChatAdapter reply for 0 of 40 items and failed JSONAdapter on
12-38 of 40 (docs/optimize.md). This adapter sends what such a model can answer: one user
message with the signature's instructions, a blank line, and the input fields as
``Field: value`` lines (the field's DSPy prefix, e.g. ``Text`` for ``text``)::

    Classify the sentiment of the text.

    Text: I loved every minute of this movie.

With one output field, the answer is the first non-empty line of the reply (a leading
``Field:`` label of that output is dropped: ``Sentiment: positive`` -> ``positive``). With
several, the prompt ends with the lines to fill (``Answer in this form:`` then ``Field: ...``
per output) and each output is read from the first line labelled with it; outputs still
missing then take the unlabelled lines in order; if some are still missing, the reply does not
parse (``AdapterParseError``). Values are converted to the field's type with DSPy's
``parse_value``. Demos (few-shot examples) become earlier user/assistant turns in the same
format. Works with ``dspy.Predict`` and with instructions set by
``predictor.signature = predictor.signature.with_instructions(text)``::

    with dspy.context(lm=task_lm, adapter=PlainAdapter()):
        dspy.Predict("text -> sentiment")(text="Great film")
"""

from __future__ import annotations

import re
from typing import Any

import dspy
from dspy.adapters.utils import format_field_value, parse_value
from dspy.utils.exceptions import AdapterParseError

__all__ = ["PlainAdapter", "field_label"]

_FORM_HEADER = "Answer in this form:"


def field_label(signature: Any, name: str) -> str:
    """The label of field ``name`` in prompts: its DSPy prefix without the colon."""
    field = signature.fields[name]
    prefix = (field.json_schema_extra or {}).get("prefix") or name
    return str(prefix).rstrip().rstrip(":").strip() or name


def _split_label(line: str, labels: dict[str, str]) -> tuple[str | None, str]:
    """(field name, value) when ``line`` starts with a known ``Label:``; (None, line) else."""
    match = re.match(r"\s*([^:]{1,60}):\s*(.*)$", line)
    if match:
        name = labels.get(match.group(1).strip().casefold())
        if name is not None:
            return name, match.group(2).strip()
    return None, line.strip()


class PlainAdapter(dspy.Adapter):
    """Instructions and ``Field: value`` lines in; the first line (or labelled lines) out."""

    def format(
        self, signature: Any, demos: list[dict[str, Any]], inputs: dict[str, Any]
    ) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        for demo in demos:
            if all(demo.get(name) is not None for name in signature.fields):
                messages.append({"role": "user", "content": self.user_text(signature, demo)})
                messages.append({"role": "assistant", "content": self.answer_text(signature, demo)})
        messages.append({"role": "user", "content": self.user_text(signature, inputs)})
        return messages

    def user_text(self, signature: Any, inputs: dict[str, Any]) -> str:
        """Instructions, a blank line, ``Field: value`` per input (and the answer form when the
        signature has several outputs)."""
        lines = [
            f"{field_label(signature, name)}: {self._value(field, inputs.get(name, ''))}"
            for name, field in signature.input_fields.items()
        ]
        blocks = [signature.instructions.strip(), "\n".join(lines)]
        if len(signature.output_fields) > 1:
            form = [f"{field_label(signature, name)}: ..." for name in signature.output_fields]
            blocks.append("\n".join([_FORM_HEADER, *form]))
        return "\n\n".join(block for block in blocks if block)

    def answer_text(self, signature: Any, outputs: dict[str, Any]) -> str:
        """What a correct reply looks like: the value, or ``Field: value`` lines."""
        fields = signature.output_fields
        if len(fields) == 1:
            name, field = next(iter(fields.items()))
            return self._value(field, outputs[name])
        return "\n".join(
            f"{field_label(signature, name)}: {self._value(field, outputs[name])}"
            for name, field in fields.items()
        )

    @staticmethod
    def _value(field: Any, value: Any) -> str:
        formatted = format_field_value(field, value)
        return formatted if isinstance(formatted, str) else str(formatted)

    def parse(self, signature: Any, completion: str) -> dict[str, Any]:
        lines = [line for line in completion.splitlines() if line.strip()]
        if not lines:
            raise self._error(signature, completion, "the reply is empty")
        fields = signature.output_fields
        labels = {field_label(signature, n).casefold(): n for n in fields}
        labels.update({n.casefold(): n for n in fields})
        if len(fields) == 1:
            name = next(iter(fields))
            label, value = _split_label(lines[0], labels)
            return {name: self._convert(signature, name, value, completion)}
        found: dict[str, str] = {}
        unlabelled: list[str] = []
        for line in lines:
            label, value = _split_label(line, labels)
            if label is None:
                unlabelled.append(value)
            elif label not in found:
                found[label] = value
        for name in [n for n in fields if n not in found]:
            if unlabelled:
                found[name] = unlabelled.pop(0)
        missing = [n for n in fields if n not in found]
        if missing:
            raise self._error(signature, completion, f"no line for the outputs {missing}")
        return {n: self._convert(signature, n, found[n], completion) for n in fields}

    def _convert(self, signature: Any, name: str, value: str, completion: str) -> Any:
        annotation = signature.output_fields[name].annotation
        try:
            return parse_value(value, annotation)
        except Exception as exc:  # any conversion failure is a parse failure
            raise self._error(signature, completion, f"'{name}': {exc}") from exc

    def _error(self, signature: Any, completion: str, why: str) -> Exception:
        error: Exception = AdapterParseError(
            adapter_name=type(self).__name__,
            signature=signature,
            lm_response=completion,
            message=f"PlainAdapter could not read the reply: {why}.",
        )
        return error

    # The system-message hooks of dspy.Adapter, for code that calls them directly.
    def format_task_description(self, signature: Any) -> str:
        return str(signature.instructions)

    def format_field_description(self, signature: Any) -> str:
        return ", ".join(field_label(signature, n) for n in signature.fields)

    def format_field_structure(self, signature: Any) -> str:
        return self.user_text(signature, {n: "..." for n in signature.input_fields})

    def format_user_message_content(
        self,
        signature: Any,
        inputs: dict[str, Any],
        prefix: str = "",
        suffix: str = "",
        main_request: bool = False,
    ) -> str:
        return "\n\n".join(p for p in (prefix, self.user_text(signature, inputs), suffix) if p)

    def format_assistant_message_content(
        self, signature: Any, outputs: dict[str, Any], missing_field_message: str | None = None
    ) -> str:
        filled = {n: outputs.get(n, missing_field_message or "") for n in signature.output_fields}
        return self.answer_text(signature, filled)
