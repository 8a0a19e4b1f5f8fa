"""The OpenAI-compatible server, end to end: the official ``openai`` client against a real server on
127.0.0.1 serving the real built-in model (loaded once for this file).

``run_model.py --builtin --serve`` starts in a subprocess at the same time as
the in-process model loads (both spend most of a minute compiling), and is
asked a question by the last test. Answers are greedy and short.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")
import api_server  # noqa: E402
import run_model  # noqa: E402
from fixtures import ROOT, free_port  # noqa: E402  (also points LLAMA_DESK_HOME at the test cache)

QUESTION = "What is the capital of France?"
ANSWER = "The capital of France is Paris."
CONTEXT = 512                 # small context: faster graph compilation, and an easy "too long" prompt
LOAD_REQUESTS = int(os.environ.get("LLAMA_DESK_LOAD_REQUESTS", "30"))   # 50+ for a longer measurement
LOAD_THREADS = 5
LOAD_PROMPTS = {"The capital of France is": " Paris", "The capital of Germany is": " Berlin",
                "The capital of Japan is": " Tokyo"}


def client(url: str, key: str = "unused", timeout: float = 120) -> "openai.OpenAI":
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=timeout)


def ask(c, content=QUESTION, max_tokens=12, **kw):
    return c.chat.completions.create(model=kw.pop("model", "SmolLM2-135M-Instruct"), temperature=0,
                                     max_tokens=max_tokens, messages=[{"role": "user", "content": content}], **kw)


def health(url: str) -> tuple[int, dict]:
    """(status, JSON body) of ``GET /health`` (outside /v1, without any key: what a gateway's check sends)."""
    with urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=30) as response:
        return response.status, json.loads(response.read())


def raw_post(url: str, path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict, dict]:
    """(status, headers, JSON body) of one POST, without any client library's own checks."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    conn.request("POST", "/v1" + path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), json.loads(data)


def assert_openai_error(body: dict, code: str | None = None, param: str | None = None) -> None:
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    if code:
        assert body["error"]["code"] == code, body
    if param:
        assert body["error"]["param"] == param, body


# -- fixtures -----------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_server(tmp_path_factory):
    """``run_model.py --builtin --serve`` as a user starts it, output in a file (a pipe could fill up)."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("cli_server") / "server.log"
    env = dict(os.environ, PYTHONIOENCODING="utf-8", GLOG_v="3")
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "run_model.py"), "--builtin", "--serve", "--port",
                                 str(port), "--max-seq-len", "256"], stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=ROOT)
    yield proc, f"http://127.0.0.1:{port}/v1", log_path
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)


@pytest.fixture(scope="module")
def engine(request):
    from engine import ExecutorOptions, ModelSource, load_engine

    if any("cli_server" in item.fixturenames for item in request.session.items):
        request.getfixturevalue("cli_server")   # start it first: it loads while we load
    eng = load_engine(ModelSource(builtin=True), ExecutorOptions(max_seq_len=CONTEXT))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def server(engine):
    with api_server.start_background(engine, port=0) as handle:
        yield handle


@pytest.fixture(scope="module")
def france(server):
    """The non-streamed greedy answer, asked once and compared with by several tests."""
    return ask(client(server.url))


# -- answers ------------------------------------------------------------------

def test_models_lists_the_loaded_model(server):
    models = client(server.url).models.list()
    assert [m.id for m in models.data] == ["SmolLM2-135M-Instruct"]
    assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/v1")


def test_chat_answers_paris(france):
    choice = france.choices[0]
    assert choice.message.content == ANSWER
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert france.object == "chat.completion" and france.model == "SmolLM2-135M-Instruct"
    assert france.usage.completion_tokens == 7 and france.usage.prompt_tokens > 10
    assert france.usage.total_tokens == france.usage.prompt_tokens + france.usage.completion_tokens


def test_streaming_yields_the_same_text(server, france):
    stream = ask(client(server.url), stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == france.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == france.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


def test_content_parts_and_no_model_field(server):
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}], "temperature": 0,
            "max_tokens": 12}
    status, _, answer = raw_post(server.url, "/chat/completions", json.dumps(body).encode())
    assert status == 200, answer
    assert answer["choices"][0]["message"]["content"] == ANSWER


def test_raw_completion_continues_text(server):
    result = client(server.url).completions.create(model="SmolLM2-135M-Instruct", prompt="The capital of France is",
                                                   max_tokens=1, temperature=0)
    assert result.object == "text_completion"
    assert result.choices[0].text == " Paris" and result.choices[0].finish_reason == "length"
    assert result.usage.completion_tokens == 1


