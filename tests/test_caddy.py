"""The repository's Caddyfile, run by a real Caddy on 127.0.0.1 in front of the test app: HTTPS with
Caddy's local CA, the page compressed, audio and Gradio's queue streamed unbuffered, basic auth."""

import base64
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest_app import ROOT, app_server, free_port  # noqa: F401

pytestmark = pytest.mark.skipif(shutil.which("caddy") is None,
                                reason="caddy is not installed (apt install caddy; CI installs it)")
LONG_TEXT = "今天天气很好，我们一起去公园散步。" * 4


class Caddy:
    def __init__(self, upstreams, tmp, auth_hash=None):
        self.port = free_port()
        self.url = f"https://localhost:{self.port}"
        self.data = tmp / "data"
        env = dict(os.environ, XDG_DATA_HOME=str(self.data), XDG_CONFIG_HOME=str(tmp / "config"),
                   SAMBERT_SITE=self.url, SAMBERT_BIND="127.0.0.1", SAMBERT_HTTP_PORT=str(free_port()),
                   SAMBERT_CADDY_ADMIN=f"127.0.0.1:{free_port()}", SAMBERT_UPSTREAMS=upstreams)
        env.pop("SAMBERT_AUTH_HASH", None)
        if auth_hash:
            env["SAMBERT_AUTH_HASH"] = auth_hash
        self.log = tmp / "caddy.log"
        self.process = subprocess.Popen(["caddy", "run", "--config", str(ROOT / "Caddyfile"), "--adapter", "caddyfile"],
                                        env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        self.context = self._wait()

    def _wait(self):
        root_cert = self.data / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"caddy exited:\n{self.log.read_text()[-3000:]}")
            if root_cert.is_file():
                context = ssl.create_default_context(cafile=str(root_cert))
                try:
                    urllib.request.urlopen(self.url + "/healthz", timeout=5, context=context).close()
                    return context
                except urllib.error.HTTPError:
                    return context  # TLS and proxying work; the status is the test's business
                except (OSError, ssl.SSLError):
                    pass
            time.sleep(0.3)
        self.stop()
        pytest.fail(f"caddy did not serve {self.url}:\n{self.log.read_text()[-3000:]}")

    def open(self, path, data=None, headers=None, timeout=60):
        request = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        return urllib.request.urlopen(request, timeout=timeout, context=self.context)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def caddy(app_server, tmp_path_factory):  # noqa: F811
    proxy = Caddy(f"127.0.0.1:{app_server.port}", tmp_path_factory.mktemp("caddy"))
    yield proxy
    proxy.stop()


def test_the_caddyfile_is_valid(tmp_path):
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))
    done = subprocess.run(["caddy", "validate", "--config", str(ROOT / "Caddyfile"), "--adapter", "caddyfile"],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_page_over_https_with_the_local_ca_and_compressed(caddy):
    with caddy.open("/", headers={"Accept-Encoding": "gzip"}) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/html")
        assert r.headers.get("Content-Encoding") == "gzip"
    with caddy.open("/healthz") as r:
        assert json.load(r)["status"] == "ok"


def test_audio_streams_through_the_proxy_unbuffered_and_uncompressed(caddy):
    body = json.dumps({"input": LONG_TEXT, "response_format": "pcm"}).encode()
    start = time.perf_counter()
    with caddy.open("/v1/audio/speech", body, {"Content-Type": "application/json", "Accept-Encoding": "gzip"}) as r:
        assert "Content-Encoding" not in r.headers
        first = r.read1(4096)
        first_at = time.perf_counter() - start
        with caddy.open("/healthz") as h:
            running_then = json.load(h)["running"]
        rest = r.read()
    total = time.perf_counter() - start
    assert first and len(rest) > 100_000  # seconds of 16-bit audio
    assert running_then == 1, "the first bytes arrived only after synthesis had ended: the proxy buffered"
    assert first_at < total / 2, (first_at, total)


def test_websocket_speech_passes_through_the_proxy(caddy, app_server):  # noqa: F811
    from websockets.sync.client import connect

    url = caddy.url.replace("https://", "wss://") + "/v1/audio/speech/ws"
    with connect(url, ssl=caddy.context, open_timeout=30) as ws:
        ws.send(json.dumps({"type": "config"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        ws.send(json.dumps({"type": "text", "text": "你好。"}))
        first = ws.recv(timeout=60)  # the sentence is spoken before the client says it has ended
        while isinstance(first, str) and json.loads(first)["type"] == "speech.timestamps":
            first = ws.recv(timeout=60)
        assert isinstance(first, bytes) and first
        ws.send(json.dumps({"type": "end"}))
        audio, last = bytearray(first), None
        for message in ws:
            if isinstance(message, bytes):
                audio += message
            else:
                last = json.loads(message)
    assert ws.close_code == 1000 and last["type"] == "done"
    rate = app_server.voices[0]["sample_rate"]
    assert abs(len(audio) / 2 - last["audio_seconds"] * rate) < 3  # audio_seconds is rounded to 0.1 ms


def test_speech_events_stream_through_the_proxy_uncompressed(caddy):
    body = json.dumps({"input": "你好。", "response_format": "pcm", "stream_format": "sse"}).encode()
    with caddy.open("/v1/audio/speech", body, {"Content-Type": "application/json", "Accept-Encoding": "gzip"}) as r:
        assert "Content-Encoding" not in r.headers and r.headers["Content-Type"].startswith("text/event-stream")
        events = [json.loads(block.removeprefix("data: ")) for block in r.read().decode().split("\n\n") if block]
    assert events[0]["type"] == "speech.timestamps" and events[-1]["type"] == "speech.audio.done"


def test_gradio_queue_works_through_the_proxy(caddy, app_server):  # noqa: F811
    gradio_client = pytest.importorskip("gradio_client")
    client = gradio_client.Client(caddy.url, verbose=False, ssl_verify=False)
    voice = app_server.voices[0]
    wav, srt, status = client.predict("你好，世界。", voice["name"], "neutral", None, 1.0, 0.0, 1.0,
                                      api_name="/synthesize")
    assert Path(wav).stat().st_size > 1000 and "RTF" in status


def test_basic_auth_when_a_hash_is_set(app_server, tmp_path):  # noqa: F811
    hashed = subprocess.run(["caddy", "hash-password", "--plaintext", "s3cret"], capture_output=True, text=True,
                            check=True).stdout.strip()
    proxy = Caddy(f"127.0.0.1:{app_server.port}", tmp_path, auth_hash=hashed)
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            proxy.open("/")
        assert refused.value.code == 401
        token = base64.b64encode(b"sambert:s3cret").decode()
        with proxy.open("/", headers={"Authorization": f"Basic {token}"}) as r:
            assert r.status == 200
    finally:
        proxy.stop()


def test_replicas_are_health_checked_and_a_dead_one_gets_no_traffic(app_server, tmp_path):  # noqa: F811
    dead = free_port()  # nothing listens here: a replica that is down
    proxy = Caddy(f"127.0.0.1:{app_server.port} 127.0.0.1:{dead}", tmp_path)
    try:
        for _ in range(12):  # fresh clients (no affinity cookie) would hit the dead replica about half the time
            with proxy.open("/healthz") as r:
                assert r.status == 200
    finally:
        proxy.stop()
