"""Start the app (and Caddy in front of it) for the serving benchmarks, each in its own subprocess with
its own temp folder, on free ports; stop them at exit. The app serves the bundled default voice
(or SAMBERT_MODEL_DIR); OMP_NUM_THREADS=1 as in the tests."""

import atexit
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def start_app(args=(), env=None, timeout=240):
    """(url, process, log path) of a fresh app server."""
    work = Path(tempfile.mkdtemp(prefix="sambert-bench-"))
    port = free_port()
    full_env = dict(os.environ, GRADIO_TEMP_DIR=str(work / "gradio"), GRADIO_ANALYTICS_ENABLED="False",
                    OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env or {}))
    full_env.setdefault("SAMBERT_PROFILE", "cpu")
    log = work / "server.log"
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), *args], cwd=ROOT,
                               env=full_env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    atexit.register(_stop, process)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the app exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/", timeout=5).close()
            return url, process, log
        except OSError:
            time.sleep(0.5)
    sys.exit(f"the app did not answer within {timeout} s:\n{log.read_text()[-2000:]}")


def start_caddy(upstream, timeout=60):
    """(https url, ssl context trusting Caddy's local CA) of the repository's Caddyfile proxying `upstream`."""
    if shutil.which("caddy") is None:
        sys.exit("caddy is not installed (apt install caddy)")
    work = Path(tempfile.mkdtemp(prefix="sambert-caddy-"))
    url = f"https://localhost:{free_port()}"
    env = dict(os.environ, XDG_DATA_HOME=str(work / "data"), XDG_CONFIG_HOME=str(work / "config"), SAMBERT_SITE=url,
               SAMBERT_BIND="127.0.0.1", SAMBERT_HTTP_PORT=str(free_port()),
               SAMBERT_CADDY_ADMIN=f"127.0.0.1:{free_port()}", SAMBERT_UPSTREAMS=upstream)
    env.pop("SAMBERT_AUTH_HASH", None)
    log = work / "caddy.log"
    process = subprocess.Popen(["caddy", "run", "--config", str(ROOT / "Caddyfile"), "--adapter", "caddyfile"],
                               env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    atexit.register(_stop, process)
    root_cert = work / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"caddy exited:\n{log.read_text()[-2000:]}")
        if root_cert.is_file():
            context = ssl.create_default_context(cafile=str(root_cert))
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=5, context=context) as r:
                    json.load(r)
                return url, context
            except (OSError, ssl.SSLError, ValueError):
                pass
        time.sleep(0.3)
    sys.exit(f"caddy did not serve {url}:\n{log.read_text()[-2000:]}")


def rss_bytes(pid):
    """Resident memory of a process (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")
