"""(d) The OData feed: a week streamed through nextLinks, against reading the same rows straight from Cosmos.

A week of rows is collected once per mode. The app is served by `devstack.localhost.make_server` (the stand-in
for `func start`) in a process of its own (`python -m bench.d_feed --serve PORT`), as the Functions host
would run it; the client is this process, with `requests` (which asks for gzip, as Power BI does).

  stream   one client reads `PstnCalls?$filter=startDateTime ge <week start> and startDateTime lt <week end>`
           and every nextLink: rows per second.
  store    this process reads the same rows with the Cosmos SDK, one query per day partition: rows per second.
  engine   this process reads them through the feed's own query engine (its queries and paging, no HTTP or
           JSON): where between the two the time goes.
  clients  N clients stream the week over and over for a fixed time: rows per second in all, the latency of
           each page request (p50, p99) and the requests that failed.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import requests

from shared.api.odata_feed import MAX_PAGE_SIZE
from shared.collect.run import run_days
from shared.config.feeds import FEEDS
from shared.config.settings import Settings
from shared.stores.clients import cosmos_client

from .common import DAY, ROOT, BenchStack, log

WEEK_START = DAY + dt.timedelta(days=10)
WEEK = [WEEK_START + dt.timedelta(days=i) for i in range(7)]


def week_filter(days: list[dt.date] = WEEK) -> str:
    return f"startDateTime ge {days[0]}T00:00:00Z and startDateTime lt {days[-1] + dt.timedelta(days=1)}T00:00:00Z"


class FeedServer:
    """The app served on a free port by a separate process; a context manager."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.port = _free_port()
        self.process: subprocess.Popen | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def __enter__(self) -> "FeedServer":
        env = {**os.environ, **self.env, "LOCALHOST_REQUIRE_KEYS": "false"}
        self.process = subprocess.Popen([sys.executable, "-m", "bench.d_feed", "--serve", str(self.port)], cwd=ROOT,
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        line = self.process.stdout.readline()
        if "serving" not in line:
            rest = line + (self.process.stdout.read() if self.process.poll() is not None else "")
            self.__exit__()
            raise RuntimeError(f"the feed server did not start: {rest[-3000:]}")
        # Drain its log lines so a full pipe never blocks it.
        threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream(api: str, session: requests.Session, days: list[dt.date] = WEEK,
           latencies: list[float] | None = None, deadline: float | None = None) -> tuple[int, int]:
    """Read the week through the feed and every nextLink; (rows, pages). Raises on a failed page."""
    url = f"{api}/odata/PstnCalls?{urlencode({'$filter': week_filter(days)})}"
    rows = pages = 0
    while url:
        if deadline is not None and time.perf_counter() >= deadline:
            break
        started = time.perf_counter()
        response = session.get(url, timeout=300)
        if response.status_code != 200:
            raise RuntimeError(f"feed page answered {response.status_code}: {response.text[:300]}")
        body = response.json()
        if latencies is not None:
            latencies.append(time.perf_counter() - started)
        rows += len(body["value"])
        pages += 1
        url = body.get("@odata.nextLink")
    return rows, pages


def read_store(settings: Settings, days: list[dt.date] = WEEK) -> int:
    """The same rows straight from Cosmos, one query per day partition."""
    container = cosmos_client(settings).get_database_client(settings.cosmos_database) \
        .get_container_client(settings.container("pstn"))
    rows = 0
    for day in days:
        for _ in container.query_items("SELECT * FROM c WHERE c.day = @day", partition_key=day.isoformat(),
                                       parameters=[{"name": "@day", "value": day.isoformat()}]):
            rows += 1
    return rows


def read_engine(settings: Settings, days: list[dt.date] = WEEK, batch: int = MAX_PAGE_SIZE + 1) -> int:
    """The same rows through the feed's own store access (shared.stores.reader: day by day, in startUtc order,
    a page of rows and a look-ahead at a time), without HTTP, projection or JSON: what the feed's own work adds."""
    from shared.stores.reader import PartitionedReader, QuerySpec

    container = cosmos_client(settings).get_database_client(settings.cosmos_database) \
        .get_container_client(settings.container("pstn"))
    spec = QuerySpec(first_day=days[0].isoformat(), last_day=days[-1].isoformat())
    return sum(1 for _ in PartitionedReader(container).rows(spec, batch=batch))


@dataclass
class Concurrency:
    seconds: float
    rows: int
    requests: int
    errors: int
    latencies: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def concurrent_clients(api: str, clients: int, seconds: float, days: list[dt.date] = WEEK) -> Concurrency:
    """`clients` threads stream the week again and again until `seconds` have passed."""
    deadline = time.perf_counter() + seconds
    lock = threading.Lock()
    totals = {"rows": 0, "requests": 0, "errors": 0}
    latencies: list[float] = []

    def client() -> None:
        with requests.Session() as session:
            while time.perf_counter() < deadline:
                mine: list[float] = []
                try:
                    rows, _ = stream(api, session, days, mine, deadline)
                    errors = 0
                except Exception:
                    rows, errors = 0, 1
                with lock:
                    totals["rows"] += rows
                    totals["requests"] += len(mine) + errors
                    totals["errors"] += errors
                    latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, name=f"client-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Concurrency(time.perf_counter() - started, totals["rows"], totals["requests"], totals["errors"], latencies)


def prepare(stack: BenchStack, week_rows: int) -> Settings:
    """A database holding a week of `week_rows` PSTN rows, collected without Graph latency (set-up only)."""
    per_day, extra = divmod(week_rows, len(WEEK))
    overrides = {day.isoformat(): per_day + (1 if i < extra else 0) for i, day in enumerate(WEEK)}
    stack.simulate(rows_per_day=per_day, overrides=overrides, latency=0)
    settings = stack.settings(SUBWINDOWS="8", GRAPH_FUNCTION_REQUESTS_PER_MINUTE="6000",
                              GRAPH_APP_REQUESTS_PER_MINUTE="6000", GRAPH_TENANT_REQUESTS_PER_MINUTE="6000",
                              UPSERT_CONCURRENCY="8")
    report = run_days(settings, [FEEDS["pstn"]], WEEK[0], WEEK[-1])
    if report.failed or sum(o.rows for o in report.outcomes) != week_rows:
        raise RuntimeError(f"setting up the week failed: {[o.error for o in report.failed]}")
    return settings


def measure(stack: BenchStack, week_rows: int, figures, runs: int = 3, clients: int = 16,
            seconds: float = 30.0) -> None:
    """(d) in the stack's mode: `runs` times streaming and reading the store, then the concurrent clients."""
    mode = stack.mode.name
    settings = prepare(stack, week_rows)
    try:
        env = {**stack.stack.app_env(), "COSMOS_DATABASE": settings.cosmos_database,
               "ARCHIVE_CONTAINER": settings.archive_container, "GRAPH_STATIC_TOKEN": settings.graph_static_token}
        with FeedServer(env) as server, requests.Session() as session:
            # The first pass after the server starts is about 40% slower (its heap grows to page size, the first
            # queries of each day): reported on its own, not mixed into the medians. The store is read once too.
            cold_s, (cold_rows, _) = _timed(lambda: stream(server.api, session))
            figures.get("d.feed_cold", "(d) feed: first pass after the server started", "rows/s").add(
                mode, cold_rows / cold_s)
            read_store(settings)
            for _ in range(runs):
                feed_s, (rows, pages) = _timed(lambda: stream(server.api, session))
                store_s, stored = _timed(lambda: read_store(settings))
                engine_s, engine_rows = _timed(lambda: read_engine(settings))
                if rows != week_rows or stored != week_rows or engine_rows != week_rows:
                    raise RuntimeError(f"the feed returned {rows} rows, the store {stored} and the query engine "
                                       f"{engine_rows}, not {week_rows}")
                figures.get("d.engine", "(d) same rows via the feed's query engine, no HTTP", "rows/s").add(
                    mode, engine_rows / engine_s)
                figures.get("d.feed", f"(d) feed: {week_rows:,}-row week through nextLinks", "rows/s").add(
                    mode, rows / feed_s)
                figures.get("d.store", "(d) same rows straight from Cosmos", "rows/s").add(mode, stored / store_s)
                figures.get("d.pages", "(d) feed pages for the week", "pages").add(mode, pages)
                figures.get("d.ratio", "(d) feed rate / store read rate", "ratio", target=">= 0.5").add(
                    mode, (rows / feed_s) / (stored / store_s))
            log(f"  {mode}: {clients} concurrent clients for {seconds:g} s")
            load = concurrent_clients(server.api, clients, seconds)
            figures.get("d.clients_rows_s", f"(d) {clients} clients: rows/s in all", "rows/s").add(
                mode, load.rows / load.seconds)
            figures.get("d.clients_p50", f"(d) {clients} clients: page latency p50", "s").add(mode, load.percentile(0.5))
            figures.get("d.clients_p99", f"(d) {clients} clients: page latency p99", "s").add(
                mode, load.percentile(0.99))
            figures.get("d.clients_requests", f"(d) {clients} clients: page requests", "requests").add(
                mode, load.requests)
            figures.get("d.clients_errors", f"(d) {clients} clients: failed requests", "requests", target="== 0",
                        target_mode="all").add(mode, load.errors)
    finally:
        stack.drop(settings)


def _timed(action):
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def serve(port: int) -> None:
    """The feed server process: the app's HTTP functions on 127.0.0.1:port until terminated."""
    import logging
    import signal

    from devstack.localhost import make_server
    from function_app import app

    logging.basicConfig(level=logging.WARNING)
    server = make_server(app, "127.0.0.1", port)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"serving on {port}", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    else:
        raise SystemExit("usage: python -m bench.d_feed --serve PORT  (run by the benchmark runner)")
