"""What clients may hold: a request that does not arrive in time is dropped, connections are capped, and
only a few requests are prepared (tokenized) at once.

uvicorn waits for a request's headers and body as long as the client likes, so a thousand connections that
send only a request line stay open until the process runs out of file handles and stops answering anyone
(found by a fault run). Here every request must arrive whole (headers and body) within
``request_timeout_s`` of its first byte, or of the connection's opening; otherwise the connection gets a
``408`` and is closed, with one line in the log. Beyond ``max_connections`` open connections, a new one
gets a ``503`` at once. Both happen before anything reaches the application. Preparing a request
(tokenizing a long conversation) runs on a worker thread: ``BoundedThreads`` keeps those to
``PREPARING_AT_ONCE``, so 32 clients sending a megabyte each wait their turn instead of taking 32
tokenizations' worth of memory and both cores from the answer being computed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import anyio.to_thread
import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("api_server")
REQUEST_TIMEOUT_S = 15.0
MAX_CONNECTIONS = 64
PREPARING_AT_ONCE = 2
_REFUSED_LOG_EVERY_S = 10.0
_ANSWERS = {408: b"HTTP/1.1 408 Request Timeout\r\n", 503: b"HTTP/1.1 503 Service Unavailable\r\n"}


@dataclass(frozen=True)
class ConnectionLimits:
    request_timeout_s: float = REQUEST_TIMEOUT_S   # a request's headers and body must arrive within this
    max_connections: int = MAX_CONNECTIONS          # open at once; more are refused with a 503


def limited_protocol(request_timeout_s: float = REQUEST_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS):
    """uvicorn's ``http=`` protocol class with these limits."""
    return type("LimitedH11Protocol", (LimitedH11Protocol,),
                {"request_timeout_s": request_timeout_s, "max_connections": max_connections})


class LimitedH11Protocol(H11Protocol):
    request_timeout_s = REQUEST_TIMEOUT_S
    max_connections = MAX_CONNECTIONS
    _refused = 0                      # connections turned away since the last line about them (per class)
    _refused_logged = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._turn_away()
            return
        self._arm()                   # a client that connects and sends nothing counts too

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()               # the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()            # the whole request is here (or the connection is over)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout_s, self._request_too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _request_too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        started = self.cycle is not None and not self.cycle.response_complete
        what = "its body" if started else "its request line and headers"
        log.info("%s: dropped a request: %s did not arrive within %g s", _who(self.client), what,
                 self.request_timeout_s)
        if self.cycle is None or not self.cycle.response_started:
            self._answer_and_close(408)
        else:
            self.transport.close()

    def _turn_away(self) -> None:
        cls = type(self)
        cls._refused += 1
        now = time.monotonic()
        if now - cls._refused_logged >= _REFUSED_LOG_EVERY_S:   # one line per burst, not one per connection
            log.warning("%d connection(s) refused: already %d open (the most this server keeps)", cls._refused,
                        self.max_connections)
            cls._refused, cls._refused_logged = 0, now
        self._answer_and_close(503)

    def _answer_and_close(self, status: int) -> None:
        self.transport.write(_ANSWERS[status] + b"Connection: close\r\nContent-Length: 0\r\n\r\n")
        self.transport.close()


def _who(client) -> str:
    return "%s:%d" % tuple(client[:2]) if client else "a client"


class BoundedThreads:
    """ASGI wrapper: the event loop's worker threads (anyio's default limiter) are ``threads`` at most."""

    def __init__(self, app, threads: int = PREPARING_AT_ONCE):
        self.app, self.threads = app, threads

    async def __call__(self, scope, receive, send):
        limiter = anyio.to_thread.current_default_thread_limiter()   # one per event loop
        if limiter.total_tokens != self.threads:
            limiter.total_tokens = self.threads
        await self.app(scope, receive, send)
