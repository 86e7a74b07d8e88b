"""Any instructkit LM as a DSPy 3.4 engine, with a call counter and a hard call budget.

DSPy 3.4 runs a custom engine, an object with ``complete(Request) -> Response``, ``stream``
and ``close`` (``dspy.clients.engines.base.Engine``), passed as ``dspy.LM("local/<name>",
engine=obj)``; subclassing ``dspy.BaseLM`` is deprecated (removal planned in 3.5). This module
implements that engine over the :class:`~instructkit.lm.base.LM` protocol, so every backend
(local, llama.cpp, OpenAI-compatible, :class:`~instructkit.lm.cache.CachedLM`,
:class:`~instructkit.lm.scripted.ScriptedLM`) can run DSPy programs::

    counter = CallCounter(budget=200)
    task_lm = bridge_lm(LocalLM.load("smollm2-135m-instruct"), counter=counter, role="task")
    with dspy.context(lm=task_lm, adapter=PlainAdapter()):
        program(text="...")
    counter.counts                      # {"task": 1}

The :class:`CallCounter` sits at the engine, below DSPy's own bookkeeping, so it sees every
call that reaches a model: DSPy fans a request with ``n > 1`` out into ``n`` engine calls, and
each is counted. Calls are counted per role (``"task"`` for the model whose instructions are
optimized, ``"proposer"`` for the model that writes them). With a budget, the call that would
exceed it raises :class:`BudgetExceeded` *before* it is made. Caching is instructkit's: wrap the
LM in ``CachedLM``; :func:`bridge_lm` turns DSPy's own response cache and retries off, so the
counter and the budget see every request (a cache hit in ``CachedLM`` still counts as a call of
the program; ``CachedLM.misses`` says how many reached the model).

Batching: concurrent calls (e.g. items scored on several threads, ``score_program(...,
threads=16)``) are gathered into one ``lm.complete([...])`` call of up to ``max_batch`` requests
(default 16; ``bridge_lm(..., max_batch=1)`` sends every call alone). Local backends generate a
batch together: SmolLM2-135M answers 16 short requests 3.6x faster in one call than one by one.
There is no background thread: the first waiting caller leads, gathers the requests that arrive
within ``batch_window`` seconds of each other (or until ``max_batch`` wait; a lone caller
does not wait), runs the batch, and
hands each caller its own completion; one batch runs at a time per engine, and the requests that
arrive meanwhile form the next one. A batch that fails raises its error in every caller in it.
The budget check and the count happen per request, before it joins a batch, so a budget is
never exceeded however many threads call. ``counter.tally()`` attributes calls to the thread (or
``contextvars`` context) that made them, which scoring uses for per-item counts.

Request mapping: the system text and the text messages become a
:class:`~instructkit.lm.base.ChatRequest` (a ``developer`` message is sent as ``system``);
``temperature``, ``max_tokens``, ``top_p``, ``stop`` and ``seed`` carry over (unset ones keep
``ChatRequest``'s defaults: greedy, 256 tokens). Tools, images, structured output formats and
provider extensions have no instructkit equivalent and are refused with an error. The reply
keeps the finish reason (``stop``/``length``; another one is reported as ``error`` with the
original in ``provider_data``) and the token usage.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dspy
from dspy.lm15 import Message, Request, Response, Usage, response_to_events

from instructkit.errors import InstructkitError, LMError
from instructkit.lm.base import LM, ChatRequest, Completion

__all__ = [
    "TASK",
    "PROPOSER",
    "BudgetExceeded",
    "CallCounter",
    "InstructkitEngine",
    "bridge_lm",
    "instructkit_cause",
    "to_chat_request",
    "to_response",
]

TASK = "task"
PROPOSER = "proposer"

_FINISH_REASONS = {"stop", "length", "tool_call", "content_filter", "error"}
_ROLES = {"user": "user", "assistant": "assistant", "developer": "system", "system": "system"}

MAX_BATCH = 16  # requests per batch: 16 short SmolLM2 requests run 3.6x faster together
BATCH_WINDOW = 0.02  # seconds: a batch closes when no request arrived for this long

# The tallies open in this context, each with its counter: ``CallCounter.tally`` adds one, and
# ``reserve`` counts into those of its own counter. A ContextVar, so each thread (and each
# ``contextvars.copy_context()`` a worker runs in) sees only the tallies opened in it.
_TALLIES: contextvars.ContextVar[tuple[tuple[CallCounter, dict[str, int]], ...]] = (
    contextvars.ContextVar("instructkit_call_tallies", default=())
)


class BudgetExceeded(LMError):
    """A call (or a planned run of calls) would go past the :class:`CallCounter`'s budget."""


