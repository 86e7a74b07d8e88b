"""Dynamic batching for ``instructkit serve``: one thread calls the models, in batches.

::

    worker = BatchWorker({"base": lm, "tuned": tuned_lm}, max_batch=32, max_wait_ms=50)
    future = worker.submit(request, model="tuned", on_text=print_piece)  # from any thread
    completion = future.result()
    worker.stop()

Requests arrive from the server's event loop and are funnelled into one :class:`BatchWorker`
thread, the only thread that calls the models. It batches requests for the same model (base or
adapter) with the same sampling parameters, up to ``max_batch``, waiting at most ``max_wait_ms``
for the clients of recent batches to come back (static batching: a batch runs to its longest
answer). Greedy requests batch whatever their ``top_p``, ``seed`` or ``n``; sampled requests
that carry a ``seed`` are generated alone, so that their answer does not depend on other
clients' requests. Batches never mix models, so each adapter generates with its own weights.

Abandoned requests (their client went away, see :meth:`BatchWorker.abandon`) are dropped if
they have not started; if an :class:`~instructkit.lm.base.Abandonable` LM (the local backend)
is generating them, their generation stops at the next decode step. The counters ``abandoned``
(clients gone), ``dropped`` (never generated) and ``stopped`` (cut short) feed ``GET /health``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from instructkit.errors import ConfigError
from instructkit.lm.base import DEFAULT_BATCH, LM, Abandonable, ChatRequest, Completion, TextSink
from instructkit.lm.serve_schema import RequestError

__all__ = ["BatchWorker", "Pending"]

log = logging.getLogger(__name__)


class Pending(Future[Completion]):
    """A request's future completion; ``abandoned`` is set once its client went away."""

    def __init__(self) -> None:
        super().__init__()
        self.abandoned = threading.Event()


@dataclass
class _Job:
    request: ChatRequest
    model: str
    raw: bool = False  # a plain prompt (/v1/completions), not a chat
    sink: TextSink | None = None
    future: Pending = field(default_factory=Pending)

    @property
    def key(self) -> tuple[Any, ...] | None:
        """Requests with equal keys may share a batch; None: generate this one alone."""
        r = self.request
        if r.temperature <= 0:  # greedy: top_p, seed and n do not change what is generated
            return (self.model, self.raw, 0.0, r.max_tokens, r.stop)
        if r.seed is not None:
            # Batched samples share one random stream, so a seeded answer would depend on its
            # batch-mates: generate seeded requests alone, so the same request gives the same text.
            return None
        return (self.model, self.raw, r.temperature, r.top_p, r.max_tokens, r.n, r.stop)


def shutting_down() -> RequestError:
    return RequestError(503, "the server is shutting down.", type="server_error", code="shutdown")


