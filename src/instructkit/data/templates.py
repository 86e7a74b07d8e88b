"""Chat templates: Alpaca, Vicuna v1.1, ChatML, Llama-3, and the tokenizer's own.

Built-in templates are Jinja strings (data, not code) rendered like Hugging Face chat templates,
so that one mechanism, :func:`segment_conversation`, splits any template's output into prompt
text and trained text (assistant response plus its end-of-turn marker), without needing
``{% generation %}`` tags.

- ``alpaca``: byte-identical to the Stanford Alpaca prompts (with and without input); the
  response follows ``### Response:`` directly and ends with the EOS token, as in its training
  code. A system message replaces the preamble; later turns repeat the Instruction/Response block.
- ``vicuna``: FastChat's vicuna_v1.1 (``USER: ... ASSISTANT: ...</s>``). The space after
  ``ASSISTANT:`` belongs to the prompt, so the trained text is exactly the response.
- ``chatml``: ``<|im_start|>role\\n...<|im_end|>\\n``.
- ``llama3``: Meta Llama-3 headers with ``<|eot_id|>``.
- ``tokenizer``: the tokenizer's own ``chat_template``.

Tool calling (docs/tools.md): ``render(messages, add_generation_prompt, tools)`` passes the
function schemas and the messages' ``tool_calls`` / ``tool`` turns to the tokenizer's
template (``apply_chat_template(..., tools=...)``); the built-in templates show them as text
(:func:`instructkit.data.toolcalls.textual_tool_messages`: schemas in the system prompt,
``<tool_call>`` blocks, results as ``<tool_response>`` user turns). An assistant turn that
calls tools is trained on what the template renders for it (the calls and the end-of-turn);
tool results are never trained.

Names are checked before anything is loaded (:func:`check_template_name`, with a "did you mean"
for a typo). A built-in template whose special tokens (``<|im_end|>``, ``<|eot_id|>``, ...) are
not single tokens of the tokenizer is refused by :func:`get_template`
(:func:`check_template_tokens`): generation would not stop at the end of a turn, and training
would learn the marker's pieces. :func:`default_system_prompt` finds the system prompt a
template adds to a conversation that has none (SmolLM2's own template does).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import AfterValidator

from instructkit.data.records import Conversation
from instructkit.data.toolcalls import textual_tool_messages
from instructkit.errors import TemplateError

__all__ = [
    "TEMPLATE_NAMES",
    "BUILTIN_TEMPLATES",
    "ChatTemplate",
    "get_template",
    "check_template_name",
    "TemplateName",
    "check_template_tokens",
    "templates_that_fit",
    "default_system_prompt",
    "Segment",
    "segment_conversation",
    "ALPACA_PROMPT_INPUT",
    "ALPACA_PROMPT_NO_INPUT",
]

ALPACA_PREAMBLE_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request."
)
ALPACA_PREAMBLE_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
# The Stanford Alpaca prompts, for reference and tests.
ALPACA_PROMPT_INPUT = (
    ALPACA_PREAMBLE_INPUT
    + "\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
ALPACA_PROMPT_NO_INPUT = (
    ALPACA_PREAMBLE_NO_INPUT + "\n\n### Instruction:\n{instruction}\n\n### Response:"
)

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

BUILTIN_TEMPLATES: dict[str, str] = {
    "alpaca": (
        "{{ bos_token }}"
        "{% set first = messages[1] if messages[0]['role'] == 'system' else messages[0] %}"
        "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}"
        "{% elif first.get('input') %}"
        + ALPACA_PREAMBLE_INPUT.replace("'", "\\'").join(["{{ '", "' }}"])
        + "{% else %}"
        + ALPACA_PREAMBLE_NO_INPUT.join(["{{ '", "' }}"])
        + "{% endif %}"
        "{% for m in messages %}"
        "{% if m['role'] == 'user' %}"
        "{{ '\n\n### Instruction:\n' + m['content'] }}"
        "{% if m.get('input') %}{{ '\n\n### Input:\n' + m['input'] }}{% endif %}"
        "{{ '\n\n### Response:' }}"
        "{% elif m['role'] == 'assistant' %}{{ m['content'] + eos_token }}{% endif %}"
        "{% endfor %}"
    ),
    "vicuna": (
        "{{ bos_token }}"
        "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}"
        "{% else %}{{ '" + VICUNA_SYSTEM.replace("'", "\\'") + "' }}{% endif %}"
        "{% for m in messages %}"
        "{% if m['role'] == 'user' %}{{ ' USER: ' if loop.index0 <= 1 else 'USER: ' }}"
        "{{ m['content'] + ' ASSISTANT: ' }}"
        "{% elif m['role'] == 'assistant' %}{{ m['content'] + eos_token }}{% endif %}"
        "{% endfor %}"
    ),
    "chatml": (
        "{% for m in messages %}"
        "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "llama3": (
        "{{ bos_token }}"
        "{% for m in messages %}"
        "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] | trim"
        " + '<|eot_id|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}"
        "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
}
# End-of-turn marker each built-in template puts after a response (None: the EOS token).
_BUILTIN_EOT = {"alpaca": None, "vicuna": None, "chatml": "<|im_end|>", "llama3": "<|eot_id|>"}
TEMPLATE_NAMES = (*BUILTIN_TEMPLATES, "tokenizer")
# Markers that must be one token each of the tokenizer a built-in template is used with.
_BUILTIN_SPECIALS: dict[str, tuple[str, ...]] = {
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "llama3": ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
}


def check_template_name(name: str) -> str:
    """``name`` if it names a template, else a TemplateError with the closest name."""
    if name in TEMPLATE_NAMES:
        return name
    close = difflib.get_close_matches(name, TEMPLATE_NAMES, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise TemplateError(
        f"unknown template '{name}'.", fix=f"{hint}use one of: {', '.join(TEMPLATE_NAMES)}."
    )


def _valid_name(name: str) -> str:
    try:
        return check_template_name(name)
    except TemplateError as e:
        raise ValueError(str(e)) from None


# A config key that names a template: checked when the config loads, before any model.
TemplateName = Annotated[str, AfterValidator(_valid_name)]


def _split_markers(name: str, tokenizer: Any) -> list[tuple[str, int]]:
    """(marker, token count) of each special marker of template ``name`` that the tokenizer
    does not hold as one token."""
    out = []
    for marker in _BUILTIN_SPECIALS.get(name, ()):
        n = len(tokenizer(marker, add_special_tokens=False)["input_ids"])
        if n != 1:
            out.append((marker, n))
    return out


def templates_that_fit(tokenizer: Any) -> list[str]:
    """The templates whose special markers are single tokens of ``tokenizer`` (``tokenizer``
    only when it has a chat template)."""
    names = [n for n in BUILTIN_TEMPLATES if not _split_markers(n, tokenizer)]
    return [*names, "tokenizer"] if getattr(tokenizer, "chat_template", None) else names


def check_template_tokens(name: str, tokenizer: Any) -> None:
    """TemplateError when a special marker of the built-in template ``name`` is not a single
    token of ``tokenizer`` (the fix names the templates that fit)."""
    split = _split_markers(name, tokenizer)
    if not split:
        return
    marker, n = split[0]
    model = getattr(tokenizer, "name_or_path", "") or "this model"
    raise TemplateError(
        f"template '{name}' needs {marker} as one token, but the tokenizer of {model} splits "
        f"it into {n} tokens (generation would not stop at the end of a turn).",
        fix=f"use a template that fits this tokenizer: {', '.join(templates_that_fit(tokenizer))}.",
    )


class Render(Protocol):
    """``render(messages, add_generation_prompt, tools=None) -> text``."""

    def __call__(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool,
        tools: list[dict[str, Any]] | None = None,
    ) -> str: ...


@dataclass
class ChatTemplate:
    """A named way to turn chat messages into text.

    ``render(messages, add_generation_prompt, tools=None)`` takes messages as dicts (role,
    content, optional ``tool_calls`` / ``tool_call_id`` / ``name`` and, for Alpaca, ``input``)
    and the function schemas offered. ``eot`` lists the strings that close an assistant turn.
    """

    name: str
    render: Render
    eot: tuple[str, ...]


def _tokenizer_adds_bos(tokenizer: Any) -> bool:
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos_id


def _jinja_env() -> jinja2.Environment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    return env


def _raise(message: str) -> None:
    raise TemplateError(f"chat template refused the conversation: {message}")


def get_template(name: str, tokenizer: Any) -> ChatTemplate:
    """Return the template ``name`` bound to ``tokenizer``'s special tokens; TemplateError for
    an unknown name or a built-in template whose markers the tokenizer splits."""
    check_template_name(name)
    if name == "tokenizer":
        return _tokenizer_template(tokenizer)
    check_template_tokens(name, tokenizer)
    compiled = _jinja_env().from_string(BUILTIN_TEMPLATES[name])
    eos = tokenizer.eos_token or ""
    bos = tokenizer.bos_token if _tokenizer_adds_bos(tokenizer) else ""
    if name == "llama3" and not bos:
        bos = "<|begin_of_text|>" if "<|begin_of_text|>" in tokenizer.get_vocab() else ""

    def render(
        messages: list[dict[str, Any]],
        add_generation_prompt: bool,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        return compiled.render(
            messages=textual_tool_messages(messages, tools, _default_system(name, messages)),
            add_generation_prompt=add_generation_prompt,
            bos_token=bos,
            eos_token=eos,
        )

    eot = _BUILTIN_EOT[name] or eos
    return ChatTemplate(name, render, (eot,) if eot else ())


_CHAT_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")


def _default_system(name: str, messages: list[dict[str, Any]]) -> str | None:
    """The system prompt a built-in template shows when a conversation has none."""
    if name == "vicuna":
        return VICUNA_SYSTEM
    if name == "alpaca":
        first = next((m for m in messages if m.get("role") == "user"), {})
        return ALPACA_PREAMBLE_INPUT if first.get("input") else ALPACA_PREAMBLE_NO_INPUT
    return None


def _tokenizer_template(tokenizer: Any) -> ChatTemplate:
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError(
            f"tokenizer '{getattr(tokenizer, 'name_or_path', '?')}' has no chat template.",
            fix="pass --template (in a train sft config: template:) with one of: alpaca, vicuna, "
            "chatml, llama3.",
        )

    def render(
        messages: list[dict[str, Any]],
        add_generation_prompt: bool,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        chat = [{k: v for k, v in m.items() if k in _CHAT_KEYS} for m in messages]
        extra = {"tools": tools} if tools else {}
        return str(
            tokenizer.apply_chat_template(
                chat, tokenize=False, add_generation_prompt=add_generation_prompt, **extra
            )
        )

    specials = [t for t in getattr(tokenizer, "all_special_tokens", []) if t]
    return ChatTemplate("tokenizer", render, tuple(specials))


def default_system_prompt(template: ChatTemplate) -> str | None:
    """The system prompt ``template`` adds to a conversation without one (None: it adds none).

    Found by rendering one user turn with and without a marked system message: when the
    plain rendering is the system one with other text in place of the marker, that text is
    the default (SmolLM2's "You are a helpful AI assistant named SmolLM, ...", Vicuna's).
    """
    user, marker = "\x00user\x00", "\x00system\x00"
    plain = template.render([{"role": "user", "content": user}], False).split(user)[0]
    with_system = [{"role": "system", "content": marker}, {"role": "user", "content": user}]
    head, sep, tail = template.render(with_system, False).split(user)[0].partition(marker)
    if not sep or not (plain.startswith(head) and plain.endswith(tail)):
        return None
    default = plain[len(head) : len(plain) - len(tail)]
    return default if len(plain) > len(head) + len(tail) and default.strip() else None


@dataclass
class Segment:
    """A span of rendered text; ``train`` is True for an assistant response + end-of-turn.

    ``turn`` is the index of the assistant message in ``Conversation.messages`` (or None).
    """

    text: str
    train: bool
    turn: int | None = None


def _message_dicts(conv: Conversation, template_name: str) -> list[dict[str, Any]]:
    if template_name == "alpaca":
        return [{**m.to_chat(), "content": m.content, "input": m.input} for m in conv.messages]
    return conv.to_chat()


def segment_conversation(conv: Conversation, template: ChatTemplate) -> list[Segment]:
    """Split the rendered conversation into prompt and response segments.

    For each assistant turn i, the text rendered for messages[:i] with a generation prompt must
    be a prefix of the text for messages[:i+1], which must be a prefix of the whole rendering;
    the difference holds the response, which is marked trained up to and including the first
    end-of-turn marker that follows it. Templates that rewrite earlier turns raise TemplateError.
    """
    msgs = _message_dicts(conv, template.name)
    tools = conv.tools or None

    def render(messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        if tools:  # templates built elsewhere may take no tools argument
            return template.render(messages, add_generation_prompt, tools)
        return template.render(messages, add_generation_prompt)

    full = render(msgs, False)
    segments: list[Segment] = []
    cursor = 0
    for i, m in enumerate(conv.messages):
        if m.role != "assistant":
            continue
        prompt = render(msgs[:i], True)
        upto = render(msgs[: i + 1], False)
        if not (upto.startswith(prompt) and full.startswith(upto) and len(prompt) >= cursor):
            raise TemplateError(
                f"template '{template.name}' renders turn {i} differently depending on what "
                "follows it, so responses cannot be located.",
                fix="use a built-in template: --template (in a train sft config: template:) "
                "chatml, llama3, alpaca or vicuna.",
            )
        if m.tool_calls:
            start, end = _rendered_turn(upto, len(prompt), template)
            _check_calls_shown(upto[start:end], [c.name for c in m.tool_calls], template, i)
        else:
            start, end = _locate_response(upto, len(prompt), m.content, template, i)
        segments.append(Segment(full[cursor:start], False))
        segments.append(Segment(full[start:end], True, i))
        cursor = end
    segments.append(Segment(full[cursor:], False))
    return [s for s in segments if s.text]


def _rendered_turn(text: str, offset: int, template: ChatTemplate) -> tuple[int, int]:
    """Span of a tool-calling turn: all the template rendered for it (its text and calls, in
    the template's own syntax) through its last end-of-turn marker, without edge whitespace."""
    turn = text[offset:]
    start = offset + len(turn) - len(turn.lstrip())
    ends = [turn.rfind(e) + len(e) for e in template.eot if e and e in turn]
    end = offset + (max(ends) if ends else len(turn.rstrip()))
    return start, max(start, end)


def _check_calls_shown(text: str, names: list[str], template: ChatTemplate, turn: int) -> None:
    missing = [n for n in names if n not in text]
    if missing:
        raise TemplateError(
            f"template '{template.name}' does not render the tool calls of turn {turn} "
            f"({', '.join(missing)}), so they cannot be trained on.",
            fix="use a chat template that supports tools, or a built-in template: --template "
            "(in a train sft config: template:) chatml, llama3, alpaca or vicuna.",
        )


def _locate_response(
    text: str, offset: int, content: str, template: ChatTemplate, turn: int
) -> tuple[int, int]:
    """Character span [start, end) of a response and its end-of-turn marker in ``text``."""
    needle = content if content in text[offset:] else content.strip()
    start = text.find(needle, offset)
    if start < 0 or not needle:
        raise TemplateError(
            f"template '{template.name}' does not show the response of turn {turn} verbatim.",
            fix="use a built-in template: --template (in a train sft config: template:) "
            "chatml, llama3, alpaca or vicuna.",
        )
    end = start + len(needle)
    tail = text[end:]
    hits = [(tail.find(e), e) for e in template.eot if e and tail.find(e) >= 0]
    if hits:
        pos, marker = min(hits)
        if not tail[:pos].strip():  # only whitespace between response and marker
            end += pos + len(marker)
    return start, end
