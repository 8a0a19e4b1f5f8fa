"""The local API under abuse and at its edges: half-sent and abandoned requests, too many connections, the
largest prompts, and the fields OpenAI's and vLLM's clients send. A real server on 127.0.0.1 over the real
built-in model (loaded once for this file); raw sockets where a client library would hide what is sent."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest

import api_server

CONTEXT = 512


@pytest.fixture(scope="module")
def engine():
    from engine import ExecutorOptions, ModelSource, load_engine

    eng = load_engine(ModelSource(builtin=True), ExecutorOptions(max_seq_len=CONTEXT))
    yield eng
    eng.close()


def port_of(handle) -> int:
    return int(handle.url.split(":")[2].split("/")[0])


def raw(port: int, data: bytes, timeout: float = 30.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(data)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket.timeout if it never does; a reset,
    as when the server closes on bytes it did not read, counts as closed)."""
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def post(port: int, path: str, body: dict | bytes, headers: str = "", timeout: float = 120) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    with raw(port, f"POST /v1{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(data)}\r\nConnection: close\r\n{headers}\r\n".encode() + data,
             timeout) as sock:
        answer = read_until_closed(sock)
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(payload) if payload.startswith(b"{") else {"raw": payload}


def no_tracebacks(caplog) -> None:
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]
    assert "Traceback" not in caplog.text


# -- requests that never arrive ---------------------------------------------------------

def test_half_sent_requests_are_dropped_in_seconds_and_connections_are_capped(engine, caplog):
    caplog.set_level(logging.INFO)
    limits = api_server.ConnectionLimits(request_timeout_s=1.0, max_connections=16)
    with api_server.start_background(engine, port=0, limits=limits) as handle:
        port = port_of(handle)
        started = time.monotonic()
        body = raw(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                         b"\r\nContent-Length: 1000\r\n\r\n{\"messages\": [")                  # a body cut short
        time.sleep(0.2)
        waiting = [raw(port, b"POST /v1/chat/completions HTTP/1.1\r\n") for _ in range(40)]   # a request line only
        answers = [read_until_closed(sock) for sock in waiting + [body]]
        seconds = time.monotonic() - started
        timed_out = [a for a in answers if a.startswith(b"HTTP/1.1 408")]
        refused = [a for a in answers if not a.startswith(b"HTTP/1.1 408")]
        assert all(a in (b"", ) or a.startswith(b"HTTP/1.1 503") for a in refused), refused[:3]
        assert len(timed_out) == 16 and len(refused) == len(answers) - 16   # 16 kept, the others turned away
        assert seconds < 5, seconds                 # closed by the server, not held until the client gives up
        for sock in waiting + [body]:
            sock.close()
        # the server is fine: the next client is answered
        status, answer = post(port, "/completions", {"prompt": "The capital of France is", "max_tokens": 1,
                                                     "temperature": 0})
        assert status == 200 and answer["choices"][0]["text"] == " Paris"
    dropped = [r for r in caplog.records if "did not arrive within 1 s" in r.getMessage()]
    assert len(dropped) == len(timed_out)           # one line per abandoned request
    assert sum("dropped a request: its body did not arrive" in r.getMessage() for r in dropped) == 1
    assert len([r for r in caplog.records if "connection(s) refused" in r.getMessage()]) <= 2
    no_tracebacks(caplog)


# -- the queue ------------------------------------------------------------------------------

def completion_body(max_tokens: int, prompt: str = "Once upon a time") -> dict:
    return {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0}


def test_max_waiting_0_answers_one_at_a_time_instead_of_refusing_everything(engine):
    with api_server.start_background(engine, port=0, max_waiting=0) as handle:
        port = port_of(handle)
        status, answer = post(port, "/completions", completion_body(1, "The capital of France is"))
        assert status == 200 and answer["choices"][0]["text"] == " Paris"     # idle: answered
        running = raw(port, b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(json.dumps(completion_body(200)))
                      + json.dumps(completion_body(200)).encode())
        deadline = time.monotonic() + 30
        while not handle.queue.running and time.monotonic() < deadline:
            time.sleep(0.01)
        status, refused = post(port, "/completions", completion_body(1))
        assert status == 429 and refused["error"]["code"] == "queue_full"    # busy: nobody may wait
        running.close()


def test_retry_after_counts_the_answers_ahead(engine):
    """Four 60-token answers ahead (one running, three waiting): the estimate is their time, not one answer's."""
    with api_server.start_background(engine, port=0, max_waiting=3) as handle:
        port = port_of(handle)
        for _ in range(2):                                   # the pace of this model on this machine, now
            assert post(port, "/completions", completion_body(60))[0] == 200
        body = json.dumps(completion_body(60)).encode()
        request = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + body
        ahead = []
        for n in range(4):
            ahead.append(raw(port, request))
            deadline = time.monotonic() + 30
            while handle.queue.waiting + bool(handle.queue.running) < n + 1 and time.monotonic() < deadline:
                time.sleep(0.01)
        with raw(port, request) as sock:
            answer = read_until_closed(sock)
        refused_at = time.monotonic()
        assert answer.startswith(b"HTTP/1.1 429")
        retry_after = int(next(line.split(b":")[1] for line in answer.split(b"\r\n")
                               if line.lower().startswith(b"retry-after:")))
        for sock in ahead:
            assert read_until_closed(sock).startswith(b"HTTP/1.1 200")
        real_wait = time.monotonic() - refused_at
        assert 0.5 * real_wait <= retry_after <= 2 * real_wait + 1, (retry_after, real_wait)


# -- the largest prompts ------------------------------------------------------------------------

def rss() -> int:
    import psutil
    return psutil.Process().memory_info().rss