class BatchWorker:
    """The one thread that calls the models: groups compatible requests into batches.

    ``lms`` is one LM or ``{served name: LM}`` (the first is the default). ``submit`` (any
    thread) returns a future of the :class:`Completion`; ``abandon(future)`` says its client
    went away (see the module docstring). A batch takes what is queued, then waits at most
    ``max_wait_ms`` for the requests it can expect: one from each client of the batch that just
    ended, plus those that queued while it ran. Steady clients are so gathered into full
    batches, and a lone client (or one after an idle spell) is not kept waiting. The first batch
    waits to fill.
    """

    def __init__(
        self,
        lms: LM | Mapping[str, LM],
        *,
        max_batch: int = DEFAULT_BATCH,
        max_wait_ms: float = 50.0,
    ) -> None:
        if max_batch < 1:
            raise ConfigError(f"max_batch must be at least 1, got {max_batch}.")
        self.lms: dict[str, LM] = dict(lms) if isinstance(lms, Mapping) else {lms.name: lms}
        if not self.lms:
            raise ConfigError("the server needs at least one model.")
        self.default = next(iter(self.lms))
        self.max_batch, self.max_wait_s = max_batch, max_wait_ms / 1000
        self.batch_sizes: list[int] = []  # one entry per model call, for /health and tests
        self.abandoned = self.dropped = self.stopped = 0  # see the module docstring
        self._last = max_batch  # size of the last batch (the first batch waits to fill)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._held: deque[_Job] = deque()  # taken from the queue but incompatible with a batch
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="instructkit-generate", daemon=True)
        self._thread.start()

    def submit(
        self,
        request: ChatRequest,
        *,
        model: str | None = None,
        raw: bool = False,
        on_text: TextSink | None = None,
    ) -> Pending:
        """Queue ``request`` for ``model`` (default: the first); ``on_text`` gets its text as it
        is generated (by LMs that stream; others give it all in the completion)."""
        job = _Job(request, model or self.default, raw, on_text)
        with self._lock:  # so that no job slips into the queue after stop() drained it
            if self._stopped.is_set():
                job.future.set_exception(shutting_down())
            else:
                self._queue.put(job)
        return job.future

    def abandon(self, future: Pending) -> None:
        """The client of ``future`` went away: do not start it, and stop it if it runs."""
        if not future.done() and not future.abandoned.is_set():
            with self._lock:
                self.abandoned += 1
            future.abandoned.set()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the batch in progress, fail the queued requests, and end the thread."""
        with self._lock:
            self._stopped.set()
            self._queue.put(None)
        self._thread.join(timeout)
        held: list[_Job] = []
        if not self._thread.is_alive():  # else the worker still owns them
            held, self._held = [*self._held], deque()
        for job in [*held, *_drain(self._queue)]:
            job.future.set_exception(shutting_down())

    def _loop(self) -> None:
        while not self._stopped.is_set():
            batch = self._next_batch()
            if batch:
                self._run(batch)

    def _next_batch(self) -> list[_Job]:
        # How many requests to expect: the clients of the batch that just ended send their
        # next requests a few milliseconds apart, and those queued meanwhile are waiting.
        # Generating before they are in would split one cohort into two half-full batches.
        ended = time.monotonic()
        expected = min(self.max_batch, self._last + self._queue.qsize() + len(self._held))
        first = self._held.popleft() if self._held else self._queue.get()
        if first is None:
            return []
        if first.key is None:
            return [first]
        if self.batch_sizes and time.monotonic() - ended > self.max_wait_s:
            expected = 1  # the last batch's clients did not come back: wait for no one
        batch = [first]
        for job in list(self._held):
            if len(batch) < self.max_batch and job.key == first.key:
                self._held.remove(job)
                batch.append(job)
        self._take(batch, wait=False)  # whatever is queued already
        if len(batch) < expected:
            self._take(batch, wait=True, until=expected)
        self._last = len(batch)
        return batch

    def _take(self, batch: list[_Job], *, wait: bool, until: int | None = None) -> None:
        """Move queued jobs into ``batch`` (same key) or the held list, up to ``until``."""
        limit = min(self.max_batch, until or self.max_batch)
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < limit:
            try:
                if wait:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                else:
                    job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is None:
                self._queue.put(None)  # leave the stop signal for the loop
                return
            (batch if job.key == batch[0].key else self._held).append(job)

    def _run(self, jobs: list[_Job]) -> None:
        batch = [j for j in jobs if not j.future.abandoned.is_set()]
        for job in jobs:
            if job.future.abandoned.is_set():
                self.dropped += 1
                job.future.cancel()  # never started: nobody waits for it
        if not batch:
            return
        self.batch_sizes.append(len(batch))
        try:
            results = self._complete(batch)
            if len(results) != len(batch):
                raise RuntimeError(f"the LM returned {len(results)} completions for {len(batch)}.")
        except Exception as e:
            if len(batch) == 1:
                log.exception("generation failed")
                batch[0].future.set_exception(e)
            else:  # one bad request must not fail the others: retry them one by one
                for job in batch:
                    self._run([job])
            return
        for job, result in zip(batch, results, strict=True):
            self.stopped += "abandoned" in result.finish_reasons
            job.future.set_result(result)

    def _complete(self, batch: list[_Job]) -> list[Completion]:
        lm, requests = self.lms[batch[0].model], [j.request for j in batch]
        if isinstance(lm, Abandonable):
            events = [j.future.abandoned for j in batch]
            sinks = [j.sink for j in batch]
            return lm.complete_abandonable(requests, events, sinks, raw=batch[0].raw)
        return lm.complete(requests)  # a raw prompt reaches such an LM as one user message


def _drain(q: queue.Queue[_Job | None]) -> list[_Job]:
    jobs: list[_Job] = []
    while True:
        try:
            job = q.get_nowait()
        except queue.Empty:
            return jobs
        if job is not None:
            jobs.append(job)
