"""Counters for `GET /metrics`, written in the Prometheus text format (no client library needed).

Requests and errors are counted per endpoint (`speech` = HTTP API, `ws` = the WebSocket API, one count
per sentence spoken, `ui` = Gradio) and outcome;
latency and time to first audio are histograms; queue depth and requests in progress are read from
the shared limiter when scraped; peak memory is the highest per-request peak the engine measured.
"""

import threading
from collections import Counter


BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, float("inf"))


class Histogram:
    def __init__(self):
        self.counts = [0] * len(BUCKETS)
        self.total = 0.0
        self.n = 0

    def observe(self, value):
        self.n += 1
        self.total += value
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                self.counts[i] += 1  # cumulative: every bucket at or above the value

    def lines(self, name, labels):
        out = []
        for bound, count in zip(BUCKETS, self.counts):
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            out.append(f'{name}_bucket{{{labels},le="{le}"}} {count}')
        out += [f"{name}_sum{{{labels}}} {self.total:.6f}", f"{name}_count{{{labels}}} {self.n}"]
        return out


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        # (endpoint, outcome) -> n; outcome: ok | bad_request | busy | rate_limited | error | cancelled
        # (the consumer stopped early) | gone (left while waiting) | stalled (ended by the watchdog)
        self.requests = Counter()
        self.latency = {}  # endpoint -> Histogram of whole-request seconds
        self.first_audio = {}  # endpoint -> Histogram of time to first audio
        self.peak_memory_bytes = 0

    def record(self, endpoint, outcome, seconds=None, stats=None):
        with self._lock:
            self.requests[endpoint, outcome] += 1
            if seconds is not None:
                self.latency.setdefault(endpoint, Histogram()).observe(seconds)
            if stats is not None:
                if stats.time_to_first_audio is not None:
                    self.first_audio.setdefault(endpoint, Histogram()).observe(stats.time_to_first_audio)
                self.peak_memory_bytes = max(self.peak_memory_bytes, stats.peak_memory_bytes)

    def render(self, limiter, ui_waiting=None):
        with self._lock:
            lines = ["# HELP sambert_requests_total Synthesis requests by endpoint and outcome.",
                     "# TYPE sambert_requests_total counter"]
            lines += [f'sambert_requests_total{{endpoint="{e}",outcome="{o}"}} {n}'
                      for (e, o), n in sorted(self.requests.items())]
            lines += ["# HELP sambert_errors_total Requests that ended in an error (bad input, busy, failure, stalled).",
                      "# TYPE sambert_errors_total counter"]
            errors = Counter()
            for (e, o), n in self.requests.items():
                if o not in ("ok", "cancelled", "gone"):
                    errors[e] += n
            lines += [f'sambert_errors_total{{endpoint="{e}"}} {n}' for e, n in sorted(errors.items())]
            for name, help_, table in (
                ("sambert_request_duration_seconds", "Whole-request latency.", self.latency),
                ("sambert_time_to_first_audio_seconds", "Engine work before the first audio chunk.", self.first_audio),
            ):
                lines += [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
                for endpoint, histogram in sorted(table.items()):
                    lines += histogram.lines(name, f'endpoint="{endpoint}"')
            lines += [
                "# HELP sambert_queue_depth Requests waiting for a synthesis slot.",
                "# TYPE sambert_queue_depth gauge",
                f"sambert_queue_depth {limiter.waiting}",
                "# HELP sambert_ui_queue_depth Page requests in Gradio's queue (waiting or running).",
                "# TYPE sambert_ui_queue_depth gauge",
                f"sambert_ui_queue_depth {ui_waiting() if ui_waiting else 0}",
                "# HELP sambert_requests_in_progress Requests synthesizing now.",
                "# TYPE sambert_requests_in_progress gauge",
                f"sambert_requests_in_progress {limiter.active}",
                "# HELP sambert_concurrency_limit Requests allowed to synthesize at once (the profile's).",
                "# TYPE sambert_concurrency_limit gauge",
                f"sambert_concurrency_limit {limiter.concurrency}",
                "# HELP sambert_peak_memory_bytes Highest per-request peak memory (CUDA allocated or RSS).",
                "# TYPE sambert_peak_memory_bytes gauge",
                f"sambert_peak_memory_bytes {self.peak_memory_bytes}",
                "# HELP sambert_process_resident_memory_bytes Resident set size of the server process now.",
                "# TYPE sambert_process_resident_memory_bytes gauge",
                f"sambert_process_resident_memory_bytes {resident_bytes()}",
            ]
        return "\n".join(lines) + "\n"


def resident_bytes():
    """The process's resident set size now (0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