class CallCounter:
    """Counts LM calls per role; with ``budget`` (all roles) or ``budgets`` (per role), refuses
    the call that would exceed it.

    Thread-safe: DSPy may call the engine from several threads. A call is counted when it is
    reserved, just before it is made, so a call that fails still counts (it was spent). The check
    and the count are one atomic step, so concurrent callers never exceed a budget together.
    """

    def __init__(self, budget: int | None = None, *, budgets: Mapping[str, int] | None = None):
        for name, value in [("budget", budget), *(budgets or {}).items()]:
            if value is not None and (isinstance(value, bool) or value < 0):
                raise ValueError(f"call budget {name!r} must be a count >= 0, got {value!r}")
        self.budget = budget
        self.budgets = dict(budgets or {})
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def counts(self) -> dict[str, int]:
        """Calls made so far, per role (a copy)."""
        with self._lock:
            return dict(self._counts)

    def count(self, role: str | None = None) -> int:
        """Calls made by ``role``, or by all roles when ``role`` is None."""
        with self._lock:
            return self._counts.get(role, 0) if role else sum(self._counts.values())

    def remaining(self, role: str) -> int | None:
        """Calls ``role`` may still make (the tighter of both budgets); None when unlimited."""
        with self._lock:
            return self._remaining(role)

    def _remaining(self, role: str) -> int | None:
        left = []
        if self.budget is not None:
            left.append(self.budget - sum(self._counts.values()))
        if role in self.budgets:
            left.append(self.budgets[role] - self._counts.get(role, 0))
        return max(0, min(left)) if left else None

    def require(self, calls: int, role: str, what: str) -> None:
        """Raise :class:`BudgetExceeded` now, before anything is spent, unless ``role`` may still
        make ``calls`` calls (``what`` names the planned work in the message)."""
        left = self.remaining(role)
        if left is not None and calls > left:
            raise BudgetExceeded(
                f"{what} needs at least {calls} {role} calls, but the call budget leaves {left} "
                f"(used so far: {self.counts}).",
                fix="raise the budget, or use fewer items or candidates.",
            )

    def reserve(self, role: str) -> None:
        """Count one call of ``role``, or raise :class:`BudgetExceeded` if it would exceed a
        budget (then nothing is counted and the call must not be made)."""
        with self._lock:
            if self._remaining(role) == 0:
                raise BudgetExceeded(
                    f"call budget exhausted: a {role} call would exceed it "
                    f"(budget {self.budget}, per role {self.budgets}, used {self._counts}).",
                    fix="raise the budget, or stop the run at this point.",
                )
            self._counts[role] = self._counts.get(role, 0) + 1
            for counter, tally in _TALLIES.get():
                if counter is self:
                    tally[role] = tally.get(role, 0) + 1

    @contextmanager
    def tally(self) -> Iterator[dict[str, int]]:
        """The calls this counter counts inside the block *in this context*, per role.

        Unlike a difference of :attr:`counts`, calls that other threads make at the same time
        are left out, so concurrent work can each be attributed its own calls. A thread started
        inside the block sees the tally only if it runs in a copy of this context
        (``contextvars.copy_context().run``, as instructkit's scoring threads do); DSPy's own
        ``ParallelExecutor`` threads do not, and their calls are not in the tally (the counter
        still counts them).
        """
        mine: dict[str, int] = {}
        token = _TALLIES.set((*_TALLIES.get(), (self, mine)))
        try:
            yield mine
        finally:
            _TALLIES.reset(token)


def _text_of(content: object, where: str) -> str:
    text = content if isinstance(content, str) else getattr(content, "text", None)
    if not isinstance(text, str):
        raise LMError(
            f"{where} is not plain text; instructkit LMs take text messages only.",
            fix="use an adapter that sends text (PlainAdapter, ChatAdapter), no images or tools.",
        )
    return text


def _system_text(system: str | Sequence[object]) -> str:
    if isinstance(system, str):
        return system
    return "".join(_text_of(part, "a system prompt part") for part in system)


def _check_supported(request: Request) -> None:
    config = request.config
    unsupported = [
        name
        for name, value in [
            ("tools", request.tools),
            ("response_format", config.response_format),
            ("tool_choice", config.tool_choice),
            ("top_k", config.top_k),
            ("logprobs", config.logprobs),
            ("extensions", config.extensions),
        ]
        if value
    ]
    if unsupported:
        raise LMError(
            f"the request asks for {unsupported}, which instructkit LMs do not support.",
            fix="use PlainAdapter or ChatAdapter (not JSONAdapter or native tool calling), "
            "and pass only temperature, max_tokens, top_p, stop, seed and n.",
        )


