"""Start the app (and Caddy in front of it) for the serving benchmarks, each in its own subprocess with
its own temp folder, on free ports, exactly as the tests do (tests/conftest_app.py, tests/test_caddy.py);
stopped at exit. The app serves the bundled default voice (or SAMBERT_TEST_MODEL_DIR), cpu profile,
OMP_NUM_THREADS=1."""

import atexit
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# The tests' harness is the one way this project starts its servers (env, ports, readiness checks).
from conftest_app import start_server  # noqa: E402  (start_server(extra_env, extra_args))
from test_caddy import Caddy  # noqa: E402


def start_app(args=(), env=None):
    """(url, process, log path) of a fresh app server; stopped at exit."""
    # bundled=True: without it the tests' harness serves the tiny random-weight fixture voice where
    # ../shared/fixtures exists, which would make every serving figure meaningless
    server = start_server(env, args, bundled=True)
    return server.url, server.process, server.log


def start_caddy(upstream):
    """(https url, ssl context trusting Caddy's local CA) of the repository's Caddyfile proxying `upstream`."""
    proxy = Caddy(upstream, Path(tempfile.mkdtemp(prefix="sambert-caddy-")))
    atexit.register(proxy.stop)
    return proxy.url, proxy.context


def rss_bytes(pid):
    """Resident memory of a process (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")
