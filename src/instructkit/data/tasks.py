"""FLAN-style task templates: phrasings as data, a pure renderer and a seeded mixture builder.

A task item is a dict such as ``{"id": "sentiment-001", "task": "sentiment", "text": "...",
"answer": "positive", "rationale": "..."}``. The phrasings of each task live in YAML (the bundled
``resources/flan_templates.yaml`` by default): each task declares its input fields, the item field
that holds the answer, optional answer ``options`` and a chain-of-thought trigger and answer format,
then lists several instruction templates with ``{field}`` placeholders, as in FLAN (Wei et al.
2021, "Finetuned Language Models Are Zero-Shot Learners"; Chung et al. 2022, "Scaling
Instruction-Finetuned Language Models", for the few-shot and chain-of-thought mixtures).

In instruction templates ``{<input field>}`` is an item field and ``{options}`` the rendered options
line; in answer templates ``{answer}`` is the answer and ``{rationale}`` the item's rationale.
Usage::

    templates = load_task_templates()
    conv = render_task_example(item, templates, mode="zero", template_index=0)
    train = build_task_mixture(items, templates, MixConfig(zero_shot=0.8, few_shot=0.2, seed=1))

Modes: ``zero`` (instruction only), ``few`` (exemplars rendered with the same phrasing, inline
before the instruction), ``cot`` and ``few_cot`` (the same, with the chain-of-thought trigger
after each instruction and answers that give the rationale first).
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from instructkit.data.records import Conversation, Message
from instructkit.errors import DataFormatError, TemplateError

__all__ = [
    "MODES",
    "TaskTemplate",
    "TaskTemplates",
    "MixConfig",
    "load_task_templates",
    "render_task_example",
    "build_task_mixture",
]

MODES = ("zero", "few", "cot", "few_cot")
_TASK_KEYS = {"inputs", "answer_field", "options", "options_format", "cot_trigger", "cot_answer"}
_DEFAULTS = {
    "options_format": "Options: {options}",
    "cot_trigger": "Let's think step by step.",
    "cot_answer": "{rationale} So the answer is {answer}.",
}
SHOT_SEPARATOR = "\n\n"  # between few-shot exemplars and before the item's instruction


@dataclass(frozen=True)
class TaskTemplate:
    """One phrasing of a task, with the task-level settings it renders with."""

    task: str
    instruction: str
    answer: str = "{answer}"
    inputs: tuple[str, ...] = ()
    answer_field: str = "answer"
    options: tuple[str, ...] = ()
    options_format: str = _DEFAULTS["options_format"]
    cot_trigger: str = _DEFAULTS["cot_trigger"]
    cot_answer: str = _DEFAULTS["cot_answer"]


TaskTemplates = Mapping[str, Sequence[TaskTemplate]]


class MixConfig(BaseModel):
    """How :func:`build_task_mixture` renders items (YAML key = attribute = CLI flag).

    ``zero_shot`` and ``few_shot`` are relative weights of the two formats; ``cot_ratio`` is the
    probability of chain-of-thought for an item that has a rationale.
    """

    model_config = ConfigDict(extra="forbid")

    zero_shot: float = Field(1.0, ge=0, le=1)
    few_shot: float = Field(0.0, ge=0, le=1)
    cot_ratio: float = Field(0.0, ge=0, le=1)
    n_shots: int = Field(2, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _formats_possible(self) -> MixConfig:
        if self.zero_shot + self.few_shot <= 0:
            raise ValueError("zero_shot + few_shot is 0; set at least one of them above 0")
        if self.few_shot > 0 and self.n_shots < 1:
            raise ValueError("few_shot > 0 needs n_shots >= 1; raise n_shots or set few_shot: 0")
        return self


# ------------------------------------------------------------------------------------ loading


def load_task_templates(path: str | Path | None = None) -> dict[str, list[TaskTemplate]]:
    """Read and validate task templates from YAML; None reads the bundled FLAN-style set."""
    if path is None:
        source = resources.files("instructkit.resources").joinpath("flan_templates.yaml")
        where: object = "instructkit/resources/flan_templates.yaml"
        text = source.read_text(encoding="utf-8")
    else:
        where = path
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DataFormatError(
                f"cannot read task templates: {e}", path=path, fix="pass a UTF-8 YAML file."
            ) from e
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DataFormatError(f"not valid YAML: {e}", path=where, fix="fix the YAML syntax.") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("tasks"), dict) or not doc["tasks"]:
        raise DataFormatError(
            "no 'tasks' mapping.", path=where, fix="write 'tasks:' mapping task names to entries."
        )
    extra = doc.get("defaults") or {}
    if not isinstance(extra, dict) or set(extra) - set(_DEFAULTS):
        raise DataFormatError(
            f"'defaults' may only set {', '.join(_DEFAULTS)} (got {extra!r}).",
            path=where,
            field="defaults",
            fix="remove the other keys; task settings go under each task.",
        )
    defaults = {**_DEFAULTS, **extra}
    return {
        str(task): _parse_task(str(task), entry, defaults, where)
        for task, entry in doc["tasks"].items()
    }


def _parse_task(
    task: str, entry: Any, defaults: dict[str, Any], where: object
) -> list[TaskTemplate]:
    """One task entry -> its validated templates."""
    loc = f"tasks.{task}"
    if not isinstance(entry, dict) or not isinstance(entry.get("templates"), list):
        raise DataFormatError(
            "task entry needs a 'templates' list.", path=where, field=loc, fix=_FIX_ENTRY
        )
    shared = _task_settings(task, entry, defaults, where)
    out = []
    for i, raw in enumerate(entry["templates"]):
        tloc = f"{loc}.templates[{i}]"
        if (
            not isinstance(raw, dict)
            or set(raw) - {"instruction", "answer"}
            or not all(isinstance(v, str) for v in raw.values())
            or "instruction" not in raw
        ):
            raise DataFormatError(
                f"template must be {{instruction: str, answer: str}} (got {raw!r}).",
                path=where,
                field=tloc,
                fix="write '- instruction: \"...{field}...\"' (and optionally 'answer:').",
            )
        tpl = TaskTemplate(
            instruction=raw["instruction"], answer=raw.get("answer", "{answer}"), **shared
        )
        _check_template(tpl, where, tloc)
        out.append(tpl)
    if not out:
        raise DataFormatError("task has no templates.", path=where, field=loc, fix=_FIX_ENTRY)
    return out


def _task_settings(
    task: str, entry: dict[str, Any], defaults: dict[str, Any], where: object
) -> dict[str, Any]:
    """The task-level fields every template of ``task`` shares, checked for type."""
    loc = f"tasks.{task}"
    unknown = set(entry) - _TASK_KEYS - {"templates"}
    if unknown:
        raise DataFormatError(
            f"unknown key(s) {sorted(unknown)}.", path=where, field=loc, fix=_FIX_ENTRY
        )
    inputs = entry.get("inputs")
    options = entry.get("options") or []
    settings = {k: entry.get(k, defaults[k]) for k in _DEFAULTS}
    problems = [
        ("inputs", not isinstance(inputs, list) or not inputs or not all(map(_is_name, inputs))),
        ("answer_field", not _is_name(entry.get("answer_field", "answer"))),
        ("options", not isinstance(options, list) or not all(isinstance(o, str) for o in options)),
        *((k, not isinstance(v, str)) for k, v in settings.items()),
    ]
    for key, bad in problems:
        if bad:
            raise DataFormatError(
                f"bad value {entry.get(key, defaults.get(key))!r} for '{key}'.",
                path=where,
                field=f"{loc}.{key}",
                fix=_FIX_SETTINGS[key],
            )
    assert isinstance(inputs, list)  # checked above
    return dict(
        task=task,
        inputs=tuple(inputs),
        answer_field=entry.get("answer_field", "answer"),
        options=tuple(options),
        **settings,
    )


_FIX_SETTINGS = {
    "inputs": "list the item fields the instructions use, e.g. inputs: [text].",
    "answer_field": "name the item field holding the answer, e.g. answer_field: answer.",
    "options": 'quote the labels, e.g. options: ["yes", "no"] (bare yes/no are YAML booleans).',
    "options_format": 'write a string with {options}, e.g. "Options: {options}".',
    "cot_trigger": 'write a string, e.g. "Let\'s think step by step."',
    "cot_answer": 'write a string with {rationale} and {answer}, e.g. "{rationale} So {answer}."',
}
_FIX_ENTRY = (
    "give each task 'inputs', optional 'answer_field', 'options', 'options_format', "
    "'cot_trigger', 'cot_answer', and a 'templates' list of {instruction, answer}."
)


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and value.isidentifier()


def _placeholders(text: str) -> set[str]:
    """Names of the ``{field}`` placeholders in ``text``; ValueError for anything fancier."""
    names = set()
    for _, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"'{{{name}}}' is not a plain {{field}} placeholder")
        names.add(name)
    return names


def _check_template(tpl: TaskTemplate, where: object, loc: str) -> None:
    """Every input used, nothing undeclared used, answers show {answer} (and {rationale})."""
    inputs = set(tpl.inputs)
    checks = [
        ("instruction", tpl.instruction, inputs, inputs | ({"options"} if tpl.options else set())),
        ("answer", tpl.answer, {"answer"}, inputs | {"answer"}),
        ("cot_answer", tpl.cot_answer, {"answer", "rationale"}, inputs | {"answer", "rationale"}),
        ("options_format", tpl.options_format, {"options"}, {"options"}),
    ]  # the cot_trigger is literal text, appended as is
    for name, text, required, allowed in checks:
        field = f"{loc}.{name}" if name in ("instruction", "answer") else f"tasks.{tpl.task}.{name}"
        try:
            used = _placeholders(text)
        except ValueError as e:
            raise DataFormatError(
                f"task '{tpl.task}': {e}.", path=where, field=field, fix=_FIX_BRACES
            ) from e
        if missing := sorted(required - used):
            raise DataFormatError(
                f"task '{tpl.task}': missing placeholder '{{{missing[0]}}}'.",
                path=where,
                field=field,
                fix=f"use {{{missing[0]}}} in the text so the item's value is shown.",
            )
        if extra := sorted(used - allowed):
            raise DataFormatError(
                f"task '{tpl.task}': unknown placeholder '{{{extra[0]}}}' "
                f"(allowed: {', '.join(sorted(allowed)) or 'none'}).",
                path=where,
                field=field,
                fix="add the field to the task's 'inputs' (or 'options') or fix its spelling.",
            )


_FIX_BRACES = "write placeholders as {field_name}; write a literal brace as {{ or }}."


# ---------------------------------------------------------------------------------- rendering


def _item_id(item: Mapping[str, Any]) -> str:
    return str(item.get("id", "<no id>"))


def _value(item: Mapping[str, Any], field: str) -> str:
    """The item's value for ``field`` as text; DataFormatError naming the item when it is absent."""
    value = item.get(field)
    if value is None or value == "":
        raise DataFormatError(
            f"item '{_item_id(item)}' (task '{item.get('task')}') has no value for '{field}'.",
            field=field,
            fix=f"add '{field}' to the item or drop the item.",
        )
    return str(value)