def to_chat_request(request: Request) -> ChatRequest:
    """The :class:`ChatRequest` for one DSPy engine request (always ``n=1``: DSPy fans out)."""
    _check_supported(request)
    messages: list[tuple[str, str]] = []
    if request.system is not None:
        messages.append(("system", _system_text(request.system)))
    for i, message in enumerate(request.messages):
        if message.role not in _ROLES:
            raise LMError(f"message {i} has role {message.role!r}, which instructkit LMs lack.")
        messages.append((_ROLES[message.role], _text_of(message, f"message {i}")))
    config = request.config
    params: dict[str, Any] = {"stop": tuple(config.stop)}
    for name in ("temperature", "max_tokens", "top_p", "seed"):
        if getattr(config, name) is not None:
            params[name] = getattr(config, name)
    return ChatRequest(tuple(messages), **params)


def to_response(completion: Completion, model: str) -> Response:
    """The DSPy response for one instructkit completion, with its finish reason and usage."""
    reason = completion.finish_reasons[0] if completion.finish_reasons else "stop"
    mapped = reason if reason in _FINISH_REASONS else "error"
    return Response(
        id=None,
        model=model or "instructkit",
        message=Message.assistant(completion.text),
        finish_reason=mapped,
        usage=Usage(
            input_tokens=completion.prompt_tokens, output_tokens=completion.completion_tokens
        ),
        provider_data=None if mapped == reason else {"finish_reason": reason},
    )


@dataclass
class _Waiter:
    """One caller's request in the batcher's queue, and then its outcome."""

    request: ChatRequest
    arrived: float
    completion: Completion | None = None
    error: BaseException | None = None
    done: bool = False

    def outcome(self) -> Completion:
        if self.error is not None:
            raise self.error
        assert self.completion is not None
        return self.completion


class _Batcher:
    """Gathers concurrent requests into one ``lm.complete`` call, leader-follower style.

    No background thread: a caller that finds its request first in the queue while no batch
    is running becomes the leader. It waits until ``max_batch`` requests queue or none arrived
    for ``window`` seconds, takes them, runs them outside the lock, and wakes the others, each
    of whom reads its own outcome. Requests that arrive during a batch form the next one.
    A lone caller (the last batch held one request and none arrived while it ran) does not
    wait: sequential calls pay no window, and concurrent ones queue up during its call.
    """

    def __init__(self, lm: LM, max_batch: int, window: float) -> None:
        self.lm, self.max_batch, self.window = lm, max_batch, window
        self.sizes: Counter[int] = Counter()  # batches run, by size
        self._cond = threading.Condition()
        self._queue: list[_Waiter] = []
        self._busy = False  # a leader is gathering or running a batch
        self._gathering: _Waiter | None = None  # the leader while it gathers
        self._last_arrival = 0.0
        self._lone = False  # the last batch had one request and nothing queued meanwhile

    def complete(self, request: ChatRequest) -> Completion:
        waiter = _Waiter(request, time.monotonic())
        with self._cond:
            self._queue.append(waiter)
            self._last_arrival = waiter.arrived
            self._cond.notify_all()  # a gathering leader may now have a full batch
            try:
                batch = self._wait_turn(waiter)
            except BaseException:  # e.g. Ctrl-C while waiting: never leave others stranded
                self._abandon(waiter)
                raise
        if batch:
            self._run(batch)
        return waiter.outcome()

    def _wait_turn(self, waiter: _Waiter) -> list[_Waiter]:
        """The batch to run when ``waiter`` leads; empty when another caller answered it."""
        while not waiter.done:
            if not self._busy and self._queue[0] is waiter:
                self._busy, self._gathering = True, waiter
                while not self._lone and len(self._queue) < self.max_batch:
                    left = self._last_arrival + self.window - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                self._gathering = None
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                return batch
            self._cond.wait()
        return []

    def _abandon(self, waiter: _Waiter) -> None:
        if self._gathering is waiter:
            self._busy, self._gathering = False, None  # let the next caller lead
        if waiter in self._queue:
            self._queue.remove(waiter)
            self._cond.notify_all()

    def _run(self, batch: list[_Waiter]) -> None:
        completions: list[Completion] = []
        error: BaseException | None = None
        try:
            completions = self.lm.complete([w.request for w in batch])
            if len(completions) != len(batch):
                raise LMError(
                    f"LM '{self.lm.name}' returned {len(completions)} completions for {len(batch)}."
                )
        except BaseException as exc:
            error = exc
        with self._cond:
            for i, w in enumerate(batch):
                if error is None:
                    w.completion = completions[i]
                elif isinstance(error, Exception) or i == 0:
                    w.error = error  # the leader (first) re-raises even Ctrl-C as it came
                else:
                    w.error = LMError(f"the batch of this call was interrupted ({error!r}).")
                w.done = True
            self.sizes[len(batch)] += 1
            self._lone = len(batch) == 1 and not self._queue
            self._busy = False
            self._cond.notify_all()


