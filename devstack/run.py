"""`make run`: start the local stack, collect yesterday against the simulator, then serve the API on :7071.

Ctrl-C stops the HTTP server and every process the stack started.
"""
from __future__ import annotations

import logging
import os
import sys
import time

from .stack import ROOT, Stack, StackError

PORT = 7071


def localhost_keys():
    from .localhost import Keys

    required = os.environ.get("LOCALHOST_REQUIRE_KEYS", "false").lower() in ("1", "true", "yes")
    return Keys(required, os.environ.get("LOCALHOST_FUNCTION_KEY", ""), os.environ.get("LOCALHOST_ADMIN_KEY", ""))


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("localhost").setLevel(logging.WARNING)
    from shared.config.settings import SettingsError, apply_local_settings_file

    try:
        apply_local_settings_file(str(ROOT / "local.settings.json"))
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    started = time.monotonic()
    stack = Stack()
    try:
        stack.start()
    except StackError as exc:
        print(f"could not start the local stack: {exc}", file=sys.stderr)
        return 1
    try:
        os.environ.update(stack.app_env())
        from shared.config.settings import load_settings
        from shared.stores.schema import ensure_stores

        try:
            settings = load_settings()
        except SettingsError as exc:
            print(f"invalid setting: {exc}", file=sys.stderr)
            return 2
        ensure_stores(settings)
        summary = first_run(settings)
        server = serve()
        print_summary(summary, time.monotonic() - started, stack)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    finally:
        stack.stop()
        print("\nstopped the local stack.")
    return 0


def first_run(settings) -> list[str]:
    """Collect yesterday (every enabled feed) against the simulator, through the timer's code path."""
    from shared.collect.run import run_days
    from shared.config.feeds import enabled_feeds
    from shared.instants import yesterday

    day = yesterday(settings.time_zone)
    print(f"collecting {day} from the Graph simulator ...", flush=True)
    report = run_days(settings, enabled_feeds(settings), day, day)
    return [report.summary(),
            f"rows are in Cosmos DB database '{settings.cosmos_database}', raw pages in Blob container "
            f"'{settings.archive_container}' under <feed>/{settings.graph_api_version}/{day:%Y/%m/%d}/<runId>/"]


def serve():
    from function_app import app

    from .localhost import make_server

    return make_server(app, "127.0.0.1", PORT, localhost_keys())


def print_summary(lines: list[str], seconds: float, stack: Stack) -> None:
    base = f"http://localhost:{PORT}/api"
    print("\n".join([
        "",
        f"ready in {seconds:.1f} s",
        *lines,
        f"Graph simulator  {stack.graph_url}",
        f"Cosmos DB        {stack.cosmos_url} (emulator key)",
        f"Blob storage     {stack.blob_url}",
        "try:",
        f"  curl {base}/health",
        f"  curl {base}/status",
        f"  open {base}/dashboard in a browser",
        f"  curl '{base}/odata/PstnCalls?$top=3'     (Power BI: OData.Feed(\"{base}/odata\"))",
        f"  curl '{base}/calls?from=YYYY-MM-DD&format=csv'",
        "  .venv/bin/python -m shared.cli collect --day YYYY-MM-DD",
        "    (collect by hand from another shell; first: cp local.settings.json.example local.settings.json)",
        "Ctrl-C stops everything.",
    ]), flush=True)


if __name__ == "__main__":
    sys.exit(main())
