"""Running the app on uvicorn, always on a thread: for the desktop app, or until Ctrl-C (the command line).

We bind the listening socket ourselves, before uvicorn starts, so that "port in
use" is a clear error at once and port 0 (any free port, for tests) reports
the port it got. Stopping, by ``handle.stop()`` or Ctrl-C, first stops the
running answer and fails the waiting ones, so no connection keeps the server
waiting for an answer nobody will read.
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import socket
import threading
import time

import uvicorn

from engine import ChatEngine

from .access_guard import is_loopback
from .app import MAX_BODY_BYTES, create_app, model_id
from .connection_limits import BoundedThreads, ConnectionLimits, limited_protocol
from .errors import ServerStartError
from .generation_queue import GenerationQueue

log = logging.getLogger("api_server")
GRACEFUL_SHUTDOWN_S = 5
START_TIMEOUT_S = 30
MIN_NETWORK_KEY_CHARS = 16
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGBREAK,) if hasattr(signal, "SIGBREAK") else ())


def check_address(host: str, port: int, api_key: str | None) -> None:
    """Refuse what must not start: a bad port, or a network-visible address without an API key."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ServerStartError(f"The port must be a whole number from 0 to 65535, got {port!r}.")
    if not host:
        raise ServerStartError("The address to listen on is empty; use 127.0.0.1 for this computer only.")
    if api_key is not None and not api_key.strip():
        raise ServerStartError("The API key is empty; give a real key, or none on 127.0.0.1.")
    if not is_loopback(host) and not api_key:
        raise ServerStartError(
            f"Listening on {host} lets other computers use this model, so it needs an API key (clients then "
            "send 'Authorization: Bearer KEY'). Set one, or listen on 127.0.0.1 (this computer only).")
    if not is_loopback(host) and len(api_key.strip()) < MIN_NETWORK_KEY_CHARS:
        raise ServerStartError(
            f"Listening on {host} needs an API key of at least {MIN_NETWORK_KEY_CHARS} characters (this one has "
            f"{len(api_key.strip())}): other computers could guess a short one. Make one with: "
            "python -c \"import secrets; print(secrets.token_urlsafe(24))\"")


def open_listener(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a ServerStartError that says why not."""
    host = host.strip("[]")
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ServerStartError(f"Cannot listen on {host!r}: no such address on this computer ({exc}).") from None
    # "localhost" may list ::1 first (Windows does); IPv4 is what clients of "localhost" reach everywhere
    family, _, _, _, address = next((f for f in found if f[0] == socket.AF_INET), found[0])
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name == "nt":  # no other program may bind the same port over ours (Windows allows it by default)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:                # a restart may reuse the port at once; POSIX never lets two servers share it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        why = "the port is already in use (another server?); choose another port" \
            if exc.errno in (98, 48, 10048) else exc.strerror or str(exc)
        raise ServerStartError(f"Cannot listen on {host}:{port}: {why}.") from None
    return sock


def base_url(sock: socket.socket) -> str:
    """What OpenAI clients take as base_url, e.g. http://127.0.0.1:8080/v1."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def _build(app, log_config, limits: ConnectionLimits) -> uvicorn.Server:
    config = uvicorn.Config(app, http=limited_protocol(limits.request_timeout_s, limits.max_connections), ws="none",
                            lifespan="off", loop="asyncio", log_config=log_config, access_log=log_config is not None,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, server_header=False, proxy_headers=False)
    return uvicorn.Server(config)


def _warn_if_open(host: str) -> None:
    if not is_loopback(host):
        log.warning("Listening on %s: other computers can reach this server (they need the API key).", host)


class ServerHandle:
    """A server running on a background thread: ``url`` for clients, ``stop()`` to end it."""

    def __init__(self, server: uvicorn.Server, queue: GenerationQueue, thread: threading.Thread, url: str):
        self._server = server
        self.queue = queue
        self._thread = thread
        self.url = url

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the running answer, refuse the waiting ones, close the port, and wait for the thread."""
        self.queue.close(timeout=0)
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_background(engine: ChatEngine, host: str = "127.0.0.1", port: int = 8080, api_key: str | None = None,
                     *, max_waiting: int = 8, max_body_bytes: int = MAX_BODY_BYTES,
                     limits: ConnectionLimits = ConnectionLimits(), lookup: str = "auto") -> ServerHandle:
    """Serve ``engine`` from a daemon thread; returns once it accepts connections (port 0: any free port).

    It logs through the "api_server" logger and leaves the caller's logging set-up alone. ``lookup``: lookup
    decoding for requests that do not choose.
    """
    return _start(engine, host, port, api_key, max_waiting, max_body_bytes, log_config=None, limits=limits,
                  lookup=lookup)


def _start(engine, host, port, api_key, max_waiting, max_body_bytes, log_config, limits,
           lookup="auto") -> ServerHandle:
    check_address(host, port, api_key)
    sock = open_listener(host, port)
    queue = GenerationQueue(max_waiting, parallel=engine.parallel)
    app = BoundedThreads(create_app(engine, queue, api_key=api_key, loopback_only=is_loopback(host),
                                    max_body_bytes=max_body_bytes, lookup=lookup))
    server = _build(app, log_config, limits)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="api-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            queue.close(timeout=0)
            sock.close()
            raise ServerStartError("The API server did not start; its log says why.")
        time.sleep(0.02)
    _warn_if_open(host)
    return ServerHandle(server, queue, thread, base_url(sock))


class WithoutQuery(logging.Filter):
    """Access lines without the query string: a client may put its key there (``?api_key=...``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = args[:2] + (args[2].split("?", 1)[0] + "?[query not logged]",) + args[3:]
        return True


def _console_log_config() -> dict:
    """uvicorn's own console logging, with our "api_server" lines (one per answer) beside its access lines."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config["filters"] = {"without_query": {"()": WithoutQuery}}
    config["handlers"]["access"]["filters"] = ["without_query"]
    config["loggers"]["api_server"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def serve(engine: ChatEngine, host: str = "127.0.0.1", port: int = 8080, api_key: str | None = None,
          *, max_waiting: int = 8, max_body_bytes: int = MAX_BODY_BYTES, lookup: str = "auto") -> None:
    """Serve ``engine`` until Ctrl-C (or SIGTERM / Ctrl-Break), then stop cleanly and return.

    uvicorn runs on a thread and this (main) thread waits for a signal. MindSpore
    installs its own native Ctrl-C handler when it first runs and again when it
    compiles, and that handler sends SIGTERM; so Ctrl-C and SIGTERM both end in
    the same clean stop here, rather than in uvicorn's handlers or a killed process.
    """
    handle = _start(engine, host, port, api_key, max_waiting, max_body_bytes, log_config=_console_log_config(),
                    limits=ConnectionLimits(), lookup=lookup)
    log.info("Serving %s at %s (OpenAI-compatible%s; up to %d answers at once). Ctrl-C stops.", model_id(engine),
             handle.url, ", API key required" if api_key else "", engine.parallel)
    stop = threading.Event()
    in_main_thread = threading.current_thread() is threading.main_thread()   # only it may take signals
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS if in_main_thread}
    try:
        while handle.running and not stop.wait(0.2):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        handle.stop()
    log.info("Server stopped.")
