"""The downloader against a real HTTP server on 127.0.0.1 that honours Range and can drop connections."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from checkpoint_download.download import DownloadError, download

PAYLOAD = bytes(range(256)) * 40_000  # ~10 MB


class _Handler(http.server.BaseHTTPRequestHandler):
    served: list[tuple[str, int]] = []
    drop_after: int | None = None

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path != "/model.ckpt":
            self.send_error(404, "Not Found")
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if _Handler.drop_after is not None:
            body = body[:_Handler.drop_after]
            _Handler.drop_after = None
        self.wfile.write(body)
        _Handler.served.append((rng or "", len(body)))


@pytest.fixture()
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.served = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_with_checksum(server, tmp_path):
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    path = download(f"{server}/model.ckpt", tmp_path / "model.ckpt", sha)
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "model.ckpt.part").exists()


def test_interrupted_download_resumes_where_it_stopped(server, tmp_path):
    _Handler.drop_after = 3_000_000
    with pytest.raises(DownloadError, match="Run the script again to resume"):
        download(f"{server}/model.ckpt", tmp_path / "model.ckpt", timeout=10)
    part = tmp_path / "model.ckpt.part"
    assert part.stat().st_size == 3_000_000 and not (tmp_path / "model.ckpt").exists()
    download(f"{server}/model.ckpt", tmp_path / "model.ckpt", hashlib.sha256(PAYLOAD).hexdigest())
    assert (tmp_path / "model.ckpt").read_bytes() == PAYLOAD
    assert _Handler.served[-1] == ("bytes=3000000-", len(PAYLOAD) - 3_000_000)  # only the rest was sent


def test_checksum_mismatch_keeps_nothing_that_looks_like_a_checkpoint(server, tmp_path):
    with pytest.raises(DownloadError, match="corrupt"):
        download(f"{server}/model.ckpt", tmp_path / "model.ckpt", "0" * 64)
    assert not (tmp_path / "model.ckpt").exists()
    assert (tmp_path / "model.ckpt.bad").exists()


def test_missing_file_and_unreachable_server_give_clear_errors(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{server}/nope.ckpt", tmp_path / "nope.ckpt")
    with pytest.raises(DownloadError, match="Cannot reach"):
        download("http://127.0.0.1:9/model.ckpt", tmp_path / "x.ckpt", timeout=5)
