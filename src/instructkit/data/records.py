"""Records: the in-memory shape of instruction data, whatever file format it came from.

A :class:`Conversation` is an optional system prompt followed by alternating user/assistant
turns; a :class:`PreferencePair` is a prompt (a conversation ending in a user turn) with a
chosen and a rejected assistant response. Readers in :mod:`instructkit.data.formats` build
them; templates and tokenization consume them.

Tool calling (see docs/tools.md): an assistant turn may carry :class:`ToolCall` s (its
``content`` may then be empty); each is answered by one or more ``tool`` turns (the results)
before the assistant speaks again; ``Conversation.tools`` holds the function schemas offered,
in OpenAI's form ``{"type": "function", "function": {name, description, parameters}}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")

__all__ = ["Role", "ROLES", "ToolCall", "Message", "Conversation", "PreferencePair", "Record"]


@dataclass
class ToolCall:
    """One function call made by an assistant turn; ``arguments`` is the parsed JSON object."""

    name: str
    arguments: dict[str, Any]
    id: str | None = None

    def to_chat(self) -> dict[str, Any]:
        """OpenAI / Hugging Face chat-template form (``arguments`` as an object)."""
        call: dict[str, Any] = {"type": "function"}
        if self.id is not None:
            call["id"] = self.id
        call["function"] = {"name": self.name, "arguments": self.arguments}
        return call


@dataclass
class Message:
    """One turn.

    ``input`` holds Alpaca's separate input field for user turns (the Alpaca template renders it
    in its own section; every other template sees :attr:`text`). ``train`` is the per-message
    loss switch for assistant turns: None means "use the dataset default". ``tool_calls``
    (assistant turns) are the calls it makes; ``tool_call_id`` and ``name`` (tool turns) say
    which call a result answers.
    """

    role: Role
    content: str
    input: str | None = None
    train: bool | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        """The content as a chat template sees it (Alpaca input appended after a blank line)."""
        return f"{self.content}\n\n{self.input}" if self.input else self.content

    def to_chat(self) -> dict[str, Any]:
        """``{role, content}``, plus ``tool_calls`` / ``tool_call_id`` / ``name`` when set."""
        chat: dict[str, Any] = {"role": self.role, "content": self.text}
        if self.tool_calls:
            chat["tool_calls"] = [c.to_chat() for c in self.tool_calls]
        if self.tool_call_id is not None:
            chat["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            chat["name"] = self.name
        return chat


@dataclass
class Conversation:
    """System prompt (optional) plus alternating user/assistant turns, starting with user."""

    messages: list[Message]
    metadata: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None

    @property
    def has_tools(self) -> bool:
        """Whether it offers tools or holds tool calls or results."""
        return bool(self.tools) or any(m.tool_calls or m.role == "tool" for m in self.messages)

    @property
    def system(self) -> str | None:
        if self.messages and self.messages[0].role == "system":
            return self.messages[0].content
        return None

    @property
    def turns(self) -> list[Message]:
        """The messages after the system prompt."""
        return self.messages[1:] if self.system is not None else list(self.messages)

    def to_chat(self) -> list[dict[str, Any]]:
        return [m.to_chat() for m in self.messages]


@dataclass
class PreferencePair:
    """A prompt (system?, user, assistant, ..., user) with a chosen and a rejected response."""

    prompt: list[Message]
    chosen: str
    rejected: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def chosen_conversation(self) -> Conversation:
        return Conversation(self.prompt + [Message("assistant", self.chosen)], dict(self.metadata))

    def rejected_conversation(self) -> Conversation:
        return Conversation(
            self.prompt + [Message("assistant", self.rejected)], dict(self.metadata)
        )


Record = Conversation | PreferencePair
