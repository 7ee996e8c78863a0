"""A small stand-in for `func start`: serves the app's HTTP functions at http://localhost:7071/api/<route>.

The real Functions host (Core Tools) cannot be installed where its download site is unreachable. This host
reads the same function metadata the real one does (`app.get_functions()`), passes the same azure.functions
objects (HttpRequest, TimerRequest), and like `func start` demands no keys unless LOCALHOST_REQUIRE_KEYS=true
(then LOCALHOST_FUNCTION_KEY / LOCALHOST_ADMIN_KEY are the keys, sent as `code=` or `x-functions-key`).

Non-HTTP functions run on demand as the real host's admin API does:
    POST /admin/functions/<name>     (body {"input": ""})
and timer functions also at their schedules while a `TimerScheduler` runs (`make run` starts one).
"""
from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import os
import re
import threading
import time
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func

log = logging.getLogger("localhost")

LEVELS = {"anonymous": 0, "function": 1, "admin": 2}


@dataclass
class HttpRoute:
    name: str
    pattern: re.Pattern
    methods: set[str]
    auth_level: str
    handler: Callable


@dataclass
class Keys:
    required: bool = False
    function_key: str = ""
    admin_key: str = ""

    def level_of(self, presented: str | None) -> int:
        if not presented:
            return 0
        if self.admin_key and hmac.compare_digest(presented, self.admin_key):
            return 2
        if self.function_key and hmac.compare_digest(presented, self.function_key):
            return 1
        return 0


def _route_regex(template: str) -> re.Pattern:
    """Compile an ASP.NET-style route template ({name}, {name?}, {*rest}, {name:constraint}) to a regex."""
    parts = []
    for segment in template.strip("/").split("/"):
        m = re.fullmatch(r"\{(\*?)(\w+)(?::\w+)?(\??)\}", segment)
        if not m:
            parts.append("/" + re.escape(segment))
        elif m.group(1):
            parts.append(rf"(?:/(?P<{m.group(2)}>.*))?")
        elif m.group(3):
            parts.append(rf"(?:/(?P<{m.group(2)}>[^/]+))?")
        else:
            parts.append(rf"/(?P<{m.group(2)}>[^/]+)")
    return re.compile("".join(parts) + "/?", re.IGNORECASE)


class FunctionIndex:
    """The app's functions as the host sees them: HTTP routes and other (timer) functions."""

    _cache: dict[int, "FunctionIndex"] = {}

    @classmethod
    def of(cls, app: func.FunctionApp) -> "FunctionIndex":
        # app.get_functions() may run only once per app object (a second call reports duplicate names).
        if id(app) not in cls._cache:
            cls._cache[id(app)] = cls(app)
        return cls._cache[id(app)]

    def function(self, name: str) -> Callable:
        """The user function behind a function name, HTTP or not."""
        for route in self.routes:
            if route.name == name:
                return route.handler
        return self.others[name]

    def __init__(self, app: func.FunctionApp):
        self.routes: list[HttpRoute] = []
        self.others: dict[str, Callable] = {}
        self.bindings: dict[str, dict] = {}
        for function in app.get_functions():
            meta = json.loads(function.get_function_json())
            name = function.get_function_name()
            self.bindings[name] = meta
            trigger = next(b for b in meta["bindings"] if b["type"].endswith("Trigger"))
            user_function = function.get_user_function()
            if trigger["type"] == "httpTrigger":
                route = trigger.get("route") or name
                if route.strip("/").lower().split("/")[0] == "admin":
                    # The real host refuses these (its own API owns the prefix); refuse them here too.
                    raise ValueError(f"function {name}: routes may not start with 'admin' (reserved by the host)")
                auth = str(trigger.get("authLevel", "function")).lower().split(".")[-1]
                methods = {m.upper() for m in (trigger.get("methods") or ["GET", "POST"])}
                self.routes.append(HttpRoute(name, _route_regex(route), methods, auth, user_function))
            else:
                self.others[name] = user_function
        # Literal routes before templated ones, as the real host orders them.
        self.routes.sort(key=lambda r: r.pattern.pattern.count("(?P"))

    def match(self, path: str, method: str) -> tuple[HttpRoute | None, dict, bool]:
        """(route, route params, path matched but method did not)."""
        wrong_method = False
        for route in self.routes:
            m = route.pattern.fullmatch(path)
            if m:
                if method in route.methods:
                    return route, {k: v for k, v in m.groupdict().items() if v is not None}, False
                wrong_method = True
        return None, {}, wrong_method


