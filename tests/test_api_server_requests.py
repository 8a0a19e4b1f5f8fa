"""OpenAI request bodies to engine inputs, and the address/key rules: pure functions, no model, no server."""

from __future__ import annotations

import os

import pytest

from api_server import ApiError, ServerStartError, check_address
from api_server.access_guard import AccessGuard, is_loopback
from api_server.openai_requests import DEFAULT_MAX_TOKENS, parse_chat, parse_completion

USER = [{"role": "user", "content": "hi"}]


def refused(parse, body) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse(body)
    assert caught.value.status == 400
    return caught.value


def test_temperature_zero_is_greedy_without_penalty():
    settings = parse_chat({"messages": USER, "temperature": 0}).settings
    assert settings.greedy and settings.repetition_penalty == 1.0
    assert parse_chat({"messages": USER, "top_p": 0}).settings.greedy


def test_defaults_are_the_engines_when_fields_are_absent():
    settings = parse_chat({"messages": USER}).settings
    assert not settings.greedy and settings.temperature == 0.7 and settings.top_p == 0.95
    assert settings.repetition_penalty == 1.1 and settings.max_new_tokens == DEFAULT_MAX_TOKENS
    assert settings.seed is None and settings.stop_strings == ()


def test_sampling_fields_map_onto_the_engines():
    req = parse_chat({"messages": USER, "temperature": 1.3, "top_p": 0.5, "seed": 42, "max_tokens": 7,
                      "max_completion_tokens": 9, "stop": "END", "frequency_penalty": 0.5, "presence_penalty": 0.5,
                      "stream": True, "stream_options": {"include_usage": True}, "user": "ignored", "tools": []})
    s = req.settings
    assert (s.temperature, s.top_p, s.seed, s.max_new_tokens, s.stop_strings) == (1.3, 0.5, 42, 9, ("END",))
    assert s.repetition_penalty == pytest.approx(1.1)
    assert req.stream and req.include_usage and req.kind == "chat"
    assert parse_chat({"messages": USER, "frequency_penalty": -2, "presence_penalty": -2}).settings \
        .repetition_penalty == 0.6
    assert parse_chat({"messages": USER, "seed": -1}).settings.seed is None
    assert parse_chat({"messages": USER, "stop": ["a", "", "b"]}).settings.stop_strings == ("a", "b")


def test_messages_roles_and_content_parts():
    messages = parse_chat({"messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
    ]}).prompt
    assert messages == [{"role": "system", "content": "Be brief."}, {"role": "assistant", "content": ""},
                        {"role": "user", "content": "one\ntwo"}]


