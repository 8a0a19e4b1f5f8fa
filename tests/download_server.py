"""A real HTTP server on 127.0.0.1 for the downloader's tests, with the failures real mirrors have.

Like a real server it sends an ``ETag`` and ``Last-Modified`` per file and honours ``If-Range``. Per path it
can also misbehave: ignore Range or If-Range, drop the connection after N bytes (once, or on every
answer), answer an error status a few times, send slowly (so that a test can pause, cancel or kill a
download midway), trickle a byte at a time, send headers and then nothing, answer a resume with a 416 that
gives another size, or redirect to itself forever. A ``?query`` is not part of the file's name.
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
    no_if_range: set[str] = field(default_factory=set)          # resume from any version (a broken server)
    drop_after: dict[str, int] = field(default_factory=dict)   # path -> bytes sent before closing, once
    drop_every: dict[str, int] = field(default_factory=dict)   # path -> bytes sent before closing, every answer
    fail_times: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (status, how many times)
    bytes_per_s: float | None = None                            # throttle every file
    trickle_s: dict[str, float] = field(default_factory=dict)   # path -> seconds between single bytes
    stall_after: dict[str, int] = field(default_factory=dict)   # path -> bytes sent before sending nothing more
    lying_416: set[str] = field(default_factory=set)            # a resume is refused: "the file ends right there"
    fails_after: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (answers served, status after)
    redirect_loop: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # (path, Range header, status)
    if_ranges: list[str] = field(default_factory=list)          # the If-Range header of every ranged request
    released: threading.Event = field(default_factory=threading.Event)  # ends stalls and trickles (at exit)

    def version(self, path: str) -> dict[str, str]:
        """ETag and Last-Modified of a file's current content, as a real server sends them."""
        digest = hashlib.sha256(self.files[path]).hexdigest()
        return {"ETag": f'"{digest[:16]}"',
                "Last-Modified": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(int(digest[:6], 16)))}


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
        path = self.path.split("?", 1)[0]
        served, later = b.fails_after.get(path, (None, 0))
        if served is not None and sum(p.split("?", 1)[0] == path for p, _, _ in b.requests) >= served:
            self._answer(later, {"Content-Length": "0"}, rng)
            return
        status, times = b.fail_times.get(path, (0, 0))
        if times:
            b.fail_times[path] = (status, times - 1)
            self._answer(status, {"Content-Length": "0"}, rng)
            return
        if path in b.redirect_loop:
            self._answer(302, {"Location": self.path, "Content-Length": "0"}, rng)
            return
        data = b.files.get(path)
        if data is None:
            self._answer(404, {"Content-Length": "0"}, rng)
            return
        version = b.version(path)
        if rng:
            b.if_ranges.append(self.headers.get("If-Range") or "")
        wanted = self.headers.get("If-Range")
        same = wanted is None or wanted in version.values() or path in b.no_if_range
        start = 0
        if rng and path in b.lying_416:
            claimed = int(rng.split("=")[1].split("-")[0])
            self._answer(416, {"Content-Range": f"bytes */{claimed}", "Content-Length": "0"}, rng)
            return
        if rng and path not in b.no_range and same:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self._answer(416, {"Content-Range": f"bytes */{len(data)}", "Content-Length": "0"}, rng)
                return
            self._answer(206, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}",
                               "Content-Length": str(len(data) - start), "Accept-Ranges": "bytes", **version}, rng)
        else:
            ranges = {} if path in b.no_range else {"Accept-Ranges": "bytes"}
            self._answer(200, {"Content-Length": str(len(data)), **ranges, **version}, rng)
        body = data[start:]
        if path in b.drop_after:
            body = body[:b.drop_after.pop(path)]
            self.close_connection = True
        if path in b.drop_every:
            body = body[:b.drop_every[path]]
            self.close_connection = True
        if path in b.stall_after:
            self._send(body[:b.stall_after[path]])
            b.released.wait(120)           # headers sent, then nothing: a stalled server
            self.close_connection = True
            return
        if path in b.trickle_s:
            self._trickle(body, b.trickle_s[path])
            return
        self._send(body)

    def _trickle(self, body: bytes, every_s: float) -> None:
        try:
            for i in range(len(body)):
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                if self.behaviour.released.wait(every_s):
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

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
        self.behaviour = behaviour
        handler = type("Handler", (_Handler,), {"behaviour": behaviour})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __exit__(self, *exc) -> None:
        self.behaviour.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()