def _fill(text: str, values: dict[str, str], tpl: TaskTemplate) -> str:
    try:
        return text.format_map(values)
    except (KeyError, IndexError, ValueError) as e:  # a TaskTemplate built in code, unchecked
        raise TemplateError(
            f"task '{tpl.task}': cannot fill {text!r} with fields {sorted(values)} ({e!r}).",
            fix="use only the task's inputs (and {options}, {answer}, {rationale}) as {field}.",
        ) from e


def _instruction(item: Mapping[str, Any], tpl: TaskTemplate, cot: bool) -> str:
    values = {f: _value(item, f) for f in tpl.inputs}
    if tpl.options:
        values["options"] = _fill(tpl.options_format, {"options": ", ".join(tpl.options)}, tpl)
    text = _fill(tpl.instruction, values, tpl)
    return f"{text}\n{tpl.cot_trigger}" if cot else text


def _answer(item: Mapping[str, Any], tpl: TaskTemplate, cot: bool) -> str:
    values = {f: _value(item, f) for f in tpl.inputs}
    values["answer"] = _value(item, tpl.answer_field)
    if cot:
        values["rationale"] = _value(item, "rationale")
    return _fill(tpl.cot_answer if cot else tpl.answer, values, tpl)


def _phrasings(item: Mapping[str, Any], templates: TaskTemplates) -> Sequence[TaskTemplate]:
    task = _value(item, "task")
    if task not in templates:
        raise DataFormatError(
            f"item '{_item_id(item)}' has task '{task}', which has no templates "
            f"(known: {', '.join(sorted(templates))}).",
            field="task",
            fix="fix the item's task or add the task to the templates YAML.",
        )
    return templates[task]