def make_server(app: func.FunctionApp, host: str = "127.0.0.1", port: int = 7071,
                keys: Keys | None = None) -> ThreadingHTTPServer:
    index = FunctionIndex.of(app)
    keys = keys or Keys()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # route access lines through logging, not stderr
            log.info("%s %s", self.address_string(), fmt % args)

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for k, v in headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send(status, json.dumps({"error": {"code": str(status), "message": message}}).encode(),
                       {"Content-Type": "application/json"})

        def _handle(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            presented = self.headers.get("x-functions-key") or params.get("code")
            level = keys.level_of(presented) if keys.required else 2

            if url.path.startswith("/admin/functions/") and self.command == "POST":
                name = unquote(url.path.rsplit("/", 1)[-1])
                if level < 2:
                    return self._error(401, "the admin (master) key is required")
                return self._run_other(name)
            if not url.path.lower().startswith("/api/") and url.path.lower() != "/api":
                return self._error(404, "not found")
            route, route_params, wrong_method = index.match(unquote(url.path[4:]) or "/", self.command)
            if route is None:
                return self._error(405 if wrong_method else 404, "method not allowed" if wrong_method else "not found")
            if level < LEVELS.get(route.auth_level, 1):
                return self._error(401, f"this route needs a {route.auth_level} key")
            host = self.headers.get("Host") or f"{host_name}:{port}"
            request = func.HttpRequest(self.command, f"http://{host}{self.path}", headers=dict(self.headers.items()),
                                       params=params, route_params=route_params, body=body)
            try:
                response = route.handler(request)
            except Exception:
                # The real host answers 500 with no body; the trace goes to the log, never to the client.
                log.error("function %s failed:\n%s", route.name, traceback.format_exc())
                return self._send(500, b"", {})
            headers = dict(response.headers.items())
            if not any(k.lower() == "content-type" for k in headers):
                # As the real worker does (azure.functions.http.HttpResponseConverter.encode): an HttpResponse's
                # mimetype becomes its Content-Type. Dropping it left /api/health without one (tests/test_fuzz_http.py).
                mimetype = response.mimetype
                headers["Content-Type"] = f"{mimetype}; charset={response.charset}" if mimetype.startswith("text/") \
                    else mimetype
            self._send(response.status_code, response.get_body() or b"", headers)

        def _run_other(self, name: str) -> None:
            function = index.others.get(name)
            if function is None:
                return self._error(404, f"no non-HTTP function named {name!r}")
            threading.Thread(target=_run_logged, args=(function, name), daemon=True).start()
            self._send(202, b"", {})

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    host_name = host
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.function_index = index
    return server


def run_timer(function: Callable, past_due: bool = False):
    """Invoke a timer function the way the host does."""
    # func.TimerRequest is the abstract type the function is annotated with; the host passes this concrete one.
    from azure.functions.timer import TimerRequest

    return function(TimerRequest(past_due=past_due))


def _run_logged(function: Callable, name: str) -> None:
    try:
        run_timer(function)
    except Exception:
        log.error("function %s failed:\n%s", name, traceback.format_exc())


def resolve_setting(value: str, environ=os.environ) -> str:
    """A binding expression as the host resolves it: %NAME% is the app setting NAME. Locally a setting the app
    declares with a default (shared/config/settings.py) resolves to that default when unset, as
    local.settings.json.example sets it."""
    m = re.fullmatch(r"%(\w+)%", value or "")
    if not m:
        return value
    name = m.group(1)
    if environ.get(name):
        return environ[name]
    from shared.config.settings import specs

    default = next((spec.default for spec in specs() if spec.name == name), None)
    if default is None:
        raise ValueError(f"the binding expression {value} names app setting {name}, which is not set")
    return default


class TimerScheduler:
    """Runs the app's timer functions at their NCRONTAB schedules, as the host does: one invocation of a function
    at a time (the host's singleton lock), and after it ends the next occurrence after that moment (occurrences
    that passed during a long invocation are not made up). `invocations` counts them by function name."""

    def __init__(self, app: func.FunctionApp, environ=os.environ):
        from croniter import croniter

        index = FunctionIndex.of(app)
        self._croniter = croniter
        self._schedules = {}
        for name, meta in index.bindings.items():
            trigger = next(b for b in meta["bindings"] if b["type"].endswith("Trigger"))
            if trigger["type"] == "timerTrigger":
                self._schedules[name] = (resolve_setting(trigger["schedule"], environ), index.others[name])
        self.invocations: dict[str, int] = {name: 0 for name in self._schedules}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> "TimerScheduler":
        for name, (schedule, function) in self._schedules.items():
            thread = threading.Thread(target=self._loop, args=(name, schedule, function), daemon=True,
                                      name=f"timer-{name}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Start no new invocation, and wait for the running ones to end."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _loop(self, name: str, schedule: str, function: Callable) -> None:
        while not self._stop.is_set():
            now = dt.datetime.now(dt.timezone.utc)
            following = self._croniter(schedule, now, second_at_beginning=True).get_next(dt.datetime)
            if self._stop.wait(max(0.0, (following - dt.datetime.now(dt.timezone.utc)).total_seconds())):
                return
            self.invocations[name] += 1
            _run_logged(function, name)
            time.sleep(0)  # let a stop() that raced the invocation win before the next wait
