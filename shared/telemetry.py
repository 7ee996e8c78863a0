"""Sending the app's logs to Application Insights with their structured fields as custom dimensions.

The Functions host's classic Application Insights logging keeps only a Python log record's message; the
fields passed as `extra=` (feed, day, runId, rows, ...) are dropped. In OpenTelemetry mode (host.json
"telemetryMode": "OpenTelemetry") the app exports its own logs through the Azure Monitor distro, and every
`extra` field becomes a custom dimension. Nothing happens when no connection string is set (locally, tests).
"""
from __future__ import annotations

import logging

from .config.settings import Settings

_configured = False


def configure_telemetry(settings: Settings) -> bool:
    global _configured
    if _configured or not settings.applicationinsights_connection_string:
        return _configured
    from azure.monitor.opentelemetry import configure_azure_monitor

    credential = None
    if "Authorization=AAD" in (settings.applicationinsights_authentication_string or ""):
        # Local authentication is off on the Application Insights resource: ingest with the managed identity.
        from azure.identity import ManagedIdentityCredential

        client_id = settings.azure_client_id
        credential = ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    configure_azure_monitor(connection_string=settings.applicationinsights_connection_string,
                            credential=credential, logger_name="",
                            instrumentation_options={"azure_sdk": {"enabled": False}})
    logging.getLogger("azure").setLevel(logging.WARNING)
    _configured = True
    return True


def start_telemetry() -> None:
    """At app start-up: never let telemetry set-up stop the app (a bad setting is reported by the routes)."""
    from .config.settings import SettingsError, load_settings

    try:
        configure_telemetry(load_settings())
    except SettingsError:
        pass
    except Exception:  # an exporter that cannot start must not take the collector down with it
        logging.getLogger("telemetry").exception("Application Insights telemetry could not be configured")
