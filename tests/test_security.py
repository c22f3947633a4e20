"""What a public app must not do: serve files it should not (Gradio's file, static and upload routes, with
../, %2e%2e and absolute paths), start half-broken (a missing or corrupt voice gives one clear message and
a non-zero exit), let one client flood the speech API (per-client rate limit), or lose a request to a CUDA
out-of-memory (injected with SAMBERT_INJECT_OOM; the engine's fallback finishes it, through the app)."""

import http.client
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from conftest_app import FIXTURE, ROOT, app_server, build_fixture_voice, start_server, stop_server  # noqa: F401

TEXT = "你好，欢迎使用语音合成服务。"
# Ways to name a file outside what Gradio may serve; {t} is the target (absolute), {tmp} Gradio's temp folder.
ROUTES = [
    "/gradio_api/file={t}",
    "/gradio_api/file={q}",  # the path %-encoded, slashes included
    "/gradio_api/file=file://{t}",
    "/gradio_api/file=../../../../../../..{t}",
    "/gradio_api/file=%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e{t}",
    "/gradio_api/file={tmp}/../../../../../../..{t}",  # out of the allowed folder
    "/gradio_api/file={tmp}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e{t}",
    "/gradio_api/file={tmp}/..%2f..%2f..%2f..%2f..%2f..%2f..{t}",
    "/gradio_api/file={rel}",  # relative to the server's working directory (the repository)
    "/gradio_api/file=./{rel}",
    "/file={t}",  # Gradio 3/4's route
    "/static/../../../../../../..{t}",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e{t}",
    "/assets/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e{t}",
    "/gradio_api/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e{t}",
    "/gradio_api/proxy={t}",
    "/{rel}",
]


def targets():
    """Files the app must never hand out: the system's, the code's, the voice weights, the git config."""
    found = [Path("/etc/passwd"), ROOT / "app.py", ROOT / ".git" / "config"]
    found += sorted((ROOT / "assets" / "voices").glob("*/acoustic.safetensors"))[:1]
    return [p for p in found if p.is_file()]


