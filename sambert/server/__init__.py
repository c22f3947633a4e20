"""Serving: one process holds the engine, the Gradio UI (mounted at /) and the HTTP API (/v1, /healthz,
/metrics), all behind one admission limit. `app.py` at the repository root builds the UI and runs it."""

import os

from sambert.server.service import Service


class ConfigError(ValueError):
    pass


def auth_from_env(environ=None):
    """(user, password) from SAMBERT_AUTH=user:pass, or None when it is unset."""
    value = (os.environ if environ is None else environ).get("SAMBERT_AUTH", "")
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ConfigError("SAMBERT_AUTH must look like user:password (both non-empty)")
    return user, password


__all__ = ["ConfigError", "Service", "auth_from_env"]
