"""`python -m sambert share`: a temporary public HTTPS link to the app running on this machine.

It wraps the localtunnel client (`npx localtunnel --port 7860`). A public link lets anyone reach the
app, so it refuses to start unless SAMBERT_AUTH is set *and* the running app really asks for it
(an unauthenticated request to /v1/voices must get 401).
"""

import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

from sambert.server import ConfigError, auth_from_env

URL_LINE = re.compile(r"your url is:\s*(\S+)", re.I)


class ShareError(Exception):
    pass


def share(port=None, subdomain=None, tunnel_host=None):
    """Open the tunnel, print its URL, and keep it open until interrupted; returns the exit status."""
    port = port or int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    try:
        auth = auth_from_env()
    except ConfigError as err:
        raise ShareError(str(err)) from None
    if auth is None:
        raise ShareError("refusing to share without a login: set SAMBERT_AUTH=user:password, start the app "
                         "with it (SAMBERT_AUTH=... python app.py), then run share with it set too")
    check_protected(port)
    if shutil.which("npx") is None:
        raise ShareError("npx (Node.js) is not installed; install nodejs and npm to use localtunnel")
    cmd = ["npx", "--yes", "localtunnel@2.0.2", "--port", str(port), "--local-host", "127.0.0.1"]
    if subdomain:
        cmd += ["--subdomain", subdomain]
    if tunnel_host:
        cmd += ["--host", tunnel_host]
    tunnel = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        for line in tunnel.stdout:
            found = URL_LINE.search(line)
            if found:
                url = found.group(1)
                print(f"public URL: {url}\n"
                      f"  login: user {auth[0]!r} and the password from SAMBERT_AUTH\n"
                      f"  first visit in a browser: localtunnel asks for the sharer's public IP as a 'tunnel password' "
                      f"(see https://loca.lt/mytunnelpassword); API clients skip that page with the header "
                      f"'bypass-tunnel-reminder: 1'\n"
                      f"  Ctrl+C closes the link", flush=True)
            else:
                print(line, end="", file=sys.stderr)
        return tunnel.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if tunnel.poll() is None:
            tunnel.terminate()
            tunnel.wait()


def check_protected(port):
    """ShareError unless an app answers on `port` and refuses a request without credentials."""
    url = f"http://127.0.0.1:{port}/v1/voices"
    try:
        urllib.request.urlopen(url, timeout=10).close()
    except urllib.error.HTTPError as err:
        if err.code == 401:
            return
        raise ShareError(f"unexpected answer from the app at {url}: HTTP {err.code}") from None
    except OSError as err:
        raise ShareError(f"no app answers on port {port} ({err}); start it first: "
                         "SAMBERT_AUTH=... python app.py") from None
    raise ShareError(f"the app on port {port} runs without a login; restart it with SAMBERT_AUTH=user:password "
                     "so the public link is protected")