def _pick_template(item: Mapping[str, Any], templates: TaskTemplates, index: int) -> TaskTemplate:
    phrasings = _phrasings(item, templates)
    if not 0 <= index < len(phrasings):
        raise TemplateError(
            f"template_index {index} is out of range for task '{item['task']}' "
            f"({len(phrasings)} phrasings).",
            fix=f"pass an index from 0 to {len(phrasings) - 1}.",
        )
    return phrasings[index]


def render_task_example(
    item: Mapping[str, Any],
    templates: TaskTemplates,
    *,
    mode: str,
    template_index: int,
    shots: Sequence[Mapping[str, Any]] = (),
) -> Conversation:
    """Render one item as a single-turn conversation: user = instruction, assistant = answer.

    Few-shot modes put each exemplar (instruction, newline, answer) before the item's
    instruction, separated by blank lines; CoT modes append the trigger to every instruction
    and answer with ``cot_answer`` (the rationale, then "So the answer is ...").
    """
    if mode not in MODES:
        raise TemplateError(f"unknown mode '{mode}'.", fix=f"use one of: {', '.join(MODES)}.")
    few, cot = mode.startswith("few"), mode.endswith("cot")
    if few != bool(shots):
        raise TemplateError(
            f"mode '{mode}' with {len(shots)} shots for item '{_item_id(item)}'.",
            fix="pass shots with mode few/few_cot, and none with zero/cot.",
        )
    _value(item, "id")  # metadata and the few-shot exclusion need it
    tpl = _pick_template(item, templates, template_index)
    for shot in shots:
        if shot is item or _item_id(shot) == _item_id(item):
            raise TemplateError(
                f"item '{_item_id(item)}' is among its own few-shot exemplars.",
                fix="draw exemplars from other items of the task.",
            )
    blocks = [f"{_instruction(s, tpl, cot)}\n{_answer(s, tpl, cot)}" for s in shots]
    prompt = SHOT_SEPARATOR.join([*blocks, _instruction(item, tpl, cot)])
    metadata = {
        "id": _item_id(item),
        "task": tpl.task,
        "template_index": template_index,
        "mode": mode,
        "shot_ids": [_item_id(s) for s in shots],
    }
    messages = [Message("user", prompt), Message("assistant", _answer(item, tpl, cot))]
    return Conversation(messages, metadata)


