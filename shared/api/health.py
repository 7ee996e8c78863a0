"""Health check: are the settings valid and do both stores answer?"""
from __future__ import annotations

from ..config.settings import SettingsError, load_settings


def check_health(env=None) -> tuple[bool, dict]:
    """Return (healthy, report). The report names what failed but carries no secret or stack trace."""
    try:
        settings = load_settings(env)
    except SettingsError as exc:
        return False, {"status": "unhealthy", "checks": {"settings": str(exc)}}

    from ..stores.clients import blob_service, cosmos_client

    checks = {"settings": "ok"}
    try:
        cosmos_client(settings).get_database_client(settings.cosmos_database).read()
        checks["cosmos"] = "ok"
    except Exception as exc:  # any failure is a finding, reported by type only: messages may hold endpoints
        checks["cosmos"] = _describe(exc)
    try:
        blob_service(settings).get_container_client(settings.archive_container).get_container_properties()
        checks["blob"] = "ok"
    except Exception as exc:
        checks["blob"] = _describe(exc)
    healthy = all(v == "ok" for v in checks.values())
    return healthy, {"status": "healthy" if healthy else "unhealthy", "checks": checks}


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    return f"{name} (HTTP {status})" if status else name
