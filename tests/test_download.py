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
    assert second[1] == "bytes=1234567-"  # every byte that arrived was kept: nothing is fetched twice
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


def interrupted_download(tmp_path, files, behaviour, at_least: int) -> bytes:
    """Start a download and cancel it once ``at_least`` bytes arrived (as a user's Cancel): the .part it leaves."""
    behaviour.bytes_per_s, cancel = 1_000_000, threading.Event()

    def on_event(event):
        if event.done_bytes >= at_least and event.state == State.DOWNLOADING:
            cancel.set()

    with pytest.raises(DownloadCancelled):
        get(tmp_path, files, on_event, cancel=cancel)
    behaviour.bytes_per_s = None
    return (tmp_path / "out" / (files[0]["name"] + ".part")).read_bytes()


def test_server_without_range_support_restarts_from_zero_and_says_so(server, behaviour, tmp_path):
    files = [{"name": "model.ckpt", "mirrors": [f"{server}/model.ckpt"]}]
    kept = interrupted_download(tmp_path, files, behaviour, 500_000)
    behaviour.no_range.add("/model.ckpt")
    events = Events()
    (path,) = get(tmp_path, files, events)
    assert path.read_bytes() == DATA
    assert behaviour.requests[-1] == ("/model.ckpt", f"bytes={len(kept)}-", 200)
    (restart,) = events.messages(State.RESTARTING)
    assert "does not support resuming (no HTTP Range)" in restart
    assert f"the {len(kept) / 1e3:.1f} kB already received are discarded" in restart and "starts again from zero" in restart