def test_lookup_decoding_gives_the_same_answers(server):
    """The ``lookup`` request field (our extension; the openai client sends it in ``extra_body``)."""
    quote = ("Quote the following sentence exactly, then say who built it.\n\nThe Great Wall of China is a series "
             "of fortifications built across the historical northern borders of ancient Chinese states.")
    c = client(server.url)
    off = ask(c, quote, max_tokens=40, extra_body={"lookup": "off"}).choices[0].message.content
    assert ask(c, quote, max_tokens=40, extra_body={"lookup": "on"}).choices[0].message.content == off
    chunks = ask(c, quote, max_tokens=40, stream=True, extra_body={"lookup": "on"})
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == off
    status, _, answer = raw_post(server.url, "/chat/completions", json.dumps(
        {"messages": [{"role": "user", "content": quote}], "lookup": "maybe"}).encode())
    assert status == 400 and answer["error"]["param"] == "lookup" and "'auto', 'on', 'off'" in answer["error"]["message"]


def test_stop_string_and_length_finish(server):
    c = client(server.url)
    cut = ask(c, stop=[" is"])
    assert cut.choices[0].message.content == "The capital of France" and cut.choices[0].finish_reason == "stop"
    short = ask(c, max_tokens=3)
    assert short.choices[0].message.content == "The capital of" and short.choices[0].finish_reason == "length"


def _chat(url, messages, max_tokens=8):
    body = {"messages": messages, "temperature": 0, "max_tokens": max_tokens}
    status, headers, answer = raw_post(url, "/chat/completions", json.dumps(body).encode())
    assert status == 200, answer
    return {k.lower(): v for k, v in headers.items()}, answer


SEA = "Tell me about the sea. " + " ".join(["The sea is wide, deep and blue, and full of fish."] * 6)
HILLS = "Tell me about the hills. " + " ".join(["The hills are green, quiet and old, with sheep."] * 6)


def test_a_continued_conversation_reports_its_cached_tokens(server):
    first = [{"role": "user", "content": SEA}]
    headers, one = _chat(server.url, first)
    assert headers["x-context-dropped-messages"] == "0"
    second = first + [{"role": "assistant", "content": one["choices"][0]["message"]["content"]},
                      {"role": "user", "content": "And the rivers?"}]
    _, two = _chat(server.url, second)
    usage = two["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] >= one["usage"]["prompt_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] < usage["prompt_tokens"]


