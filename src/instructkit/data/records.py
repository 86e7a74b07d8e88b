"""Records: the in-memory shape of instruction data, whatever file format it came from.

A :class:`Conversation` is an optional system prompt followed by alternating user/assistant
turns; a :class:`PreferencePair` is a prompt (a conversation ending in a user turn) with a
chosen and a rejected assistant response. Readers in :mod:`instructkit.data.formats` build
them; templates and tokenization consume them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")

__all__ = ["Role", "ROLES", "Message", "Conversation", "PreferencePair", "Record"]


@dataclass
class Message:
    """One turn.

    ``input`` holds Alpaca's separate input field for user turns (the Alpaca template renders it
    in its own section; every other template sees :attr:`text`). ``train`` is the per-message
    loss switch for assistant turns: None means "use the dataset default".
    """

    role: Role
    content: str
    input: str | None = None
    train: bool | None = None

    @property
    def text(self) -> str:
        """The content as a chat template sees it (Alpaca input appended after a blank line)."""
        return f"{self.content}\n\n{self.input}" if self.input else self.content

    def to_chat(self) -> dict[str, str]:
        return {"role": self.role, "content": self.text}


@dataclass
class Conversation:
    """System prompt (optional) plus alternating user/assistant turns, starting with user."""

    messages: list[Message]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def system(self) -> str | None:
        if self.messages and self.messages[0].role == "system":
            return self.messages[0].content
        return None

    @property
    def turns(self) -> list[Message]:
        """The messages after the system prompt."""
        return self.messages[1:] if self.system is not None else list(self.messages)

    def to_chat(self) -> list[dict[str, str]]:
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