def get(server, path):
    """(status, body) of GET `path`, sent exactly as written (no client-side normalisation of ../)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def gradio_tmp(server):
    return server.log.parent / "gradio"  # GRADIO_TEMP_DIR of the test server


@pytest.mark.parametrize("route", ROUTES)
def test_file_routes_serve_nothing_outside_their_folders(app_server, route):  # noqa: F811
    for target in targets():
        rel = target.relative_to(ROOT) if target.is_relative_to(ROOT) else target.relative_to("/")
        path = route.format(t=target, q=urllib.parse.quote(str(target), safe=""), tmp=gradio_tmp(app_server), rel=rel)
        status, body = get(app_server, path)
        head = target.read_bytes()[:64]
        assert status in (400, 403, 404), (path, status, body[:200])
        assert head not in body, path


def test_what_the_app_made_is_served(app_server):  # noqa: F811
    """The other side of the test above: the routes work, for the files they are for."""
    start = urllib.request.Request(f"{app_server.url}/gradio_api/call/synthesize",
                                   headers={"Content-Type": "application/json"},
                                   data=json.dumps({"data": [TEXT, None, "neutral", None, 1.0, 0.0, 1.0, "auto", "auto", ""]}).encode())
    with urllib.request.urlopen(start, timeout=30) as r:
        event_id = json.load(r)["event_id"]
    with urllib.request.urlopen(f"{app_server.url}/gradio_api/call/synthesize/{event_id}", timeout=120) as r:
        events = r.read().decode()
    wav = json.loads(events.split("event: complete\ndata:", 1)[1].split("\n", 1)[0])[0]
    status, body = get(app_server, urllib.parse.urlsplit(wav["url"]).path)
    assert status == 200 and body[:4] == b"RIFF"


def test_an_upload_cannot_choose_where_it_lands(app_server):  # noqa: F811
    name = f"sambert-escape-{uuid.uuid4().hex}.txt"
    escape = Path("/tmp") / name
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"../../../../../../tmp/{name}\"\r\n"
            f"Content-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n").encode()
    request = urllib.request.Request(f"{app_server.url}/gradio_api/upload", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        stored = Path(json.load(r)[0])
    assert not escape.exists()
    assert stored.resolve().is_relative_to(gradio_tmp(app_server).resolve()), stored


# ---- start-up faults ---------------------------------------------------------------------------------


def broken_bundle_tree(tmp):
    """A copy of the code with one bundled voice whose weights are truncated (the bundle folder sits
    beside the package, so a broken bundle needs its own copy of the tree)."""
    tree = tmp / "tree"
    for part in ("sambert", "configs"):
        shutil.copytree(ROOT / part, tree / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "app.py", tree / "app.py")
    real = sorted((ROOT / "assets" / "voices").glob("*/voice.yaml"))
    if not real:
        pytest.skip("no bundled voice to break")
    bundle = tree / "assets" / "voices" / "broken"
    bundle.mkdir(parents=True)
    shutil.copy(real[0], bundle / "voice.yaml")
    (bundle / "acoustic.safetensors").write_bytes((real[0].parent / "acoustic.safetensors").read_bytes()[:4096])
    return tree, [], "cannot read the weights"


def corrupt_checkpoint_dir(tmp):
    if not FIXTURE.is_file():
        pytest.skip("needs ../shared/fixtures for a ModelScope-layout voice")
    model = build_fixture_voice(tmp / "model")
    checkpoint = model / "voices" / "zhitian_emo" / "am" / "ckpt" / "checkpoint_1.pth"
    checkpoint.write_bytes(checkpoint.read_bytes()[:10_000])
    return ROOT, ["--model-dir", str(model)], "cannot read the checkpoint"


def not_a_model_dir(tmp):
    (tmp / "notes.txt").write_text("not a model")
    return ROOT, ["--model-dir", str(tmp)], "is not a ModelScope Sambert-HiFiGAN model directory"


STARTUP_FAULTS = [
    ("missing model dir", lambda tmp: (ROOT, ["--model-dir", str(tmp / "nowhere")], "does not exist")),
    ("not a model dir", not_a_model_dir),
    ("corrupt checkpoint", corrupt_checkpoint_dir),
    ("corrupt bundle", broken_bundle_tree),
]


@pytest.mark.parametrize("case_id, make", [c[:2] for c in STARTUP_FAULTS], ids=[c[0] for c in STARTUP_FAULTS])
def test_a_bad_voice_or_setting_at_start_up_is_one_clear_message_and_a_failed_exit(tmp_path, case_id, make):
    tree, args, message = make(tmp_path)
    done = subprocess.run([sys.executable, str(tree / "app.py"), "--port", "1", *args], cwd=tree,
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SAMBERT_PROFILE": "cpu",
                               "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"})
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(errors) == 1 and message in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout


# ---- a second server: per-client rate limit, and a CUDA out-of-memory injected into a request --------


@pytest.fixture(scope="module")
def strict_server():
    """3 speech requests a minute per client; the cpu-placed 'gpu-8gb' profile with the 3rd vocoder call
    failing as out of memory, so the engine must step down to 'gpu-lt8gb' mid-request."""
    server = start_server({"SAMBERT_RATE_LIMIT": "3/minute", "SAMBERT_INJECT_OOM": "3", "SAMBERT_PROFILE": "gpu-8gb"},
                          ["--device", "cpu"])
    yield server
    stop_server(server.process)


def speech(server, text, headers=None):
    request = urllib.request.Request(server.url + "/v1/audio/speech", headers={"Content-Type": "application/json",
                                                                                **(headers or {})},
                                     data=json.dumps({"input": text, "response_format": "pcm"}).encode())
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def health(server):
    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as r:
        return json.load(r)


def test_injected_out_of_memory_mid_request_is_recovered_through_the_app(strict_server, app_server):  # noqa: F811
    long_text = "今天天气很好，我们一起去公园散步。"
    assert health(strict_server)["profile"] == "gpu-8gb"
    status, _, audio = speech(strict_server, long_text)  # local caller: not rate limited
    assert status == 200
    assert health(strict_server)["profile"] == "gpu-lt8gb"  # stepped down, and stays down
    _, _, expected = speech(app_server, long_text)  # the same text on the plain cpu server
    got, expected = np.frombuffer(audio, "<i2"), np.frombuffer(expected, "<i2")
    # The same samples: nothing lost or doubled where the sentence was redone. The profiles' other decoder
    # blocks and vocoder chunks move the float output by ~1e-6, at most one int16 step.
    assert len(got) == len(expected) and np.abs(got.astype(np.int32) - expected).max() <= 1
    assert health(strict_server)["running"] == 0


def test_rate_limit_per_client_answers_429_with_retry_after(strict_server):
    proxied = {"X-Forwarded-For": "203.0.113.7"}  # as Caddy sends it: the client behind the proxy
    for _ in range(3):
        assert speech(strict_server, "好。", proxied)[0] == 200
    status, headers, body = speech(strict_server, "好。", proxied)
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert "rate limit: at most 3/minute per client" in json.loads(body)["error"]["message"]
    assert speech(strict_server, "好。", {"X-Forwarded-For": "203.0.113.8"})[0] == 200  # another client
    for _ in range(4):  # a script on the server itself is not limited
        assert speech(strict_server, "好。")[0] == 200
    with urllib.request.urlopen(strict_server.url + "/metrics", timeout=10) as r:
        assert 'outcome="rate_limited"' in r.read().decode()


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy is not installed (apt install caddy)")
def test_behind_caddy_the_limit_counts_the_real_client_not_a_header_it_sends(strict_server, tmp_path):
    """Caddy replaces a client's own X-Forwarded-For with the address it sees, so forging the header
    cannot buy a fresh allowance: all these requests are one client (127.0.0.1) to the app."""
    from test_caddy import Caddy

    proxy = Caddy(f"127.0.0.1:{strict_server.port}", tmp_path)
    try:
        outcomes = []
        for forged in ("198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"):
            request = urllib.request.Request(proxy.url + "/v1/audio/speech", headers={
                "Content-Type": "application/json", "X-Forwarded-For": forged},
                data=json.dumps({"input": "好。", "response_format": "pcm"}).encode())
            try:
                with urllib.request.urlopen(request, timeout=60, context=proxy.context) as r:
                    outcomes.append(r.status)
            except urllib.error.HTTPError as err:
                outcomes.append(err.code)
        assert outcomes == [200, 200, 200, 429]
    finally:
        proxy.stop()
