"""``--parallel``: several API clients answered at once, their next tokens computed in the same decode steps.

The real built-in model with four cache slots behind a real server on 127.0.0.1,
asked by the openai client. Each answer must be the one the same request gets
alone; a client that stops reading or leaves must not hold the others up.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

openai = pytest.importorskip("openai")
import api_server  # noqa: E402
from fixtures import free_port  # noqa: E402,F401  (also points LLAMA_DESK_HOME at the test cache)

CONTEXT = 512
QUESTIONS = ["What is the capital of France?", "Name three colours.", "What is 2 + 2?",
             "Write a short greeting for a friend."]


def client(url: str) -> "openai.OpenAI":
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)


def ask(url: str, question: str, max_tokens: int = 24, stream: bool = False) -> str:
    reply = client(url).chat.completions.create(model="any", temperature=0, max_tokens=max_tokens, stream=stream,
                                                messages=[{"role": "user", "content": question}])
    if stream:
        return "".join(ch.choices[0].delta.content or "" for ch in reply if ch.choices)
    return reply.choices[0].message.content


@pytest.fixture(scope="module")
def engine():
    from engine import ExecutorOptions, ModelSource, load_engine

    eng = load_engine(ModelSource(builtin=True), ExecutorOptions(max_seq_len=CONTEXT, parallel=4))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def server(engine):
    with api_server.start_background(engine, port=0, max_waiting=4) as handle:
        yield handle


@pytest.fixture(scope="module")
def alone(server):
    """Each question's greedy answer asked on its own, one after the other."""
    return {q: ask(server.url, q) for q in QUESTIONS}


def _together(url: str, questions, stream_some: bool = True) -> dict:
    start, answers = threading.Barrier(len(questions)), {}

    def one(i: int, question: str) -> None:
        start.wait()
        answers[question] = ask(url, question, stream=stream_some and i % 2 == 0)

    threads = [threading.Thread(target=one, args=(i, q)) for i, q in enumerate(questions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return answers


def test_four_clients_at_once_get_the_answers_each_gets_alone(engine, server, alone):
    assert alone["What is the capital of France?"] == "The capital of France is Paris."  # as with one slot
    scheduler = engine.streams.scheduler
    steps, rows = scheduler.steps, scheduler.rows
    assert _together(server.url, QUESTIONS) == alone
    # the streams really shared their steps: on average well over one row per pass over the weights (one at a time
    # gives 1.0; these answers' lengths allow ~2.17 at best, and a loaded machine costs a few steps of it)
    assert (scheduler.rows - rows) / (scheduler.steps - steps) > 1.5
    status = json.loads(__import__("urllib.request").request.urlopen(server.url.removesuffix("/v1") + "/health")
                        .read())
    assert status["parallel"] == 4 and status["status"] == "ok"


def test_a_client_that_stops_reading_or_leaves_does_not_hold_up_the_others(engine, server, alone):
    port = int(server.url.split(":")[2].split("/")[0])
    body = json.dumps({"messages": [{"role": "user", "content": "Tell me a very long story."}], "max_tokens": 400,
                       "temperature": 0, "stream": True})
    stalled = socket.create_connection(("127.0.0.1", port))   # asks, then never reads a byte
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
    leaving = client(server.url).chat.completions.create(
        model="any", temperature=0, max_tokens=399, stream=True,
        messages=[{"role": "user", "content": "Tell me another long story."}])
    pieces = 0
    for chunk in leaving:
        pieces += bool(chunk.choices and chunk.choices[0].delta.content)
        if pieces == 3:
            break
    leaving.close()
    others = QUESTIONS[:2]
    assert _together(server.url, others) == {q: alone[q] for q in others}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(r.max_tokens == 399 for r in server.queue.finished):
        time.sleep(0.05)
    left = [r for r in server.queue.finished if r.max_tokens == 399]
    assert left and left[-1].client_left and left[-1].finish_reason == "cancelled"
    stalled.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(r.max_tokens == 400 for r in server.queue.finished):
        time.sleep(0.05)
    assert any(r.max_tokens == 400 for r in server.queue.finished)
    assert server.queue.running_count == 0


def test_more_clients_than_slots_wait_their_turn(server, alone):
    questions = QUESTIONS + QUESTIONS[:2]                  # six requests, four slots: two wait
    start, answers = threading.Barrier(len(questions)), []

    def one(question: str) -> None:
        start.wait()
        answers.append((question, ask(server.url, question)))

    threads = [threading.Thread(target=one, args=(q,)) for q in questions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(answers) == sorted((q, alone[q]) for q in questions)


def test_the_engines_own_chat_takes_a_slot_beside_the_api_clients(engine, server, alone):
    """What the desktop app does when it also serves the API: its chat goes through the same slots and steps,
    and its next turn finds the conversation's rows still in its slot."""
    from engine import GenerationSettings

    greedy = GenerationSettings(greedy=True, repetition_penalty=1.0, max_new_tokens=24)   # as the API sends it
    question = QUESTIONS[2]
    own: dict = {}
    app_chat = threading.Thread(target=lambda: own.update(c=engine.chat([{"role": "user", "content": question}],
                                                                          greedy)))
    app_chat.start()
    assert _together(server.url, QUESTIONS[:2]) == {q: alone[q] for q in QUESTIONS[:2]}
    app_chat.join(120)
    assert own["c"].text == alone[question]
    turn = [{"role": "user", "content": question}, {"role": "assistant", "content": own["c"].text},
            {"role": "user", "content": "And 3 + 3?"}]
    again = engine.chat(turn, greedy)
    assert again.stats.cached_tokens >= len(own["c"].prompt_ids) - 1 and again.text