def test_a_part_file_left_by_something_else_is_not_trusted(server, behaviour, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.ckpt.part").write_bytes(b"x" * 500_000)  # no .part.json: nothing says which file it belongs to
    events = Events()
    (path,) = get(tmp_path, [{"name": "model.ckpt", "mirrors": [f"{server}/model.ckpt"]}], events)
    assert path.read_bytes() == DATA
    assert behaviour.requests == [("/model.ckpt", "", 200)]
    (restart,) = events.messages(State.RESTARTING)
    assert "model.ckpt.part (500.0 kB) was not left by this downloader" in restart and "from zero" in restart


@pytest.mark.parametrize("honours_if_range", [True, False])
def test_a_resume_from_a_mirror_with_another_version_starts_again(server, behaviour, tmp_path, honours_if_range):
    """Two mirrors of one name with different files of the same size: never one file spliced from both."""
    other = payload(len(DATA), seed=9)
    behaviour.files = {"/a/model.ckpt": DATA, "/b/model.ckpt": other}
    behaviour.drop_after["/a/model.ckpt"] = 1_200_000
    behaviour.fails_after["/a/model.ckpt"] = (1, 503)   # then mirror a is down
    if not honours_if_range:
        behaviour.no_if_range.add("/b/model.ckpt")
    events = Events()
    (path,) = get(tmp_path, [{"name": "model.ckpt", "mirrors": [f"{server}/a/model.ckpt", f"{server}/b/model.ckpt"]}],
                  events)
    assert path.read_bytes() == other
    assert behaviour.if_ranges[-1] == behaviour.version("/a/model.ckpt")["ETag"]  # "the rest of a's version"
    first_b = next(r for r in behaviour.requests if r[0] == "/b/model.ckpt")
    assert first_b[1] == "bytes=1200000-"
    if honours_if_range:
        assert first_b[2] == 200
        assert any("has another version of the file" in m for m in events.messages(State.RESTARTING))
    else:
        assert first_b[2] == 206 and behaviour.requests[-1] == ("/b/model.ckpt", "", 200)
        assert any("ETag changed" in m for m in events.messages(State.RETRYING))
    record = json.loads((tmp_path / "out" / ".verified.json").read_text(encoding="utf-8"))["files"]["model.ckpt"]
    assert record["sha256"] == sha256(other)


def test_a_416_that_contradicts_the_announced_size_is_not_a_finished_file(server, behaviour, tmp_path):
    behaviour.drop_after["/model.ckpt"] = 1_400_000
    behaviour.lying_416.add("/model.ckpt")   # "the file ends exactly where you are": it announced 3 MB before
    with pytest.raises(DownloadError) as err:
        get(tmp_path, [{"name": "model.ckpt", "mirrors": [f"{server}/model.ckpt"]}])
    assert "refused to resume at 1,400,000 bytes (HTTP 416, file size 1,400,000) although the file has " \
           f"{len(DATA):,} bytes" in str(err.value)
    out = tmp_path / "out"
    assert not (out / "model.ckpt").exists() and not (out / ".verified.json").exists()
    assert (out / "model.ckpt.part").read_bytes() == DATA[:1_400_000]   # kept for a later resume


def test_a_link_that_breaks_every_40_kb_still_completes(server, behaviour, tmp_path):
    behaviour.drop_every["/model.ckpt"] = 40_000
    (path,) = get(tmp_path, [{"name": "model.ckpt", "sha256": sha256(DATA), "mirrors": [f"{server}/model.ckpt"]}])
    assert path.read_bytes() == DATA
    starts = [int(r.removeprefix("bytes=").removesuffix("-") or 0) for _, r, _ in behaviour.requests]
    assert starts == list(range(0, len(DATA), 40_000))   # each connection's 40 kB kept, none fetched twice


def run_with_deadline(fn, seconds: float):
    """``fn()``'s result (or exception) within ``seconds``; a hang fails the test instead of blocking it."""
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(_capture(fn)), daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(seconds)
    assert outcome, f"still running after {seconds} s"
    return outcome[0], time.monotonic() - started


def test_a_stalled_mirror_is_given_up_after_the_stall_limit(server, behaviour, tmp_path):
    behaviour.files["/stuck/model.ckpt"] = DATA
    behaviour.stall_after["/stuck/model.ckpt"] = 0          # headers, then silence
    policy = RetryPolicy(attempts=50, first_delay_s=0.05, max_delay_s=0.05, connect_timeout_s=5, read_timeout_s=0.4,
                         stall_s=1.5)
    events = Events()
    files = [{"name": "model.ckpt", "sha256": sha256(DATA),
              "mirrors": [f"{server}/stuck/model.ckpt", f"{server}/model.ckpt"]}]
    manifest = write_manifest(tmp_path / "models.yaml", files)
    result, seconds = run_with_deadline(lambda: download_model("tiny", tmp_path / "out", progress=events,
                                                               manifest=manifest, retry=policy), 30)
    assert [p.read_bytes() == DATA for p in result] == [True]
    (failed,) = events.messages(State.MIRROR_FAILED)
    assert "no data within the time limit" in failed and "nothing new arrived for 1.5 s" in failed
    assert seconds < 10   # not 50 tries of 0.4 s each


def test_a_crawling_mirror_is_dropped_for_the_next_one(server, behaviour, tmp_path):
    behaviour.files["/slow/model.ckpt"] = DATA
    behaviour.trickle_s["/slow/model.ckpt"] = 0.05           # 20 bytes per second, never silent for long
    policy = RetryPolicy(attempts=3, first_delay_s=0.01, max_delay_s=0.01, connect_timeout_s=5, read_timeout_s=5,
                         min_speed_bps=10_000, slow_window_s=0.5)
    events = Events()
    manifest = write_manifest(tmp_path / "models.yaml", [{"name": "model.ckpt", "sha256": sha256(DATA), "mirrors": [
        f"{server}/slow/model.ckpt", f"{server}/model.ckpt"]}])
    result, seconds = run_with_deadline(lambda: download_model("tiny", tmp_path / "out", progress=events,
                                                               manifest=manifest, retry=policy), 30)
    assert [p.read_bytes() for p in result] == [DATA]
    (failed,) = events.messages(State.MIRROR_FAILED)
    assert "is too slow (" in failed and " B/s over " in failed and "(tried 3 times)" in failed, failed
    assert seconds < 10


def test_a_redirect_loop_is_named_as_such(server, behaviour, tmp_path):
    behaviour.redirect_loop.add("/loop/model.ckpt")
    with pytest.raises(DownloadError) as err:
        get(tmp_path, [{"name": "model.ckpt", "mirrors": [f"{server}/loop/model.ckpt"]}])
    assert "redirects in a loop" in str(err.value) and "Check the network" not in str(err.value)


def test_the_tail_written_after_the_last_fsync_is_fetched_again(server, behaviour, tmp_path):
    """After a power cut a .part may end in zeros where the last writes never reached the disk."""
    files = [{"name": "model.ckpt", "mirrors": [f"{server}/model.ckpt"]}]
    interrupted_download(tmp_path, files, behaviour, 300_000)     # a clean stop: its .part.json says 'synced'
    part = tmp_path / "out" / "model.ckpt.part"
    synced = len(part.read_bytes())
    with open(part, "r+b") as f:                                  # then a run that wrote on and lost power
        f.seek(synced)
        f.write(DATA[synced:synced + 1_000_000] + bytes(600_000))
    events = Events()
    (path,) = get(tmp_path, files, events)
    assert path.read_bytes() == DATA
    assert behaviour.requests[-1] == ("/model.ckpt", f"bytes={synced}-", 206)
    assert any("may not have reached the disk" in m for m in events.messages())
    record = json.loads((tmp_path / "out" / ".verified.json").read_text(encoding="utf-8"))["files"]["model.ckpt"]
    assert record["sha256"] == sha256(DATA)


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


def test_a_mistyped_checksum_leaves_a_good_file_alone(server, behaviour, tmp_path):
    good = tmp_path / "tok.model"
    good.write_bytes(TOKENIZER)
    typo = sha256(TOKENIZER)[:-1] + ("0" if sha256(TOKENIZER)[-1] != "0" else "1")
    with pytest.raises(DownloadError) as err:
        fetch([f"{server}/tokenizer.model"], good, typo, retry=FAST)
    assert "does not match the checksum you gave" in str(err.value) and typo in str(err.value)
    assert "left as it is" in str(err.value)
    assert good.read_bytes() == TOKENIZER and not (tmp_path / "tok.model.bad").exists()
    assert behaviour.requests == []   # nothing downloaded again


def test_fetch_into_a_folder_names_the_file_without_the_query(server, tmp_path):
    path = fetch([f"{server}/tokenizer.model?download=true&token=abc"], tmp_path, sha256(TOKENIZER), retry=FAST)
    assert path == tmp_path / "tokenizer.model" and path.read_bytes() == TOKENIZER
    with pytest.raises(DownloadError, match="Cannot tell a file name from"):
        fetch([f"{server}/"], tmp_path, retry=FAST)


def test_a_recorded_size_that_the_server_no_longer_has_says_how_to_reset_it(server, behaviour, tmp_path):
    files = [{"name": "model.ckpt", "mirrors": [f"{server}/model.ckpt"]}]
    (path,) = get(tmp_path, files)
    path.unlink()
    newer = payload(len(DATA) + 1000, seed=4)
    behaviour.files["/model.ckpt"] = newer          # the file was updated upstream
    with pytest.raises(DownloadError) as err:
        get(tmp_path, files)
    record_file = tmp_path / "out" / ".verified.json"
    assert "(its size recorded at its first download): not the same file" in str(err.value)
    assert f"remove the entry 'model.ckpt' from {record_file}" in str(err.value)
    record_file.unlink()                            # as the message says
    (path,) = get(tmp_path, files)
    assert path.read_bytes() == newer


def test_a_record_that_cannot_be_written_does_not_fail_a_good_download(server, tmp_path):
    out = tmp_path / "out"
    (out / ".verified.json").mkdir(parents=True)   # in the way (on Windows: a file another program holds)
    events = Events()
    (path,) = get(tmp_path, [{"name": "model.ckpt", "mirrors": [f"{server}/model.ckpt"]}], events)
    assert path.read_bytes() == DATA
    (done,) = events.messages(State.DONE)
    assert "could not be recorded in" in done and sha256(DATA) in done
