"""Request rate limits per client for the public HTTP API: a token bucket per client address.

The admission limit (limiter.py) bounds how much work runs at once; this bounds how often one client may
ask, so a single script cannot keep the queue full for everyone else. Configured as "N/second",
"N/minute" or "N/hour" (SAMBERT_RATE_LIMIT, `--rate-limit`); "off" disables it. A client may spend its
whole allowance in a burst, then gets one request per refill interval.

Behind a reverse proxy on the same machine (Caddy, nginx) every request comes from 127.0.0.1, so for
loopback peers the client is the first address of X-Forwarded-For (which such a proxy sets); a remote
peer's own address is used otherwise, so a remote client cannot pick its key by sending the header.
A loopback peer without that header is a script on the server itself: it is not limited.
"""

import ipaddress
import math
import threading
import time

UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
DEFAULT = "120/minute"
MAX_CLIENTS = 10_000  # forget the fullest buckets beyond this many clients (memory stays bounded)


class RateLimitError(ValueError):
    pass


def parse(spec):
    """'30/minute' -> (30, 60.0); 'off' or '0' -> None."""
    spec = str(spec).strip().lower()
    if spec in ("off", "0", "none", ""):
        return None
    count, _, unit = spec.partition("/")
    unit = unit.strip()
    try:
        count = int(count)
        seconds = UNITS[unit if unit in UNITS else unit.removesuffix("s")]
    except (ValueError, KeyError):
        raise RateLimitError(f"rate limit {spec!r}: write N/second, N/minute or N/hour, or off") from None
    if count < 1:
        raise RateLimitError(f"rate limit {spec!r}: N must be at least 1")
    return count, float(seconds)


class RateLimit:
    def __init__(self, count, per_seconds, clock=time.monotonic):
        self.capacity, self.refill = float(count), count / per_seconds  # tokens, tokens per second
        self._clock = clock
        self._buckets = {}  # client -> (tokens, time)
        self._lock = threading.Lock()

    def check(self, client):
        """0 when `client` may go on (one token spent), else the seconds until it may."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.refill)
            if tokens >= 1:
                self._buckets[client] = (tokens - 1, now)
                self._forget_full(now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1 - tokens) / self.refill

    def _forget_full(self, now):
        if len(self._buckets) <= MAX_CLIENTS:
            return
        # A client whose bucket has refilled is indistinguishable from a new one: drop those first.
        full = [c for c, (t, then) in self._buckets.items() if t + (now - then) * self.refill >= self.capacity]
        for client in full or list(self._buckets)[: len(self._buckets) - MAX_CLIENTS]:
            del self._buckets[client]


def client_of(peer, forwarded_for):
    """The client a request counts against (see the module docstring); None for a local caller."""
    try:
        loopback = peer is not None and ipaddress.ip_address(peer).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return forwarded_for.split(",")[0].strip() if forwarded_for else None
    return peer or "unknown"


def retry_after(seconds):
    return str(max(1, math.ceil(seconds)))
