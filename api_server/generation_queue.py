"""One model, many clients: generation jobs wait in arrival order and run on worker threads, as many at once
as the engine computes together (``ChatEngine.parallel``: one, or one per cache slot with ``--parallel``).

Jobs wait here
rather than in the engine's lock, so the number waiting is known and bounded (a
full queue refuses at once, saying when to retry), a client that leaves while
waiting is simply taken out, and one that leaves mid-answer stops it between two
tokens. The event loop never runs the model: the worker threads do, and hand
each piece of text back to the loop without waiting for it (a client slow to
read never holds a worker, nor the other answers computed in the same step).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import AsyncIterator

from engine import ChatEngine, ChatPrompt, Completion, EngineError

from .openai_requests import GenerationRequest

log = logging.getLogger("api_server")
ENGINE_POLL_S = 0.05


class QueueFull(Exception):
    """Too many requests are already waiting; ``retry_after`` is a guess in seconds."""

    def __init__(self, retry_after: int):
        super().__init__("queue full")
        self.retry_after = retry_after


class QueueClosed(EngineError):
    """The server is stopping: the job will never run."""


@dataclass
class JobRecord:
    """What one job did: logged, and the recent ones time the next Retry-After (tests read them too)."""

    kind: str
    max_tokens: int
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    finish_reason: str = ""          # the engine's, "error", or "skipped" (the client left before its turn)
    seconds: float = 0.0
    client_left: bool = False


class Job:
    """One request's generation: run on the worker thread, listened to on the event loop."""

    def __init__(self, engine: ChatEngine, request: GenerationRequest, prompt: ChatPrompt | list[int]):
        self.engine = engine
        self.request = request
        self.prompt = prompt             # prepared once, when the request was checked: ChatPrompt or text ids
        self.cancel = threading.Event()
        self.record = JobRecord(request.kind, request.settings.max_new_tokens)
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue = asyncio.Queue()

    # -- worker thread --------------------------------------------------------

    def run(self) -> None:
        start = time.perf_counter()
        try:
            self._wait_for_engine()
            if self.cancel.is_set():     # the client left, or the server is stopping
                self.record.finish_reason = "skipped"
                self.fail(QueueClosed("The server is stopping; this request was not answered."))
                return
            on_token = self._on_token if self.request.stream else None
            if self.request.kind == "chat":
                completion = self.engine.chat(self.prompt, self.request.settings, on_token, self.cancel,
                                              use_memory_slots=True)
            else:
                completion = self.engine.complete_ids(self.prompt, self.request.settings, on_token, self.cancel,
                                                      use_memory_slots=True)
        except EngineError as exc:
            self.record.finish_reason = "error"
            self.fail(exc)
        except Exception as exc:  # a bug: the client gets a 500, the log gets the traceback
            log.exception("generation failed")
            self.record.finish_reason = "error"
            self.fail(exc)
        else:
            stats = completion.stats
            self.record.prompt_tokens = stats.prompt_tokens
            self.record.cached_tokens = stats.cached_tokens
            self.record.generated_tokens = stats.generated_tokens
            self.record.finish_reason = stats.finish_reason
            self._emit(("done", completion))
        finally:
            self.record.seconds = time.perf_counter() - start

    def fail(self, exc: Exception) -> None:
        self._emit(("error", exc))

    def _wait_for_engine(self) -> None:
        # Someone else (the desktop app's own chat) may hold the engine: wait where leaving is still possible.
        while self.engine.busy and not self.cancel.is_set():
            self.cancel.wait(ENGINE_POLL_S)

    def _on_token(self, token: int, text: str) -> None:
        if text:
            self._emit(("text", text))

    def _emit(self, event: tuple) -> None:
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:         # the event loop has closed: nobody is listening any more
            self.cancel.set()

    # -- event loop -----------------------------------------------------------

    async def events(self) -> AsyncIterator[tuple[str, object]]:
        """("text", piece)* then one ("done", Completion) or ("error", exception)."""
        while True:
            kind, value = await self._events.get()
            yield kind, value
            if kind != "text":
                return

    async def outcome(self) -> Completion:
        async for kind, value in self.events():
            if kind == "done":
                return value
            if kind == "error":
                raise value
        raise AssertionError("the event stream ended without an outcome")


