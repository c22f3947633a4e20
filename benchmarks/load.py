"""Load through a real Caddy: N speech requests from C concurrent clients against a running app.

    python benchmarks/load.py [--requests 200] [--clients 8] [--max-queue 16] [--rate-limit off] [--url URL]

Starts the app (bundled voice, cpu profile, --max-queue as given) and Caddy with the repository's
Caddyfile in front of it (HTTPS, Caddy's local CA), unless --url points at a running Caddy or app.
Each client sends short texts to POST /v1/audio/speech (pcm, streamed) one after another. A request
completed when its audio has the length the same text gave alone (asked once per text before the run);
anything else that came back, a short stream or any exception, is an error. Prints how many completed,
how many got 429 (queue full / rate limit) or failed, whether every accepted request completed, the app's RSS after warm-up and after the run, and the distribution of time to first byte
and total time of the accepted requests. The rate limit is off by default here: behind Caddy all these
clients are one address (127.0.0.1), which a per-client limit would throttle as one.
"""

import argparse
import itertools
import json
import ssl
import threading
import time
import urllib.error
import urllib.request

import numpy as np

from _serve import rss_bytes, start_app, start_caddy

TEXTS = ["你好。", "今天天气很好。", "欢迎使用语音合成。", "我们一起去公园。", "请稍等一下。", "谢谢你的帮助。",
         "明天见。", "这是一个测试。"]


class Client:
    def __init__(self, url, context):
        self.url, self.context = url, context
        self.expected = {}  # text -> bytes of its pcm audio, asked alone (learn_lengths)
        self.sample_rate = None  # the served voice's, from X-Sample-Rate

    def _post(self, text):
        body = json.dumps({"input": text, "response_format": "pcm"}).encode()
        request = urllib.request.Request(self.url + "/v1/audio/speech", data=body,
                                         headers={"Content-Type": "application/json"})
        return urllib.request.urlopen(request, timeout=300, context=self.context)

    def learn_lengths(self, texts):
        """What each text's audio must measure: its pcm asked alone, one request at a time."""
        for text in texts:
            with self._post(text) as r:
                self.expected[text] = len(r.read())
                self.sample_rate = int(r.headers["X-Sample-Rate"])

    def speech(self, text):
        """(outcome, seconds to first byte, total seconds, bytes); outcome: ok | busy | rate_limited |
        error ... (any status but 200 and 429, a stream of the wrong length, any exception)."""
        started = time.perf_counter()
        try:
            with self._post(text) as r:
                first = r.read1(65536)
                first_at = time.perf_counter() - started
                rest = r.read()
            size = len(first) + len(rest)
            if size != self.expected[text]:
                return f"error: {size} bytes of audio, alone {self.expected[text]}", None, None, size
            return "ok", first_at, time.perf_counter() - started, size
        except urllib.error.HTTPError as err:
            message = err.read().decode(errors="replace")
            if err.code == 429:
                return ("rate_limited" if "rate limit" in message else "busy"), None, None, 0
            return f"error {err.code}: {message[:120]}", None, None, 0
        except Exception as err:  # noqa: BLE001 - a cut stream (IncompleteRead), a reset...: counted, never lost
            return f"error: {type(err).__name__}: {err}"[:200], None, None, 0


def run(client, total, concurrency, pid=None, rss_trace=None):
    """Outcomes of `total` requests from `concurrency` clients; the app's RSS every quarter into `rss_trace`."""
    issued = itertools.count()
    results, lock = [], threading.Lock()

    def worker():
        while (i := next(issued)) < total:
            outcome = client.speech(TEXTS[i % len(TEXTS)])
            with lock:
                results.append(outcome)
                if pid and rss_trace is not None and len(results) % max(1, total // 4) == 0:
                    rss_trace.append((len(results), rss_bytes(pid)))
            if outcome[0] in ("busy", "rate_limited"):
                time.sleep(1)  # an impatient client (Retry-After says more): tries again soon, with the next text

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def percentiles(values):
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return f"p50 {p50 * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-queue", type=int, default=16, help="the app's waiting line (beyond it: 429 busy)")
    parser.add_argument("--rate-limit", default="off", help="the app's per-client rate limit")
    parser.add_argument("--warm-up", type=int, default=48, help="requests (from all clients) before the first "
                        "memory reading")
    parser.add_argument("--url", help="a running Caddy (or app) instead of starting both; no RSS figures then")
    args = parser.parse_args()

    app_pid = None
    if args.url:
        url, context = args.url, ssl.create_default_context()
    else:
        app_url, process, _ = start_app(["--max-queue", str(args.max_queue), "--rate-limit", args.rate_limit])
        app_pid = process.pid
        url, context = start_caddy(app_url.removeprefix("http://"))
    client = Client(url, context)
    client.learn_lengths(TEXTS)
    warm = run(client, args.warm_up, args.clients)
    assert all(r[0] in ("ok", "busy") for r in warm), warm
    rss_warm = rss_bytes(app_pid) if app_pid else None

    started = time.perf_counter()
    trace = []
    results = run(client, args.requests, args.clients, app_pid, trace)
    seconds = time.perf_counter() - started
    rss_after = rss_bytes(app_pid) if app_pid else None

    counts = {kind: sum(r[0] == kind for r in results) for kind in ("ok", "busy", "rate_limited")}
    errors = [r[0] for r in results if r[0] not in counts]
    accepted = counts["ok"] + len(errors)
    assert len(results) == args.requests  # every request has an outcome, whatever happened to it
    print(f"{len(results)} requests from {args.clients} clients through Caddy ({url}) in {seconds:.0f} s; "
          f"app --max-queue {args.max_queue}, --rate-limit {args.rate_limit}")
    print(f"  completed {counts['ok']}, 429 busy {counts['busy']}, 429 rate limited {counts['rate_limited']}, "
          f"errors {len(errors)}; every accepted request completed: {not errors} ({counts['ok']}/{accepted})")
    for e in sorted(set(errors))[:5]:
        print("  error:", e)
    if rss_warm:
        print(f"  app RSS after warm-up {rss_warm / 2**20:.0f} MiB, after the run {rss_after / 2**20:.0f} MiB "
              f"({100 * (rss_after - rss_warm) / rss_warm:+.1f}%); during the run: "
              + ", ".join(f"{n}: {rss / 2**20:.0f}" for n, rss in trace))
    ok = [r for r in results if r[0] == "ok"]
    if ok:
        print(f"  time to first byte: {percentiles([r[1] for r in ok])}")
        print(f"  total:               {percentiles([r[2] for r in ok])}")
        audio = sum(r[3] for r in ok) / 2 / client.sample_rate
        print(f"  audio served {audio:.0f} s (at {client.sample_rate} Hz) in {seconds:.0f} s of wall time")


if __name__ == "__main__":
    main()
