"""`make run`: start the local stack, collect yesterday against the simulator, then serve the API on :7071 and tick
the collect timer (which goes on with the rest of the first run's 30 days in the background).

Ctrl-C, SIGTERM or SIGHUP (a closed terminal) stop the HTTP server and every process the stack started, in
order; if this process is killed outright, the kernel ends the services (see devstack/stack.py), and the next
start stops whatever is left of the stack it recorded in .devstack/.

The ports and the state folder can be moved with DEVSTACK_BLOB_PORT, DEVSTACK_COSMOS_PORT, DEVSTACK_GRAPH_PORT,
DEVSTACK_API_PORT and DEVSTACK_STATE_DIR (defaults 10000, 8081, 8765, 7071 and .devstack).
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

from .stack import (DEFAULT_PORTS, ROOT, Stack, StackError, StopSignal, die_with_parent, port_in_use_message,
                    _port_open, signals_stop)

PORT = 7071


def _port_setting(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise StackError(f"{name}={raw!r} is not a port number (1-65535)")
    return port


def configured_stack() -> tuple[Stack, int]:
    """The stack and API port make run uses: the defaults, or the DEVSTACK_* overrides."""
    ports = {name: _port_setting(f"DEVSTACK_{name.upper()}_PORT", default) for name, default in DEFAULT_PORTS.items()}
    api = _port_setting("DEVSTACK_API_PORT", PORT)
    state = Path(os.environ.get("DEVSTACK_STATE_DIR") or ROOT / ".devstack")
    return Stack(ports=ports, state_dir=state), api


def localhost_keys():
    from .localhost import Keys

    required = os.environ.get("LOCALHOST_REQUIRE_KEYS", "false").lower() in ("1", "true", "yes")
    return Keys(required, os.environ.get("LOCALHOST_FUNCTION_KEY", ""), os.environ.get("LOCALHOST_ADMIN_KEY", ""))


def main() -> int:
    # Before anything is started: from here on SIGTERM and SIGHUP unwind through the finally blocks below, and
    # if `make` itself is killed outright this process hears of it and stops the stack too.
    signals_stop()
    die_with_parent(signal.SIGTERM)
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
    interrupted: StopSignal | None = None
    try:
        stack, api_port = configured_stack()
        if _port_open(api_port):
            raise StackError(port_in_use_message("the API", api_port, stack.state_dir))
        stack.start()
    except StackError as exc:
        print(f"could not start the local stack: {exc}", file=sys.stderr)
        return 1
    except StopSignal as stop:  # Stack.start stopped what it had started
        return 128 + stop.signum
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
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
        server = serve(api_port)
        timers = start_timers()
        print_summary(summary, time.monotonic() - started, stack, api_port)
        try:
            server.serve_forever()
        finally:
            server.server_close()
            timers.stop()
    except StopSignal as stop:
        interrupted = stop
    except KeyboardInterrupt:
        pass
    finally:
        try:
            stack.stop()
        except KeyboardInterrupt:  # a second Ctrl-C or signal while stopping: Stack.stop killed the rest
            pass
        try:
            print("\nstopped the local stack.", flush=True)
        except OSError:  # the terminal is gone (SIGHUP)
            pass
    return 128 + interrupted.signum if interrupted else 0


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


def serve(port: int = PORT):
    from function_app import app

    from .localhost import make_server

    return make_server(app, "127.0.0.1", port, localhost_keys())


def start_timers():
    """Tick the collect timer at its schedule, as the host would: it collects the rest of the first run's days in
    the background, and whatever a backfill asks for."""
    from function_app import app

    from .localhost import TimerScheduler

    return TimerScheduler(app).start()


def print_summary(lines: list[str], seconds: float, stack: Stack, port: int = PORT) -> None:
    base = f"http://localhost:{port}/api"
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
