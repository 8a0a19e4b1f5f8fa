"""The README's recipe for more users than one PC serves: two ``run_model.py --serve`` instances behind nginx.

``configs/gateway/nginx.conf`` runs as shipped, its ports swapped for free ones,
in front of two real instances of the built-in model on loopback (as two PCs
would be, with an API key and ``--max-waiting 0``). Checked: ``/health`` through
the gateway, both instances answering (least connections spreads two streams at
once), and a stopped instance not stopping the service. Skipped, saying so,
where nginx is not installed (``.ci/run`` installs Debian's ``nginx-light``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from fixtures import ROOT, free_port

openai = pytest.importorskip("openai")
KEY = "gateway-test-key-0123456789abcdef"
QUESTION = "What is the capital of France?"


def _health(base: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(base + "/health", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _wait_healthy(base: str, proc: subprocess.Popen, log, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{base} exited: {log.read_text(encoding='utf-8')[-2000:]}")
        try:
            if _health(base)[0] == 200:
                return
        except OSError:
            pass                           # not listening yet: still loading the model
        time.sleep(0.3)
    pytest.fail(f"{base} did not become healthy: {log.read_text(encoding='utf-8')[-2000:]}")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """(gateway URL, [(process, log path, port)] of the two instances); everything stopped afterwards."""
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    if nginx is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light; .ci/run installs it)")
    folder = tmp_path_factory.mktemp("gateway")
    env = dict(os.environ, PYTHONIOENCODING="utf-8", GLOG_v="3")
    instances, procs = [], []
    try:
        for n in range(2):
            port, log = free_port(), folder / f"instance{n}.log"
            with open(log, "w", encoding="utf-8") as out:
                proc = subprocess.Popen([sys.executable, str(ROOT / "run_model.py"), "--builtin", "--serve",
                                         "--port", str(port), "--api-key", KEY, "--max-waiting", "0",
                                         "--max-seq-len", "256"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                        cwd=ROOT)
            procs.append(proc)
            instances.append((proc, log, port))
        for proc, log, port in instances:
            _wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        listen = free_port()
        conf = (ROOT / "configs" / "gateway" / "nginx.conf").read_text(encoding="utf-8")
        for old, new in (("127.0.0.1:8081", f"127.0.0.1:{instances[0][2]}"),
                         ("127.0.0.1:8082", f"127.0.0.1:{instances[1][2]}"),
                         ("listen 127.0.0.1:8080", f"listen 127.0.0.1:{listen}")):
            assert old in conf
            conf = conf.replace(old, new)
        (folder / "nginx.conf").write_text(conf, encoding="utf-8")
        nginx_log = folder / "nginx.log"
        with open(nginx_log, "w", encoding="utf-8") as out:
            proxy = subprocess.Popen([nginx, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", "stderr",
                                      "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT)
        procs.append(proxy)
        _wait_healthy(f"http://127.0.0.1:{listen}", proxy, nginx_log, timeout=30)
        yield f"http://127.0.0.1:{listen}", instances
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _ask(base: str, max_tokens: int = 12, stream: bool = False):
    c = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0, timeout=120)
    answer = c.chat.completions.create(model="SmolLM2-135M-Instruct", temperature=0, max_tokens=max_tokens,
                                       messages=[{"role": "user", "content": QUESTION}], stream=stream)
    if not stream:
        return answer.choices[0].message.content
    return "".join(chunk.choices[0].delta.content or "" for chunk in answer if chunk.choices)


def test_two_instances_behind_nginx_share_the_users(gateway):
    base, instances = gateway
    status, body = _health(base)
    assert status == 200 and body["model"] == "SmolLM2-135M-Instruct"
    assert _ask(base) == "The capital of France is Paris."
    # two streams at once: least_conn sends each to the instance with fewer (or a 429, retried, spreads them)
    answers: list[str] = []
    threads = [threading.Thread(target=lambda: answers.append(_ask(base, max_tokens=40, stream=True)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert len(answers) == 2 and answers[0] == answers[1] and answers[0].startswith("The capital of France is Paris")
    logs = [log.read_text(encoding="utf-8") for _, log, _ in instances]
    assert all("POST /v1/chat/completions" in text for text in logs), "one instance got every request"


def test_a_stopped_instance_does_not_stop_the_service(gateway):
    base, instances = gateway
    proc = instances[0][0]
    proc.terminate()
    proc.wait(30)
    for _ in range(3):                       # whichever instance nginx tries first, the answer comes
        assert _ask(base) == "The capital of France is Paris."
    assert _health(base)[0] == 200
