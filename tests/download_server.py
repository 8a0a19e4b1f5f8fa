"""A real HTTP server on 127.0.0.1 for the downloader's tests, with the failures real mirrors have.

Per path it can: ignore Range, drop the connection after N bytes (once), answer an error status
a few times, or send slowly (so that a test can pause, cancel or kill a download midway).
"""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from dataclasses import dataclass, field


def payload(size: int, seed: int = 0) -> bytes:
    """Bytes that differ everywhere, so an offset error cannot go unnoticed."""
    out, block = bytearray(), hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Behaviour:
    files: dict[str, bytes] = field(default_factory=dict)
    no_range: set[str] = field(default_factory=set)
    drop_after: dict[str, int] = field(default_factory=dict)   # path -> bytes sent before closing, once
    fail_times: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (status, how many times)
    bytes_per_s: float | None = None                            # throttle every file
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # (path, Range header, status)


class _Handler(http.server.BaseHTTPRequestHandler):
    behaviour: Behaviour
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self, status: int, headers: dict[str, str], rng: str) -> None:
        self.behaviour.requests.append((self.path, rng, status))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    def do_GET(self):
        b, rng = self.behaviour, self.headers.get("Range") or ""
        status, times = b.fail_times.get(self.path, (0, 0))
        if times:
            b.fail_times[self.path] = (status, times - 1)
            self._answer(status, {"Content-Length": "0"}, rng)
            return
        data = b.files.get(self.path)
        if data is None:
            self._answer(404, {"Content-Length": "0"}, rng)
            return
        start = 0
        if rng and self.path not in b.no_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self._answer(416, {"Content-Range": f"bytes */{len(data)}", "Content-Length": "0"}, rng)
                return
            self._answer(206, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}",
                               "Content-Length": str(len(data) - start)}, rng)
        else:
            self._answer(200, {"Content-Length": str(len(data))}, rng)
        body = data[start:]
        if self.path in b.drop_after:
            body = body[:b.drop_after.pop(self.path)]
            self.close_connection = True
        self._send(body)

    def _send(self, body: bytes) -> None:
        step = 32 * 1024
        try:
            for i in range(0, len(body), step):
                self.wfile.write(body[i:i + step])
                if self.behaviour.bytes_per_s:
                    time.sleep(step / self.behaviour.bytes_per_s)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (paused, cancelled, killed)


class DownloadServer:
    """``with DownloadServer(behaviour) as url:`` serves ``behaviour.files`` at ``url + path``."""

    def __init__(self, behaviour: Behaviour):
        handler = type("Handler", (_Handler,), {"behaviour": behaviour})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