class GenerationQueue:
    """A FIFO of jobs with a bound on how many may wait, served by ``parallel`` worker threads."""

    def __init__(self, max_waiting: int = 8, parallel: int = 1):
        if max_waiting < 0:
            raise ValueError("max_waiting must be 0 or more")
        if parallel < 1:
            raise ValueError("parallel must be 1 or more")
        self.max_waiting = max_waiting   # besides the ones running: 0 answers without anyone waiting
        self.parallel = parallel
        self.finished: deque[JobRecord] = deque(maxlen=200)
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._running: dict[Job, float] = {}   # job: when it started
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"api-server-generation-{n}", daemon=True)
                         for n in range(parallel)]
        for thread in self._threads:
            thread.start()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> bool:
        return bool(self._running)

    @property
    def running_count(self) -> int:
        return len(self._running)

    def _full(self) -> bool:
        # the running ones apart: with one worker, as before, one runs and max_waiting wait
        return len(self._waiting) + len(self._running) > self.max_waiting + self.parallel - 1

    @property
    def accepting(self) -> bool:
        """Whether a request submitted now would be taken (not refused with 429, nor closed)."""
        return not self._closed and not self._full()

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                raise QueueClosed("The server is stopping.")
            if self._full():
                raise QueueFull(self._retry_after())
            self._waiting.append(job)
            self._cond.notify()

    def abandon(self, job: Job) -> None:
        """The client left: take the job out if it still waits, else stop it at the next token."""
        job.record.client_left = True
        job.cancel.set()
        with self._cond:
            try:
                self._waiting.remove(job)
            except ValueError:
                return                   # running or done: the cancel event does the rest
        job.record.finish_reason = "skipped"
        self._finished(job)

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new jobs, fail the waiting ones, stop the running one, and let the worker end."""
        with self._cond:
            self._closed = True
            waiting, self._waiting = list(self._waiting), deque()
            running = list(self._running)
            self._cond.notify_all()
        for job in waiting:
            job.fail(QueueClosed("The server is stopping; this request was not answered."))
        for job in running:
            job.cancel.set()
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(end - time.monotonic(), 0))

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._waiting.popleft()
                self._running[job] = time.monotonic()
            try:
                job.run()
            finally:
                with self._cond:
                    self._running.pop(job, None)
                self._finished(job)

    def _finished(self, job: Job) -> None:
        self.finished.append(job.record)
        r = job.record
        if r.finish_reason == "skipped":
            log.info("%s: the client left before its turn", r.kind)
        elif r.client_left:
            log.info("%s: the client left; stopped after %d of at most %d tokens", r.kind, r.generated_tokens,
                     r.max_tokens)
        elif r.finish_reason != "error":
            log.info("%s: %d prompt (%d from the cache) + %d answer tokens in %.1f s (%s)", r.kind, r.prompt_tokens,
                     r.cached_tokens, r.generated_tokens, r.seconds, r.finish_reason)

    def _retry_after(self) -> int:
        """Seconds until a place frees: what is left of the running answer nearest its end plus the waiting ones
        (``parallel`` at a time), timed by the recent answers (answered ones: a job skipped or refused says
        nothing about the model's pace)."""
        recent = [r.seconds for r in list(self.finished)[-20:]
                  if r.seconds > 0 and r.finish_reason not in ("skipped", "error")]
        each = sum(recent) / len(recent) if recent else 5.0
        now = time.monotonic()
        running_left = min((max(each - (now - since), 0.0) for since in self._running.values()), default=0.0)
        return max(1, min(600, math.ceil(running_left + len(self._waiting) * each / self.parallel)))