# ------------------------------------------------------------------------------------ mixture


def _has_rationale(item: Mapping[str, Any]) -> bool:
    return bool(item.get("rationale"))


def _mode(few: bool, cot: bool) -> str:
    return ("few_cot" if cot else "few") if few else ("cot" if cot else "zero")


def _draw_shots(
    item: Mapping[str, Any],
    same_task: Sequence[Mapping[str, Any]],
    n: int,
    cot: bool,
    rng: random.Random,
) -> list[Mapping[str, Any]]:
    """Up to n other items of the task (with rationales when cot), drawn without replacement."""
    pool = [
        o
        for o in same_task
        if o is not item and _item_id(o) != _item_id(item) and (_has_rationale(o) or not cot)
    ]
    return rng.sample(pool, min(n, len(pool)))


def build_task_mixture(
    items: Sequence[Mapping[str, Any]], templates: TaskTemplates, cfg: MixConfig
) -> list[Conversation]:
    """Render every item once, choosing phrasing, zero-/few-shot and CoT with a seeded RNG.

    Per item: a uniformly drawn phrasing; few-shot with probability few_shot / (zero_shot +
    few_shot); CoT with probability cot_ratio when the item has a rationale. Exemplars (up to
    n_shots, with rationales in CoT) come from other items of the same task; an item without
    any falls back to zero-shot.
    """
    rng = random.Random(cfg.seed)
    by_task: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        by_task.setdefault(_value(item, "task"), []).append(item)
    p_few = cfg.few_shot / (cfg.zero_shot + cfg.few_shot)
    out = []
    for item in items:
        index = rng.randrange(len(_phrasings(item, templates)))
        few = rng.random() < p_few
        cot = rng.random() < cfg.cot_ratio and _has_rationale(item)
        shots = _draw_shots(item, by_task[item["task"]], cfg.n_shots, cot, rng) if few else []
        mode = _mode(bool(shots), cot)
        out.append(
            render_task_example(item, templates, mode=mode, template_index=index, shots=shots)
        )
    return out