def test_megabyte_prompts_are_refused_by_their_length_without_the_work(engine):
    """32 clients sending a 1 MB message each at once (each rightly refused): no tokenizing, little memory,
    and a normal request meanwhile is answered as usual."""
    import threading

    huge = {"messages": [{"role": "user", "content": "hello world " * 87_000}], "max_tokens": 1}
    with api_server.start_background(engine, port=0, max_waiting=40) as handle:
        port = port_of(handle)
        assert post(port, "/completions", completion_body(1, "The capital of France is"))[0] == 200
        baseline, peak, results = rss(), [0], []
        done = threading.Event()

        def watch():
            while not done.wait(0.05):
                peak[0] = max(peak[0], rss())

        def flood():
            results.append(post(port, "/chat/completions", huge))

        watcher = threading.Thread(target=watch)
        watcher.start()
        started = time.monotonic()
        clients = [threading.Thread(target=flood) for _ in range(32)]
        for client in clients:
            client.start()
        status, normal = post(port, "/completions", completion_body(1, "The capital of France is"))
        for client in clients:
            client.join(120)
        seconds = time.monotonic() - started
        done.set()
        watcher.join()
    assert status == 200 and normal["choices"][0]["text"] == " Paris"
    assert len(results) == 32 and all(s == 400 and b["error"]["code"] == "context_length_exceeded"
                                      for s, b in results), results[:2]
    assert "bytes of text are at least" in results[0][1]["error"]["message"]
    assert seconds < 15, seconds                     # tokenizing them would take ~1.4 s each on 2 cores
    assert peak[0] - baseline < 300e6, (baseline, peak[0])   # 32 tokenizations would take GBs


@pytest.fixture()
def server_process(tmp_path):
    """``run_model.py --builtin --serve`` in its own process: whatever a request leaves running dies with it."""
    import os
    import subprocess
    import sys

    from fixtures import ROOT

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = tmp_path / "server.log"
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "run_model.py"), "--builtin", "--serve", "--port", str(port),
                                 "--max-seq-len", str(CONTEXT)], stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONIOENCODING="utf-8", GLOG_v="3"), cwd=ROOT)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, log_path.read_text(encoding="utf-8")[-3000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        yield port, log_path
    finally:
        proc.kill()
        proc.wait(30)


def test_the_largest_accepted_conversation_is_answered_in_seconds_without_holding_the_engine(server_process):
    """~33,000 one-letter messages (just under the 1 MB body limit): the oldest turns are left out in a second or
    two more than a prompt of the same length takes, and a client asking something short meanwhile is not kept
    waiting behind that work."""
    import threading

    port, _ = server_process

    def body(n: int) -> bytes:
        messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": "abcdefghij"[i % 10]}
                    for i in range(n)]
        return json.dumps({"messages": messages, "max_tokens": 1, "temperature": 0}, separators=(",", ":")).encode()

    each = (len(body(1001)) - len(body(1))) / 1000
    n = int((api_server.app.MAX_BODY_BYTES - len(body(1))) / each) // 2 * 2 + 1   # odd: it ends on a user message
    while len(body(n)) > api_server.app.MAX_BODY_BYTES:
        n -= 2
    big = body(n)
    assert n > 30_000
    outcome = {}

    def ask_big():
        started = time.monotonic()
        try:
            outcome["big"] = post(port, "/chat/completions", big, timeout=15) + (time.monotonic() - started,)
        except OSError as exc:
            outcome["big"] = repr(exc), {}, time.monotonic() - started

    asker = threading.Thread(target=ask_big)
    asker.start()
    time.sleep(0.3)
    started = time.monotonic()
    status, small = post(port, "/completions", completion_body(1, "The capital of France is"), timeout=15)
    small_seconds = time.monotonic() - started
    asker.join(25)
    big_status, answer, big_seconds = outcome["big"]
    assert big_status == 200, outcome
    assert status == 200 and small["choices"][0]["text"] == " Paris", (status, small)
    # what the same number of prompt tokens costs by itself (its prefill must hold the engine; the trimming not)
    tokens = answer["usage"]["prompt_tokens"]
    started = time.monotonic()
    assert post(port, "/completions", completion_body(1, "x" + " x" * (tokens - 2)), timeout=60)[0] == 200
    alone = time.monotonic() - started
    assert big_seconds <= alone + 2.5 and small_seconds <= alone + 2.5, (big_seconds, small_seconds, alone)


def test_a_key_sent_in_the_query_string_never_reaches_the_log(server_process):
    port, log_path = server_process
    with raw(port, b"GET /v1/models?api_key=sk-NEVER-LOG-ME&x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Connection: close\r\n\r\n") as sock:
        assert read_until_closed(sock).startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 10
    while "GET /v1/models" not in log_path.read_text(encoding="utf-8") and time.monotonic() < deadline:
        time.sleep(0.1)
    log = log_path.read_text(encoding="utf-8")
    assert '"GET /v1/models?[query not logged] HTTP/1.1" 200' in log and "NEVER-LOG-ME" not in log


# -- what clients send -----------------------------------------------------------------------

def test_with_include_usage_every_chunk_carries_usage_null_but_the_last(engine):
    with api_server.start_background(engine, port=0) as handle:
        status, answer = post(port_of(handle), "/chat/completions", {
            "messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 5,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}})
    assert status == 200
    events = [line[len(b"data: "):] for line in answer["raw"].split(b"\n") if line.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) >= 3 and all("usage" in c for c in chunks)
    assert all(c["usage"] is None for c in chunks[:-1]) and chunks[-1]["usage"]["completion_tokens"] == 5
    assert chunks[-1]["choices"] == []