class InstructkitEngine:
    """A DSPy 3.4 engine (``complete``/``stream``/``close``) over an instructkit ``LM``.

    Each ``complete`` is one counted call of ``role``. With ``max_batch > 1``, calls made at
    the same time from several threads go to ``lm`` together, in one ``lm.complete`` of up to
    ``max_batch`` requests (``batch_window``: seconds without a new request that close a
    batch); ``batch_sizes`` counts the batches run by size. The engine borrows ``lm``:
    ``close`` leaves it open (its owner closes it).
    """

    def __init__(
        self,
        lm: LM,
        *,
        counter: CallCounter | None = None,
        role: str = TASK,
        max_batch: int = MAX_BATCH,
        batch_window: float = BATCH_WINDOW,
    ):
        if not role:
            raise ValueError("role must be a non-empty name such as 'task' or 'proposer'")
        if isinstance(max_batch, bool) or max_batch < 1:
            raise ValueError(f"max_batch must be a count >= 1, got {max_batch!r}")
        if batch_window < 0:
            raise ValueError(f"batch_window must be seconds >= 0, got {batch_window!r}")
        self.lm = lm
        self.counter = counter if counter is not None else CallCounter()
        self.role = role
        self.max_batch = max_batch
        self._batcher = _Batcher(lm, max_batch, batch_window) if max_batch > 1 else None

    @property
    def batch_sizes(self) -> dict[int, int]:
        """Batches sent to the LM so far, by size (empty when ``max_batch`` is 1)."""
        if self._batcher is None:
            return {}
        with self._batcher._cond:
            return dict(self._batcher.sizes)

    def complete(self, request: Request) -> Response:
        chat = to_chat_request(request)  # a request we cannot send is refused before counting
        self.counter.reserve(self.role)  # counted (or refused) before it joins a batch
        if self._batcher is not None:
            return to_response(self._batcher.complete(chat), self.lm.name)
        completions = self.lm.complete([chat])
        if len(completions) != 1:
            raise LMError(f"LM '{self.lm.name}' returned {len(completions)} completions for 1.")
        return to_response(completions[0], self.lm.name)

    def stream(self, request: Request) -> Iterator[Any]:
        """The complete response as stream events (instructkit LMs do not stream)."""
        return iter(response_to_events(self.complete(request)))

    def close(self) -> None:
        """Nothing to release: the wrapped LM belongs to the caller."""


def bridge_lm(
    lm: LM,
    *,
    counter: CallCounter | None = None,
    role: str = TASK,
    temperature: float | None = None,
    max_tokens: int | None = None,
    max_batch: int = MAX_BATCH,
    batch_window: float = BATCH_WINDOW,
) -> Any:
    """``lm`` as a ``dspy.LM`` whose calls ``counter`` counts under ``role``.

    DSPy's response cache and retries are off: caching is ``CachedLM``'s job, and a retry
    would spend calls the counter must see. ``temperature``/``max_tokens`` become the
    ``dspy.LM`` defaults (unset: greedy, 256 tokens). Concurrent calls go to ``lm`` in batches
    of up to ``max_batch`` (1: each call alone); see :class:`InstructkitEngine`.
    """
    engine = InstructkitEngine(
        lm, counter=counter, role=role, max_batch=max_batch, batch_window=batch_window
    )
    name = (lm.name or "lm").strip("/") or "lm"
    return dspy.LM(
        f"local/{name}",
        engine=engine,
        cache=False,
        num_retries=0,
        temperature=temperature,
        max_tokens=max_tokens,
    )


def instructkit_cause(error: BaseException) -> BaseException | None:
    """The instructkit error behind ``error`` (DSPy wraps engine failures in its own errors,
    e.g. ``LMUnexpectedError`` from a :class:`BudgetExceeded`), or None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, InstructkitError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