def test_clients_taking_turns_get_their_prompts_back_from_memory(server, engine):
    """A, then B (another conversation), then A again: A's rows come back from a memory slot, not recomputed,
    and the answer is the one a fresh computation gives."""
    a = [{"role": "user", "content": SEA}]
    _, first = _chat(server.url, a)
    _chat(server.url, [{"role": "user", "content": HILLS}])
    a_again = a + [{"role": "assistant", "content": first["choices"][0]["message"]["content"]},
                   {"role": "user", "content": "Why is it salty?"}]
    _, again = _chat(server.url, a_again)
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] >= first["usage"]["prompt_tokens"] - 1
    engine.reset_cache()                          # forgets the cache and the slots: everything is computed
    _, fresh = _chat(server.url, a_again)
    assert fresh["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert fresh["choices"][0]["message"]["content"] == again["choices"][0]["message"]["content"]


def test_a_conversation_longer_than_the_context_says_how_many_messages_were_left_out(server):
    messages = []
    for i in range(6):
        messages += [{"role": "user", "content": f"{i}: {SEA}"}, {"role": "assistant", "content": f"{i}: {HILLS}"}]
    messages.append({"role": "user", "content": "Summarise."})
    headers, answer = _chat(server.url, messages, max_tokens=4)
    dropped = int(headers["x-context-dropped-messages"])
    assert dropped >= 2 and dropped % 2 == 0
    assert answer["usage"]["prompt_tokens"] <= CONTEXT


def test_two_clients_at_once_both_get_their_answers(server):
    questions = {"What is the capital of France?": "The capital of France is Paris.",
                 "What is the capital of Germany?": "The capital of Germany is Berlin."}
    start, answers = threading.Barrier(len(questions)), {}

    def one(question: str, stream: bool) -> None:
        c = client(server.url)
        start.wait()
        if stream:
            answers[question] = "".join(ch.choices[0].delta.content or "" for ch in ask(c, question, stream=True))
        else:
            answers[question] = ask(c, question).choices[0].message.content

    threads = [threading.Thread(target=one, args=(q, i == 0)) for i, q in enumerate(questions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert answers == questions


# -- clients that leave, a full queue -------------------------------------------

def _record_of(handle, max_tokens: int, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in list(handle.queue.finished) if r.max_tokens == max_tokens]
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no finished job with max_tokens={max_tokens}: {list(handle.queue.finished)}")


def test_a_client_leaving_mid_stream_stops_its_generation(server):
    c = client(server.url)
    stream = ask(c, "Tell me a long story about a dragon.", max_tokens=2000, stream=True)
    pieces = 0
    for chunk in stream:
        pieces += bool(chunk.choices and chunk.choices[0].delta.content)
        if pieces == 3:
            break
    stream.close()
    started = time.monotonic()
    assert ask(c).choices[0].message.content == ANSWER
    assert time.monotonic() - started < 15   # 2000 tokens would take far longer than that here
    record = _record_of(server, 2000)
    assert record.client_left and record.finish_reason == "cancelled"
    assert 3 <= record.generated_tokens < 200, record


def test_a_client_leaving_a_whole_answer_stops_it_too(server):
    body = json.dumps({"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 1999,
                       "temperature": 0.9, "seed": 7})
    sock = socket.create_connection(("127.0.0.1", int(server.url.split(":")[2].split("/")[0])))
    sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
    time.sleep(1.0)
    sock.close()
    record = _record_of(server, 1999, timeout=60)
    # stopped by the departure (not by its length or an end of turn), long before 1999 tokens
    assert record.client_left and record.finish_reason == "cancelled" and record.generated_tokens < 1000, record


def test_full_queue_answers_429_with_retry_after(engine):
    with api_server.start_background(engine, port=0, max_waiting=1) as handle:
        c = client(handle.url)
        running = ask(c, "Tell me a long story.", max_tokens=100, stream=True)
        next(iter(running))                       # the role chunk: the job is queued or running

        def wait_for(n: int) -> None:
            deadline = time.monotonic() + 30
            while handle.queue.waiting != n and time.monotonic() < deadline:
                time.sleep(0.02)
            assert handle.queue.waiting == n

        wait_for(0)                               # the first job is running
        assert health(handle.url) == (200, {"status": "ok", "model": "SmolLM2-135M-Instruct", "running": True,
                                            "waiting": 0, "max_waiting": 1, "parallel": 1})
        waiting: dict = {}
        waiter = threading.Thread(target=lambda: waiting.update(r=ask(client(handle.url), max_tokens=1)))
        waiter.start()
        wait_for(1)
        with pytest.raises(urllib.error.HTTPError) as full:  # a gateway sends the next request elsewhere
            health(handle.url)
        assert full.value.code == 503 and json.loads(full.value.read())["status"] == "busy"
        with pytest.raises(openai.RateLimitError) as refused:
            ask(c, max_tokens=1)
        assert refused.value.status_code == 429
        assert int(refused.value.response.headers["retry-after"]) >= 1
        assert_openai_error({"error": refused.value.body}, code="queue_full")
        running.close()
        waiter.join(60)
        assert waiting["r"].choices[0].message.content == "The"
        assert health(handle.url)[0] == 200


# -- refusals -------------------------------------------------------------------

def test_bad_requests_get_openai_errors_and_the_server_goes_on(server):
    c, url = client(server.url), server.url
    status, _, body = raw_post(url, "/chat/completions", b'{"messages": [')
    assert status == 400
    assert_openai_error(body, code="invalid_json")
    status, _, body = raw_post(url, "/chat/completions", b'["not", "an", "object"]')
    assert status == 400
    assert_openai_error(body)
    for wrong, param in (({"temperature": "hot"}, "temperature"), ({"max_tokens": "ten"}, "max_tokens"),
                         ({"stop": 5}, "stop"), ({"n": 2}, "n"), ({"top_p": 1.5}, "top_p")):
        with pytest.raises(openai.BadRequestError) as bad:
            ask(c, extra_body=wrong)
        assert bad.value.status_code == 400 and bad.value.body["param"] == param, bad.value.body
    status, _, body = raw_post(url, "/chat/completions", json.dumps({"messages": "hello"}).encode())
    assert status == 400
    assert_openai_error(body, param="messages")
    status, _, body = raw_post(url, "/chat/completions", b'{"messages": []}', {"Content-Type": "text/plain"})
    assert status == 415
    assert_openai_error(body)
    other_name = ask(c, model="gpt-4o", max_tokens=1)            # the one loaded model answers to any name
    assert other_name.model == "SmolLM2-135M-Instruct" and other_name.choices[0].message.content == "The"
    with pytest.raises(openai.NotFoundError) as unknown:
        c.models.retrieve("gpt-4o")                                # but only it is listed
    assert unknown.value.body["code"] == "model_not_found" and "SmolLM2-135M-Instruct" in unknown.value.body["message"]
    with pytest.raises(openai.APIStatusError) as huge:
        ask(c, "x" * 2_000_000)
    assert huge.value.status_code == 413 and huge.value.body["code"] == "request_too_large"
    with pytest.raises(openai.BadRequestError) as long_prompt:
        ask(c, "hello " * (CONTEXT * 2))
    assert long_prompt.value.body["code"] == "context_length_exceeded", long_prompt.value.body
    assert "too long" in long_prompt.value.body["message"]
    with pytest.raises(openai.BadRequestError) as long_text:
        c.completions.create(model="SmolLM2-135M-Instruct", prompt="hello " * (CONTEXT * 2), max_tokens=1)
    assert long_text.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError) as no_route:
        c.get("/nothing/here", cast_to=object)
    assert no_route.value.body["code"] == "not_found"
    # still serving
    assert ask(c, max_tokens=1).choices[0].message.content == "The"


def test_api_key_is_required_when_set(engine):
    with api_server.start_background(engine, port=0, api_key="s3cret-key") as handle:
        for key, code in ((None, "missing_api_key"), ("wrong-key", "invalid_api_key")):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            status, _, body = raw_post(handle.url, "/chat/completions", b'{"messages": []}', headers)
            assert status == 401
            assert_openai_error(body, code=code)
        with pytest.raises(openai.AuthenticationError):
            client(handle.url, "wrong-key").models.list()
        assert health(handle.url)[0] == 200          # a gateway's health check has no key
        assert [m.id for m in client(handle.url, "s3cret-key").models.list().data] == ["SmolLM2-135M-Instruct"]
        answer = client(handle.url, "s3cret-key").completions.create(
            model="SmolLM2-135M-Instruct", prompt="The capital of France is", max_tokens=1, temperature=0)
        assert answer.choices[0].text == " Paris"


def test_pages_naming_another_host_are_refused_and_no_cors_headers(server):
    status, headers, body = raw_post(server.url, "/chat/completions", b"{}", {"Host": "evil.example"})
    assert status == 403
    assert_openai_error(body, code="host_not_allowed")
    status, headers, body = raw_post(server.url, "/chat/completions", b"{}", {"Origin": "http://evil.example"})
    assert status == 400 and not any(h.lower().startswith("access-control") for h in headers)


def test_refuses_a_network_address_without_a_key_and_a_port_in_use(engine, capsys):
    with pytest.raises(api_server.ServerStartError, match="API key"):
        api_server.start_background(engine, host="0.0.0.0", port=0)
    assert run_model.main(["--builtin", "--serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "API key" in err and "Traceback" not in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(api_server.ServerStartError, match="already in use"):
            api_server.start_background(engine, port=port)
        assert run_model.main(["--builtin", "--serve", "--port", str(port)]) == 2
        assert "already in use" in capsys.readouterr().err


# -- load, and the command line -------------------------------------------------

def test_bounded_load_every_request_answered(server):
    prompts = list(LOAD_PROMPTS)
    results, errors = [], []

    def worker(n: int) -> None:
        c = client(server.url)
        for i in range(n, LOAD_REQUESTS, LOAD_THREADS):
            prompt = prompts[i % len(prompts)]
            try:
                r = c.completions.create(model="SmolLM2-135M-Instruct", prompt=prompt, max_tokens=1, temperature=0)
                results.append((prompt, r.choices[0].text, r.choices[0].finish_reason))
            except openai.APIError as exc:
                errors.append(repr(exc))

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(LOAD_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    seconds = time.perf_counter() - started
    print(f"\nload: {LOAD_REQUESTS} requests from {LOAD_THREADS} threads in {seconds:.1f} s = "
          f"{LOAD_REQUESTS / seconds:.2f} requests/s")
    assert errors == []
    assert len(results) == LOAD_REQUESTS
    assert all(text == LOAD_PROMPTS[p] and finish == "length" for p, text, finish in results), results


def test_run_model_serve_answers_then_stops_on_ctrl_c(cli_server):
    proc, url, log_path = cli_server
    deadline = time.monotonic() + 300
    while True:
        assert proc.poll() is None, log_path.read_text(encoding="utf-8")[-3000:]
        try:
            models = client(url, timeout=5).models.list()
            break
        except openai.APIConnectionError:
            assert time.monotonic() < deadline, "run_model.py --serve did not start in 300 s"
            time.sleep(0.5)
    assert [m.id for m in models.data] == ["SmolLM2-135M-Instruct"]
    assert ask(client(url)).choices[0].message.content == ANSWER
    if os.name == "nt":
        proc.terminate()
        return
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    log = Path(log_path).read_text(encoding="utf-8")
    assert "Traceback" not in log and "Serving SmolLM2-135M-Instruct at " + url in log
