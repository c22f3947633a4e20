"""One admission limit for every way into the engine (the Gradio UI and the HTTP API).

At most `concurrency` requests synthesize at once (the profile's max_concurrent_requests); up to
`max_waiting` more wait their turn; beyond that a request is refused at once with `Busy`, which the
HTTP API turns into 429 and the UI into an error message. Thread-based, because synthesis runs in
worker threads on both paths.
"""

import threading
import time

GONE_POLL_SECONDS = 0.25


class Busy(Exception):
    """Every slot is taken and the waiting line is full."""


class ClientGone(Exception):
    """The requester disconnected before a slot was free."""


class Limiter:
    def __init__(self, concurrency, max_waiting):
        self.concurrency, self.max_waiting = concurrency, max_waiting
        self.active = 0
        self.waiting = 0
        self._cond = threading.Condition()

    def acquire(self, timeout=None, gone=None):
        """Wait for a slot and return it (release it once, or use it as a context manager).

        `gone`, if given, is an Event set when the requester went away while waiting: it then leaves
        the line with ClientGone instead of taking a slot nobody will use."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self.active >= self.concurrency and self.waiting >= self.max_waiting:
                raise Busy(f"server busy: {self.active} requests running and {self.waiting} waiting "
                           f"(limits {self.concurrency} and {self.max_waiting}); try again shortly")
            self.waiting += 1
            try:
                while self.active >= self.concurrency:
                    if gone is not None and gone.is_set():
                        raise ClientGone("the client went away while waiting for a synthesis slot")
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise Busy(f"server busy: no synthesis slot freed within {timeout:g} s; try again shortly")
                    # a slot's release notifies; a client that goes is only noticed on the next poll
                    self._cond.wait(GONE_POLL_SECONDS if left is None else min(left, GONE_POLL_SECONDS))
            finally:
                self.waiting -= 1
            self.active += 1
        return Slot(self)

    def _release(self):
        with self._cond:
            self.active -= 1
            self._cond.notify()


class Slot:
    """A held place; release() is idempotent, so every exit path may call it."""

    def __init__(self, limiter):
        self._limiter = limiter
        self._held = True
        self._lock = threading.Lock()

    def release(self):
        with self._lock:
            held, self._held = self._held, False
        if held:
            self._limiter._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
