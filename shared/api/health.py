"""Health check: are the settings valid and do both stores answer?"""
from __future__ import annotations

import logging

from ..config.settings import SettingsError, load_settings

log = logging.getLogger("health")


def check_health(env=None) -> tuple[bool, dict]:
    """Return (healthy, report). The report names what failed but carries no secret or stack trace."""
    try:
        settings = load_settings(env)
    except SettingsError as exc:
        # Anonymous callers get the setting and the problem; the value given (masked) goes to the log only.
        log.warning("health: invalid setting: %s", exc)
        return False, {"status": "unhealthy", "checks": {"settings": exc.public}}

    # Imported here: the stores' SDKs cost cold-start time, and a bad setting needs none of them.
    from ..stores import open_stores

    checks = {"settings": "ok"}
    # Any failure is a finding, reported by type only: messages may hold endpoints.
    for name, exc in open_stores(settings).check().items():
        checks[name] = "ok" if exc is None else _describe(exc)
    healthy = all(v == "ok" for v in checks.values())
    return healthy, {"status": "healthy" if healthy else "unhealthy", "checks": checks}


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    return f"{name} (HTTP {status})" if status else name
