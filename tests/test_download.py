"""The downloader's Python API against a real HTTP server on 127.0.0.1 (tests/download_server.py)."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections import namedtuple
from pathlib import Path

import pytest
import yaml

from checkpoint_download import DownloadCancelled, DownloadError, RetryPolicy, State, download_model, fetch
from checkpoint_download.local_files import DownloadLock
from checkpoint_download.manifest import auth_headers, resolve_url
from download_server import Behaviour, DownloadServer, payload, sha256

FAST = RetryPolicy(first_delay_s=0.01, max_delay_s=0.05, connect_timeout_s=5, read_timeout_s=5)
DATA = payload(3_000_000)
TOKENIZER = payload(200_000, seed=1)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture()
def behaviour():
    return Behaviour(files={"/model.ckpt": DATA, "/tokenizer.model": TOKENIZER})


@pytest.fixture()
def server(behaviour):
    with DownloadServer(behaviour) as url:
        yield url


def write_manifest(path: Path, files: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"models": {"tiny": {"description": "test model", "folder": "unused",
                                                        "files": files}}}), encoding="utf-8")
    return path


class Events(list):
    """A progress callback that keeps every event."""

    def __call__(self, event):
        self.append(event)

    def messages(self, state=None) -> list[str]:
        return [e.message for e in self if e.message and (state is None or e.state == state)]


def get(tmp_path, files, events=None, **kw):
    manifest = write_manifest(tmp_path / "models.yaml", files)
    return download_model("tiny", tmp_path / "out", progress=events, manifest=manifest, retry=FAST, **kw)


def dead_address() -> str:
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/model.ckpt"


def test_model_download_verifies_and_places_every_file(server, tmp_path):
    events = Events()
    paths = get(tmp_path, [
        {"name": "tokenizer.model", "size": len(TOKENIZER), "sha256": sha256(TOKENIZER), "mirrors": [f"{server}/tokenizer.model"]},
        {"name": "model.ckpt", "size": len(DATA), "sha256": sha256(DATA), "mirrors": [f"{server}/model.ckpt"]},
    ], events)
    assert [p.name for p in paths] == ["tokenizer.model", "model.ckpt"]
    assert paths[0].read_bytes() == TOKENIZER and paths[1].read_bytes() == DATA
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.ckpt", "tokenizer.model"]  # no .part
    done = [e for e in events if e.state == State.DONE]
    assert [e.file for e in done] == ["tokenizer.model", "model.ckpt"]
    assert all("size and sha256 match the published checksum" in e.message for e in done)
    assert done[1].done_bytes == done[1].total_bytes == len(DATA)
    assert done[1].mirror_url == f"{server}/model.ckpt"


def test_dropped_connection_is_resumed_with_a_range_request(server, behaviour, tmp_path):
    behaviour.drop_after["/model.ckpt"] = 1_234_567
    events = Events()
    (path,) = get(tmp_path, [{"name": "model.ckpt", "sha256": sha256(DATA), "mirrors": [f"{server}/model.ckpt"]}], events)
    assert path.read_bytes() == DATA
    (first, second) = behaviour.requests
    assert first == ("/model.ckpt", "", 200) and second[2] == 206
    resumed_at = int(second[1].removeprefix("bytes=").removesuffix("-"))
    assert 1_234_567 - 64 * 1024 <= resumed_at <= 1_234_567  # at most the last unfinished read is fetched again
    retry = events.messages(State.RETRYING)
    assert len(retry) == 1 and "connection" in retry[0] and "1.2 MB" in retry[0]
    assert any("resuming at 1.2 MB" in m for m in events.messages(State.DOWNLOADING))


def test_corrupt_download_is_refused_and_moved_aside(server, tmp_path):
    wrong = "0" * 64
    events = Events()
    with pytest.raises(DownloadError) as err:
        get(tmp_path, [{"name": "model.ckpt", "sha256": wrong, "mirrors": [f"{server}/model.ckpt"]}], events)
    message = str(err.value)
    assert "model.ckpt is corrupt" in message and sha256(DATA) in message and wrong in message
    assert "model.ckpt.bad" in message and "\n" not in message
    out = tmp_path / "out"
    assert not (out / "model.ckpt").exists() and not (out / "model.ckpt.part").exists()
    assert (out / "model.ckpt.bad").read_bytes() == DATA
    assert events[-1].state == State.FAILED and events[-1].message == message


def test_damaged_file_on_disk_is_moved_aside_and_downloaded_again(server, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.ckpt").write_bytes(DATA[:-1] + b"\0")  # right size, one byte wrong
    events = Events()
    (path,) = get(tmp_path, [{"name": "model.ckpt", "size": len(DATA), "sha256": sha256(DATA),
                              "mirrors": [f"{server}/model.ckpt"]}], events)
    assert path.read_bytes() == DATA
    assert (out / "model.ckpt.bad").read_bytes() == DATA[:-1] + b"\0"
    assert any("does not match the published checksum" in m and "model.ckpt.bad" in m for m in events.messages())


def test_missing_and_dead_mirrors_fall_over_to_the_next(server, behaviour, tmp_path):
    events = Events()
    (path,) = get(tmp_path, [{"name": "model.ckpt", "sha256": sha256(DATA),
                              "mirrors": [f"{server}/gone/model.ckpt", dead_address(), f"{server}/model.ckpt"]}], events)
    assert path.read_bytes() == DATA
    failed = events.messages(State.MIRROR_FAILED)
    assert len(failed) == 2
    assert "/gone/model.ckpt does not have the file (HTTP 404); trying the next mirror" in failed[0]
    assert "cannot be reached (connection refused) (tried 2 times)" in failed[1]
    assert behaviour.requests[0] == ("/gone/model.ckpt", "", 404)
    assert [e.mirror_url for e in events if e.state == State.DONE] == [f"{server}/model.ckpt"]


def test_busy_server_is_retried_with_growing_delays(server, behaviour, tmp_path):
    behaviour.fail_times["/model.ckpt"] = (503, 2)
    events = Events()
    (path,) = get(tmp_path, [{"name": "model.ckpt", "mirrors": [f"{server}/model.ckpt"]}], events)
    assert path.read_bytes() == DATA
    retry = events.messages(State.RETRYING)
    assert [m.split("trying again in ")[1] for m in retry] == ["0.01 s (try 2 of 5)", "0.02 s (try 3 of 5)"]
    assert "answered HTTP 503" in retry[0]


def test_when_every_mirror_fails_the_error_is_one_line_naming_each(server, tmp_path):
    with pytest.raises(DownloadError) as err:
        get(tmp_path, [{"name": "model.ckpt", "mirrors": [f"{server}/a/model.ckpt", f"{server}/b/model.ckpt"]}])
    message = str(err.value)
    assert message.startswith("Could not download model.ckpt: 127.0.0.1:")
    assert message.count("does not have the file (HTTP 404)") == 2 and "\n" not in message
    assert not (tmp_path / "out" / "model.ckpt.part").exists()  # nothing received, nothing left


DiskUsage = namedtuple("DiskUsage", "total used free")


def test_not_enough_disk_space_is_refused_before_downloading(server, behaviour, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(10**9, 10**9 - 1_000_000, 1_000_000))
    with pytest.raises(DownloadError) as err:
        get(tmp_path, [{"name": "model.ckpt", "size": len(DATA), "mirrors": [f"{server}/model.ckpt"]}])
    assert str(err.value).startswith("Not enough disk space in ")
    assert "it needs 3.0 MB more but only 1.0 MB is free" in str(err.value) and "-o/--dest" in str(err.value)
    assert behaviour.requests == []  # refused before asking any server


def test_not_enough_disk_space_for_a_file_of_unknown_size_uses_content_length(server, behaviour, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(10**9, 10**9 - 1_000_000, 1_000_000))
    events = Events()
    with pytest.raises(DownloadError, match="it needs 3.0 MB more but only 1.0 MB is free") as err:
        get(tmp_path, [{"name": "model.ckpt", "mirrors": [f"{server}/model.ckpt"]}], events)
    assert events[-1].state == State.FAILED and events[-1].message == str(err.value)  # the app's dialog says it too
    assert len(behaviour.requests) == 1
    assert not (tmp_path / "out" / "model.ckpt.part").exists() and not (tmp_path / "out" / "model.ckpt").exists()


def test_server_without_range_support_restarts_from_zero_and_says_so(server, behaviour, tmp_path):
    behaviour.no_range.add("/model.ckpt")
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.ckpt.part").write_bytes(b"x" * 500_000)  # would corrupt the file if appended to
    events = Events()
    (path,) = get(tmp_path, [{"name": "model.ckpt", "mirrors": [f"{server}/model.ckpt"]}], events)
    assert path.read_bytes() == DATA
    assert behaviour.requests == [("/model.ckpt", "bytes=500000-", 200)]
    (restart,) = events.messages(State.RESTARTING)
    assert "does not support resuming (no HTTP Range)" in restart
    assert "the 500.0 kB already received are discarded" in restart and "starts again from zero" in restart


def test_pause_and_cancel_from_another_thread_keep_the_part_file(server, behaviour, tmp_path):
    behaviour.bytes_per_s = 1_000_000
    files = [{"name": "model.ckpt", "size": len(DATA), "sha256": sha256(DATA), "mirrors": [f"{server}/model.ckpt"]}]
    events, progressed = Events(), threading.Event()
    pause, cancel = threading.Event(), threading.Event()

    def on_event(event):
        events(event)
        if event.done_bytes > 300_000:
            progressed.set()

    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(_capture(get, tmp_path, files, on_event,
                                                                     pause=pause, cancel=cancel)))
    worker.start()
    part = tmp_path / "out" / "model.ckpt.part"
    assert progressed.wait(10)
    pause.set()
    _wait_for(lambda: any(e.state == State.PAUSED for e in events))
    held = part.stat().st_size
    time.sleep(0.5)
    assert part.stat().st_size == held and 0 < held < len(DATA)  # no byte is read while paused
    progressed.clear()
    pause.clear()
    _wait_for(lambda: part.stat().st_size > held + 100_000)
    cancel.set()
    worker.join(10)
    assert not worker.is_alive()
    (error,) = outcome
    assert isinstance(error, DownloadCancelled)
    assert "Cancelled model.ckpt: model.ckpt.part keeps the" in str(error) and "run the download again to resume" in str(error)
    kept = part.read_bytes()
    assert held + 100_000 < len(kept) < len(DATA) and kept == DATA[:len(kept)]
    assert not (tmp_path / "out" / "model.ckpt").exists()
    assert any(r == f"bytes={held}-" for _, r, _ in behaviour.requests)  # resumed after the pause
    assert events[-1].state == State.CANCELLED

    behaviour.bytes_per_s = None  # a later run resumes where the cancelled one stopped
    (path,) = get(tmp_path, files)
    assert path.read_bytes() == DATA
    assert behaviour.requests[-1] == ("/model.ckpt", f"bytes={len(kept)}-", 206)


def _capture(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except Exception as exc:  # handed to the test thread
        return exc


def _wait_for(condition, timeout=10.0):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_unknown_hash_is_recorded_and_a_later_tampered_file_is_detected(server, behaviour, tmp_path):
    files = [{"name": "model.ckpt", "mirrors": [f"{server}/model.ckpt"]}]
    events = Events()
    (path,) = get(tmp_path, files, events)
    assert path.read_bytes() == DATA
    record_file = tmp_path / "out" / ".verified.json"
    record = json.loads(record_file.read_text(encoding="utf-8"))["files"]["model.ckpt"]
    assert record["sha256"] == sha256(DATA) and record["size"] == len(DATA)
    assert record["source"] == f"{server}/model.ckpt"
    (done,) = events.messages(State.DONE)
    assert "size checked against the server's Content-Length; no published checksum: recorded sha256 " in done
    assert sha256(DATA) in done and str(record_file) in done

    # A later run checks the file against the record and leaves a good one alone.
    events = Events()
    get(tmp_path, files, events)
    assert len(behaviour.requests) == 1
    assert "sha256 matches the checksum recorded at its first download" in events.messages(State.DONE)[0]

    # Tampered on disk: detected, moved aside, downloaded again and checked against the record.
    path.write_bytes(DATA[:1000] + b"\xff" + DATA[1001:])
    events = Events()
    get(tmp_path, files, events)
    assert path.read_bytes() == DATA
    assert (tmp_path / "out" / "model.ckpt.bad").read_bytes()[1000] == 0xFF
    assert any("does not match the checksum recorded" in m for m in events.messages(State.RESTARTING))
    assert "size and sha256 match the checksum recorded at its first download" in events.messages(State.DONE)[0]

    # The mirror now serves other bytes of the same size: refused, not placed.
    path.unlink()
    behaviour.files["/model.ckpt"] = payload(len(DATA), seed=9)
    with pytest.raises(DownloadError, match="model.ckpt is corrupt: .* but the checksum recorded at its first download"):
        get(tmp_path, files)
    assert not path.exists()


def test_a_file_another_program_is_downloading_is_left_alone(server, behaviour, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with DownloadLock(out / "model.ckpt"):
        with pytest.raises(DownloadError) as err:
            get(tmp_path, [{"name": "model.ckpt", "mirrors": [f"{server}/model.ckpt"]}])
    assert str(err.value) == (f"model.ckpt is already being downloaded into {out} by another program. "
                              "Wait for it to finish, or close it and try again.")
    assert behaviour.requests == []
    (path,) = get(tmp_path, [{"name": "model.ckpt", "mirrors": [f"{server}/model.ckpt"]}])  # freed
    assert path.read_bytes() == DATA and not (out / "model.ckpt.lock").exists()


def test_fetch_one_file_from_mirrors_with_a_checksum(server, tmp_path):
    events = Events()
    path = fetch([f"{server}/nope", f"{server}/tokenizer.model"], tmp_path / "t" / "tok.model",
                 sha256(TOKENIZER), progress=events, retry=FAST)
    assert path == tmp_path / "t" / "tok.model" and path.read_bytes() == TOKENIZER
    assert not (tmp_path / "t" / ".verified.json").exists()  # fetch records nothing
    with pytest.raises(DownloadError, match="not a SHA-256"):
        fetch([f"{server}/tokenizer.model"], tmp_path / "x", "abc", retry=FAST)


def test_hugging_face_addresses_follow_hf_endpoint_and_token(monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    url = resolve_url("hf://meta-llama/Llama-2-7b-chat-hf/tokenizer.model")
    assert url == "https://huggingface.co/meta-llama/Llama-2-7b-chat-hf/resolve/main/tokenizer.model"
    assert auth_headers(url) == {"Authorization": "Bearer hf_secret"}
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.com/")
    url = resolve_url("hf://meta-llama/Meta-Llama-3-8B-Instruct/original/tokenizer.model")
    assert url == "https://hf-mirror.com/meta-llama/Meta-Llama-3-8B-Instruct/resolve/main/original/tokenizer.model"
    assert auth_headers("https://modelscope.cn/models/x/y/resolve/master/z") == {}  # the token goes nowhere else
    with pytest.raises(DownloadError, match="hf://<org>/<repo>/<path"):
        resolve_url("hf://just-a-repo")
