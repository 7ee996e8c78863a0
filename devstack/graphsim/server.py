"""GraphSimulator: the simulator's state, how it answers a Graph request, and its lifecycle.

Which functions it answers, and how each one's window, rows, nextLinks and @odata.context look, come from
the function table (functions.py) held in the `functions` knob: the real two plus any declared extras.
"""
from __future__ import annotations

import json
import math
import threading
import time
from datetime import date, datetime

from . import knobs as knoblib
from .dataset import Dataset
from .faults import FaultBook, FaultRule
from .functions import real_function
from .graphurl import Query, context_url, next_link, parse_target
from .handler import SimulatorHTTPServer
from .journal import Journal
from .ratelimit import SlidingWindow
from .scopes import ScopeBook, app_identity
from .replies import PAGE_CONTENT_TYPE, GraphError, Reply, compact_json, error_reply, new_request_id
from .rows import FEEDS, VERSIONS, project
from .ticks import iso_day, to_ticks


class GraphSimulator:
    """A Microsoft Graph stand-in serving getPstnCalls and getDirectRoutingCalls over real HTTP, and any
    made-up functions declared with the `functions` knob, e.g.

        GraphSimulator(functions={"getMadeUpCalls": {"rows": "directRouting", "to_inclusive": False,
                                                      "row_type": "madeUpLogRow"}})

    Knobs (keyword arguments here, `configure()`, or POST /_sim/config) are listed in knobs.py.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int = 1, rows_per_day=2500,
                 token: str | None = None, **knobs):
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._knobs = {**knoblib.DEFAULTS,
                       **knoblib.validate({"seed": seed, "rows_per_day": rows_per_day, "token": token, **knobs})}
        self._dataset = Dataset(self._knobs["seed"])
        self._httpd: SimulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._restart_counters()

    # --- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> "GraphSimulator":
        self._httpd = SimulatorHTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"graphsim:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.close_connections()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = self._thread = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> "GraphSimulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- control --------------------------------------------------------------------------------------
    def configure(self, **updates) -> dict:
        """Merge knobs; returns the resulting configuration. Raises ValueError on a bad knob."""
        checked = knoblib.validate(updates)
        with self._lock:
            self._knobs = {**self._knobs, **checked}
            if self._knobs["seed"] != self._dataset.seed:
                self._dataset = Dataset(self._knobs["seed"])
            if "faults" in checked:
                self._faults = FaultBook(self._knobs["faults"])
            if "late_rows" in checked:
                self._late_since = (self._arrivals, time.monotonic())
            if "rate_limit" in checked:
                self._limiter = SlidingWindow(checked["rate_limit"]) if checked["rate_limit"] else None
            if "limits" in checked or "time_scale" in checked:
                self._scopes = ScopeBook(self._knobs["limits"], self._knobs["time_scale"])
            return knoblib.as_json(self._knobs)

    def config(self) -> dict:
        with self._lock:
            return knoblib.as_json(self._knobs)

    def reset(self) -> None:
        """Drop the fault rules; zero the counters, the log and the rate-limit window; restart the
        late-row clocks. Every other knob (seed included) stays."""
        with self._lock:
            self._knobs = {**self._knobs, "faults": ()}
            self._restart_counters()

    def _restart_counters(self) -> None:
        self._journal = Journal()
        self._arrivals = 0  # Graph requests received
        self._faults = FaultBook(self._knobs["faults"])
        self._limiter = SlidingWindow(self._knobs["rate_limit"]) if self._knobs["rate_limit"] else None
        self._scopes = ScopeBook(self._knobs["limits"], self._knobs["time_scale"])
        self._late_since = (0, time.monotonic())  # (arrivals, clock) when the late-row clocks started

    def stats(self) -> dict:
        with self._lock:
            return {**self._journal.stats(), "limits": self._scopes.stats()}

    def request_log(self) -> list[dict]:
        with self._lock:
            return list(self._journal.log)

    def truth(self, feed: str, from_dt: str | datetime | date, to_dt: str | datetime | date,
              api_version: str = "v1.0") -> list[dict]:
        """Every row a complete collection of this window must hold (late rows included), in API order,
        with the window semantics of the real function serving `feed`. Not limited to 90 days. An extra
        function serving `feed` has this truth too. Returns fresh copies."""
        # A JSON round trip: callers get rows exactly as a client decodes them, and cannot alter the cache.
        return json.loads(self.truth_json(feed, from_dt, to_dt, api_version))["value"]

    def truth_json(self, feed: str, from_dt, to_dt, api_version: str = "v1.0") -> bytes:
        """The truth as the control API sends it: {"value": [...]}."""
        if feed not in FEEDS:
            raise ValueError(f"feed must be one of {list(FEEDS)}, not {feed!r}")
        if api_version not in VERSIONS:
            raise ValueError(f"version must be one of {list(VERSIONS)}, not {api_version!r}")
        start, end = to_ticks(from_dt), to_ticks(to_dt)
        with self._lock:
            dataset, knobs = self._dataset, self._knobs
        window = dataset.window(feed, start, end, real_function(feed).to_inclusive, self._counter(knobs, feed),
                                knobs["late_rows"])
        return compact_json({"value": [project(row, feed, api_version) for row in window.all()]})

    @staticmethod
    def _counter(knobs: dict, feed: str):
        return lambda day: knoblib.rows_for(knobs, feed, iso_day(day))

    # --- Graph ----------------------------------------------------------------------------------------
    def handle_graph(self, method: str, target: str, headers, base: str) -> Reply:
        """Answer one Graph request; `base` is scheme://host:port as the client addressed us."""
        arrived = time.time()
        with self._lock:
            # Late rows count requests by arrival, so they appear after the right number of requests
            # even while earlier ones are still being answered.
            requests_before = self._arrivals - self._late_since[0]
            seconds_since = time.monotonic() - self._late_since[1]
            self._arrivals += 1
            knobs, dataset = self._knobs, self._dataset
        request_id = new_request_id()
        client_request_id = headers.get("client-request-id") or request_id
        if knobs["latency"]:
            time.sleep(knobs["latency"])
        fault: FaultRule | None = None
        limited, rows = False, 0
        try:
            if method != "GET":
                raise GraphError(405, f"The HTTP method '{method}' is not allowed.")
            _check_token(headers.get("Authorization"), knobs["token"])
            query = parse_target(target, knobs["functions"])
            with self._lock:
                now = time.monotonic()
                # Ask rate_limit without occupying it, so a request the scopes refuse does not use up a
                # place in rate_limit's window (only admitted requests occupy windows).
                wait = self._limiter.wait(now) if self._limiter else 0.0
                retry_after = max(1, math.ceil(wait)) if wait else None
                throttled = self._scopes.admit(query.function.name, _app(headers.get("Authorization")), now) \
                    if retry_after is None else None
                if retry_after is None and throttled is None:
                    if self._limiter:
                        self._limiter.occupy(now)
                    fault = self._faults.match(query.feed, query.skip)
            if throttled is not None:
                limited = True
                raise ScopeThrottled(*throttled)
            if retry_after is not None:
                limited = True
                raise GraphError(429, "Application is over its request limit for call records.",
                                 retry_after=retry_after)
            if fault and fault.kind == "slow":
                time.sleep(fault.seconds)
            if fault and fault.kind == "status":
                raise GraphError(fault.status, retry_after=fault.retry_after)
            visible = [r for r in knobs["late_rows"] if r.visible(requests_before, seconds_since)]
            reply, rows = self._page(query, knobs, dataset, visible, fault, base, target)
        except ScopeThrottled as throttled:
            reply = error_reply(GraphError(429, "Application is over its request limit for call records."),
                                request_id, client_request_id)
            reply.headers.update({"Retry-After": throttled.retry_after, "x-ms-throttle-scope": throttled.scope})
        except GraphError as error:
            reply = error_reply(error, request_id, client_request_id)
        reply.headers.update({"request-id": request_id, "client-request-id": client_request_id})
        with self._lock:
            self._journal.record(arrived=arrived, method=method, target=target, reply=reply, rows=rows,
                                 fault=fault.kind if fault else None, rate_limited=limited)
        return reply

    def _page(self, query: Query, knobs: dict, dataset: Dataset, late: list, fault: FaultRule | None,
              base: str, target: str) -> tuple[Reply, int]:
        """One page of rows, possibly broken by `fault`; returns the reply and the rows it delivers."""
        window = dataset.window(query.feed, query.start, query.end, query.end_inclusive,
                                self._counter(knobs, query.feed), late)
        page = [project(row, query.feed, query.version)
                for row in window.slice(query.skip, knobs["page_size"])]
        following = query.skip + len(page)
        link = next_link(base, query, following) if following < window.total else None
        kind = fault.kind if fault else None
        if kind == "empty_page":
            # No rows, but a nextLink that resumes where this page began: nothing is lost, so a client
            # that keeps following nextLinks past an empty page still collects everything. The extra
            # $skiptoken keeps the link distinct from this request's URL, which would otherwise be a loop.
            page, link = [], next_link(base, query, query.skip) + f"&$skiptoken=empty-{query.skip}"
        elif kind == "loop":
            link = base + target
        body = {"@odata.context": context_url(base, query), "@odata.count": len(page)}
        if link:
            body["@odata.nextLink"] = link
        body["value"] = page
        data = compact_json(body)
        reply = Reply(200, data, {"Content-Type": PAGE_CONTENT_TYPE})
        if kind == "invalid_json":
            reply.body = data[: len(data) // 2]
        elif kind == "drop":
            reply.delivery = "half" if fault.partial else "close"
        delivered = kind not in ("invalid_json", "drop")
        return reply, len(page) if delivered else 0


class ScopeThrottled(Exception):
    """A request one of Graph's scopes refused (scopes.py): its Retry-After and the scope's name."""

    def __init__(self, retry_after: str, scope: str):
        super().__init__(scope)
        self.retry_after, self.scope = retry_after, scope


def _app(authorization: str | None) -> tuple[str, str]:
    """The app scopes.py reads from the token (its label, its window's key); the label is `application` when
    the claim could not travel in a header: http.server writes headers as latin-1, and a claim with other
    characters would break the reply."""
    label, key = app_identity(authorization)
    return (label, key) if label.isascii() and label.isprintable() else ("application", key)


def _check_token(header: str | None, token: str | None) -> None:
    scheme, _, presented = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise GraphError(401, "Access token is empty.")
    if token is not None and presented.strip() != token:
        raise GraphError(401, "Access token validation failure. Invalid audience.")