@pytest.mark.parametrize("body, param", [
    ({"messages": "hi"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages[0].content[0]"),
    ({"messages": USER, "temperature": "0.5"}, "temperature"),
    ({"messages": USER, "temperature": 3}, "temperature"),
    ({"messages": USER, "max_tokens": 0}, "max_tokens"),
    ({"messages": USER, "max_tokens": True}, "max_tokens"),
    ({"messages": USER, "stream": "yes"}, "stream"),
    ({"messages": USER, "stop": [1]}, "stop"),
    ({"messages": USER, "n": 3}, "n"),
    ({"messages": USER, "logprobs": True}, "logprobs"),
    ({"messages": USER, "seed": 2 ** 64}, "seed"),
])
def test_wrong_chat_fields_are_400s_naming_the_field(body, param):
    error = refused(parse_chat, body)
    assert error.param == param and error.message
    assert set(error.body()["error"]) == {"message", "type", "param", "code"}


def test_completion_prompts():
    assert parse_completion({"prompt": "Once"}).prompt == "Once"
    assert parse_completion({"prompt": ["Once"]}).prompt == "Once"
    assert parse_completion({"prompt": "x", "echo": False, "best_of": 1}).kind == "text"
    for body in ({"prompt": [1, 2, 3]}, {"prompt": ["a", "b"]}, {"prompt": "x", "echo": True},
                 {"prompt": "x", "suffix": "y"}, {}):
        refused(parse_completion, body)


def test_address_rules():
    check_address("127.0.0.1", 8080, None)
    check_address("localhost", 0, None)
    check_address("::1", 8080, None)
    check_address("0.0.0.0", 8080, "a-key-of-16-char")
    check_address("127.0.0.1", 8080, "k")                  # this computer only: the user's own choice
    for host, port, key, needle in (("0.0.0.0", 8080, None, "API key"), ("192.168.1.5", 80, None, "API key"),
                                    ("0.0.0.0", 8080, "k", r"at least 16 characters \(this one has 1\)"),
                                    ("0.0.0.0", 8080, "15-characters-x", "secrets.token_urlsafe"),
                                    ("127.0.0.1", 70000, None, "port"), ("127.0.0.1", 8080, " ", "empty")):
        with pytest.raises(ServerStartError, match=needle):
            check_address(host, port, key)
    assert is_loopback("127.0.0.2") and is_loopback("[::1]") and not is_loopback("example.com")


def test_guard_checks_key_and_host():
    guard = AccessGuard(app=None, api_key="k3y", loopback_only=True)
    ok = {b"host": b"127.0.0.1:8080", b"authorization": b"Bearer k3y"}
    assert guard.refusal(ok) is None
    assert guard.refusal({**ok, b"host": b"localhost:8080"}) is None
    assert guard.refusal({**ok, b"host": b"[::1]:8080"}) is None
    assert guard.refusal({**ok, b"host": b"attacker.example:8080"}).status == 403
    assert guard.refusal({b"host": b"127.0.0.1"}).code == "missing_api_key"
    assert guard.refusal({**ok, b"authorization": b"Bearer k3y-not"}).code == "invalid_api_key"
    assert guard.refusal({**ok, b"authorization": b"Basic k3y"}).status == 401
    assert AccessGuard(None, None, loopback_only=False).refusal({b"host": b"my-pc:8080"}) is None


def test_vllm_top_k_minus_one_means_off():
    assert parse_chat({"messages": USER, "top_k": -1}).settings.top_k == 0
    assert parse_chat({"messages": USER, "top_k": 0}).settings.top_k == 0
    assert parse_chat({"messages": USER, "top_k": 5}).settings.top_k == 5
    assert parse_chat({"messages": USER}).settings.top_k == 40


def test_stop_takes_up_to_four_texts_of_sensible_length():
    assert parse_chat({"messages": USER, "stop": ["a", "b", "c", "d"]}).settings.stop_strings == ("a", "b", "c", "d")
    assert "at most 4" in refused(parse_chat, {"messages": USER, "stop": list("abcde")}).message
    error = refused(parse_chat, {"messages": USER, "stop": ["x" * 201]})
    assert error.param == "stop" and "at most 200 characters" in error.message
    assert parse_completion({"prompt": "x", "stop": "y" * 200}).settings.stop_strings == ("y" * 200,)


@pytest.mark.skipif(os.name != "nt", reason="Windows lets a second program bind a port in use unless it is exclusive")
def test_on_windows_no_other_program_can_bind_the_servers_port():
    import socket

    from api_server import open_listener

    listener = open_listener("127.0.0.1", 0)
    try:
        intruder = socket.socket()
        intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError):
            intruder.bind(listener.getsockname())
        intruder.close()
    finally:
        listener.close()


def test_lookup_field_and_the_servers_default():
    assert parse_chat({"messages": USER}).settings.lookup == "auto"
    assert parse_chat({"messages": USER}, lookup="off").settings.lookup == "off"      # the server's --lookup
    assert parse_chat({"messages": USER, "lookup": "on"}, lookup="off").settings.lookup == "on"
    assert parse_completion({"prompt": "x", "lookup": "off"}).settings.lookup == "off"
    for bad in ("sometimes", 1, True):
        error = refused(parse_chat, {"messages": USER, "lookup": bad})
        assert error.param == "lookup"
