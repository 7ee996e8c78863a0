"""Tests of devstack/cosmos_server.js through the real azure-cosmos SDK.

The launcher wraps the npm package @vercel/cosmosdb-server (1.0.1) and corrects the defects listed in
shared/reference/local-stack.md; each test below checks one of them the way the Python SDK sees it.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import urllib3.connection
from azure.core import MatchConditions
from azure.cosmos import CosmosClient, PartitionKey, exceptions

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

ROOT = Path(__file__).resolve().parents[1]
SERVER_JS = ROOT / "devstack" / "cosmos_server.js"
EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
LISTENING = re.compile(r"^cosmos listening on (https://127\.0\.0\.1:(\d+))$")
START_TIMEOUT_S = 15


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """A running `node devstack/cosmos_server.js` process."""

    def __init__(self, *extra_args: str, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            ["node", str(SERVER_JS), "--host", "127.0.0.1", "--port", str(self.port), *extra_args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, **(env or {})},
        )
        line = self._read_line(START_TIMEOUT_S)
        match = LISTENING.match(line.strip())
        if not match or int(match.group(2)) != self.port:
            self.stop()
            raise RuntimeError(f"cosmos server did not start: {line!r}\n{self.stderr()}")
        self.endpoint = match.group(1)
        # nothing else is printed on stdout; drain it anyway so the pipe can never fill up
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def _read_line(self, timeout: float) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return result[0] if result else ""

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server():
    # the debug header lets the [P2] tests see whether a page was cut from the cached result
    srv = _Server(env={"COSMOS_SERVER_DEBUG_HEADERS": "1"})
    try:
        yield srv
    finally:
        code = srv.stop()
        assert code == 0, f"server exited with {code} on SIGTERM"


@pytest.fixture(scope="module")
def client(server):
    return CosmosClient(server.endpoint, credential=EMULATOR_KEY)


@pytest.fixture(scope="module")
def database(client):
    return client.create_database_if_not_exists("calllogs-test")


@pytest.fixture()
def container(database):
    """A fresh container partitioned on /day, with TTL switched on (-1: items opt in)."""
    name = f"c{uuid.uuid4().hex[:10]}"
    cont = database.create_container_if_not_exists(
        id=name, partition_key=PartitionKey(path="/day"), default_ttl=-1
    )
    yield cont
    database.delete_container(name)


@pytest.fixture()
def plain_container(database):
    """A fresh container partitioned on /day with TTL off (the [P2] result cache is off when TTL is on)."""
    name = f"c{uuid.uuid4().hex[:10]}"
    cont = database.create_container_if_not_exists(id=name, partition_key=PartitionKey(path="/day"))
    yield cont
    database.delete_container(name)


def _unverified_connection(port: int) -> http.client.HTTPSConnection:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)


def _timed_get(conn: http.client.HTTPSConnection) -> float:
    start = time.perf_counter()
    conn.request("GET", "/")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------------
# set-up calls


def test_database_and_container_if_not_exists_are_idempotent(client, database):
    again = client.create_database_if_not_exists("calllogs-test")
    assert again.read()["id"] == "calllogs-test"
    name = f"c{uuid.uuid4().hex[:10]}"
    first = database.create_container_if_not_exists(
        id=name, partition_key=PartitionKey(path="/day"), default_ttl=3600
    )
    second = database.create_container_if_not_exists(
        id=name, partition_key=PartitionKey(path="/day"), default_ttl=3600
    )
    props = second.read()
    assert props["defaultTtl"] == 3600
    assert props["partitionKey"]["paths"] == ["/day"]
    assert first.id == second.id
    database.delete_container(name)


# --------------------------------------------------------------------------------------------------
# point operations (defect 1)


def test_upsert_then_read_back(container):
    written = container.upsert_item({"id": "call-1", "day": "2024-05-01", "duration": 42})
    assert written["_etag"] and isinstance(written["_ts"], int)
    got = container.read_item("call-1", partition_key="2024-05-01")
    assert got["duration"] == 42
    assert got["_etag"] == written["_etag"]


def test_missing_id_or_wrong_partition_is_not_found(container):
    container.upsert_item({"id": "call-1", "day": "2024-05-01"})
    with pytest.raises(exceptions.CosmosResourceNotFoundError) as err:
        container.read_item("nope", partition_key="2024-05-01")
    assert err.value.status_code == 404
    with pytest.raises(exceptions.CosmosResourceNotFoundError):
        container.read_item("call-1", partition_key="2024-05-02")
    with pytest.raises(exceptions.CosmosResourceNotFoundError):
        container.delete_item("nope", partition_key="2024-05-01")
    with pytest.raises(exceptions.CosmosResourceNotFoundError):
        container.replace_item("nope", {"id": "nope", "day": "2024-05-01"})
    with pytest.raises(exceptions.CosmosResourceNotFoundError):
        container.patch_item("nope", "2024-05-01", [{"op": "set", "path": "/x", "value": 1}])


def test_etag_condition_and_patch(container):
    first = container.upsert_item({"id": "e", "day": "d1", "n": 1})
    second = container.replace_item(
        "e", {"id": "e", "day": "d1", "n": 2}, etag=first["_etag"], match_condition=MatchConditions.IfNotModified
    )
    assert second["_etag"] != first["_etag"]
    with pytest.raises(exceptions.CosmosAccessConditionFailedError):
        container.replace_item(
            "e", {"id": "e", "day": "d1", "n": 3}, etag=first["_etag"], match_condition=MatchConditions.IfNotModified
        )
    with pytest.raises(exceptions.CosmosAccessConditionFailedError):
        container.upsert_item(
            {"id": "e", "day": "d1", "n": 3}, etag=first["_etag"], match_condition=MatchConditions.IfNotModified
        )
    patched = container.patch_item(
        "e", "d1", [{"op": "incr", "path": "/n", "value": 5}, {"op": "set", "path": "/tag", "value": "x"}]
    )
    assert patched["n"] == 7 and patched["tag"] == "x"
    # a conditional patch is evaluated against the target partition only
    container.upsert_item({"id": "e", "day": "d2"})
    with pytest.raises(exceptions.CosmosAccessConditionFailedError):
        container.patch_item("e", "d2", [{"op": "set", "path": "/z", "value": 1}], filter_predicate="from c where c.n = 7")
    assert container.read_item("e", "d1")["n"] == 7


# --------------------------------------------------------------------------------------------------
# queries (defect 2)


def _seed(container, per_day: int = 40, days=("d1", "d2", "d3")) -> None:
    for day in days:
        ops = [("upsert", ({"id": f"{day}-{i:03d}", "day": day, "n": i},)) for i in range(per_day)]
        container.execute_item_batch(batch_operations=ops, partition_key=day)


def test_partition_key_query_returns_only_that_partition(container):
    _seed(container, per_day=5)
    rows = list(container.query_items("SELECT * FROM c", partition_key="d2"))
    assert len(rows) == 5 and {r["day"] for r in rows} == {"d2"}
    count = list(container.query_items("SELECT VALUE COUNT(1) FROM c", partition_key="d1"))
    assert count == [5]
    top = [r["n"] for r in container.query_items("SELECT TOP 2 * FROM c ORDER BY c.n DESC", partition_key="d3")]
    assert top == [4, 3]


def test_distinct_value_gives_each_value_once_across_partitions_and_pages(container):
    """[Q1] SELECT DISTINCT VALUE, as Cosmos DB serves it: each value once, whatever the page size asked."""
    _seed(container, per_day=5)
    days = list(container.query_items("SELECT DISTINCT VALUE c.day FROM c WHERE c.n >= @n",
                                      parameters=[{"name": "@n", "value": 3}], enable_cross_partition_query=True,
                                      max_item_count=1))
    assert sorted(days) == ["d1", "d2", "d3"]
    assert list(container.query_items("SELECT DISTINCT VALUE c.day FROM c WHERE c.n > 99",
                                      enable_cross_partition_query=True)) == []
    assert sorted(container.query_items("select distinct value c.n from c", partition_key="d2")) == [0, 1, 2, 3, 4]


def test_cross_partition_query(container):
    _seed(container, per_day=5)
    rows = list(container.query_items("SELECT * FROM c", enable_cross_partition_query=True))
    assert len(rows) == 15
    # WHERE without the partition key, no cross-partition flag: served, not rejected
    rows = list(container.query_items("SELECT * FROM c WHERE c.n >= @n", parameters=[{"name": "@n", "value": 3}]))
    assert sorted(r["id"] for r in rows) == sorted(f"{d}-{i:03d}" for d in ("d1", "d2", "d3") for i in (3, 4))
    ordered = [r["n"] for r in container.query_items("SELECT * FROM c ORDER BY c.n", enable_cross_partition_query=True)]
    assert ordered == sorted(ordered) and len(ordered) == 15


def _all_pages(container, query: str, page_size: int, **kwargs) -> tuple[list[dict], int]:
    """Reads every page, restarting from the continuation token each time."""
    rows: list[dict] = []
    token = None
    pages = 0
    while True:
        pager = container.query_items(query, max_item_count=page_size, **kwargs).by_page(token)
        page = list(next(pager))
        assert len(page) <= page_size
        rows += page
        pages += 1
        token = pager.continuation_token
        if not token:
            return rows, pages


def test_paging_with_continuation_tokens(container):
    _seed(container, per_day=40)
    rows, pages = _all_pages(container, "SELECT * FROM c", 7, partition_key="d2")
    ids = [r["id"] for r in rows]
    assert len(ids) == 40 and len(set(ids)) == 40 and pages == 6
    assert {r["day"] for r in rows} == {"d2"}

    rows, pages = _all_pages(container, "SELECT * FROM c", 25, enable_cross_partition_query=True)
    ids = [r["id"] for r in rows]
    assert len(ids) == 120 and len(set(ids)) == 120 and pages == 5

    rows, _ = _all_pages(container, "SELECT * FROM c ORDER BY c.n DESC", 9, partition_key="d1")
    assert [r["n"] for r in rows] == list(range(39, -1, -1))

    # iterating the pages of one pager also returns every row once
    seen = [r["id"] for page in container.query_items("SELECT * FROM c", max_item_count=11,
                                                       enable_cross_partition_query=True).by_page()
            for r in page]
    assert len(seen) == 120 and len(set(seen)) == 120


# --------------------------------------------------------------------------------------------------
# continuation pages cut from the cached result ([P2])

CACHE_HEADER = "x-devstack-result-cache"


def _seed_many(container, per_day: int, days=("d1", "d2")) -> None:
    """`per_day` documents in each day; n repeats (ties for ORDER BY), pad is not projected."""
    for day in days:
        for start in range(0, per_day, 100):
            ops = [("create", ({"id": f"{day}-{i:05d}", "day": day, "n": (i * 7) % 37, "s": f"s{i % 5}",
                                "pad": "x" * 50},)) for i in range(start, min(start + 100, per_day))]
            container.execute_item_batch(batch_operations=ops, partition_key=day)


def _cached_pages(container, query: str, page_size: int, between=None, **kwargs):
    """Every page, restarting from the continuation token each time: (pages, tokens, cache outcomes).
    `between(page_number)` runs after each page that has a continuation."""
    pages, tokens, outcomes = [], [], []
    token = None
    while True:
        pager = container.query_items(query, max_item_count=page_size, **kwargs).by_page(token)
        page = list(next(pager))
        outcomes.append(container.client_connection.last_response_headers.get(CACHE_HEADER))
        pages.append(page)
        token = pager.continuation_token
        tokens.append(token)
        if not token:
            return pages, tokens, outcomes
        if between:
            between(len(pages))


DAY = [{"name": "@day", "value": "d1"}]
PAGED_QUERIES = [
    ("SELECT c.id, c.n, c.s FROM c WHERE c.day = @day", DAY, {"partition_key": "d1"}),
    ("SELECT c.id, c.n FROM c WHERE c.day = @day ORDER BY c.n DESC", DAY, {"partition_key": "d1"}),
    ("SELECT c.id, c.n, c.s FROM c ORDER BY c.n", None, {"enable_cross_partition_query": True}),
    ("SELECT TOP 1500 c.id, c.day FROM c WHERE c.n > 3 ORDER BY c.s DESC", None, {"enable_cross_partition_query": True}),
]


@pytest.mark.parametrize("query,params,scope", PAGED_QUERIES)
def test_paged_query_from_cache_equals_unpaged(plain_container, query, params, scope):
    _seed_many(plain_container, per_day=1500)
    whole = list(plain_container.query_items(query, parameters=params, **scope))
    assert len(whole) >= 1000

    pages, tokens, outcomes = _cached_pages(plain_container, query, 100, parameters=params, **scope)
    assert [r for page in pages for r in page] == whole
    assert all(len(page) == 100 for page in pages[:-1])
    assert outcomes[0] == "miss" and set(outcomes[1:]) == {"hit"}, outcomes

    # The same pages with the cache defeated before every page: a write the query cannot see (another
    # partition, or, across partitions, a document that sorts before every continuation point or fails the
    # WHERE) still counts as a write, so each page runs the whole query. Same items, same tokens.
    def unseen_write(_):
        plain_container.upsert_item({"id": "unseen", "day": "d9", "n": -1, "s": "a"})

    uncached, uncached_tokens, uncached_outcomes = _cached_pages(
        plain_container, query, 100, between=unseen_write, parameters=params, **scope
    )
    assert set(uncached_outcomes) == {"miss"}, uncached_outcomes
    assert uncached == pages and uncached_tokens == tokens


def test_read_feed_pages_from_cache(plain_container):
    _seed_many(plain_container, per_day=1200)
    whole = list(plain_container.read_all_items())
    rows, outcomes = [], []
    for page in plain_container.read_all_items(max_item_count=100).by_page():
        rows += list(page)
        outcomes.append(plain_container.client_connection.last_response_headers.get(CACHE_HEADER))
    assert [r["id"] for r in rows] == [r["id"] for r in whole] and len(rows) == 2400
    assert outcomes[0] == "miss" and set(outcomes[1:]) == {"hit"}, outcomes


@pytest.mark.parametrize("order_by", ["", " ORDER BY c.n DESC"])
def test_write_between_pages_is_seen_by_the_next_page(plain_container, order_by):
    _seed_many(plain_container, per_day=1000, days=("d1",))
    query = f"SELECT c.id, c.n, c.s FROM c WHERE c.day = @day{order_by}"
    first = list(plain_container.query_items(query, parameters=DAY, partition_key="d1"))

    def writes(page_number):
        seen = {r["id"] for page in pages_so_far for r in page}
        if page_number == 2:
            # n = 0 sorts after every page read so far with ORDER BY n DESC; a new _rid sorts last without
            plain_container.upsert_item({"id": "new-doc", "day": "d1", "n": 0, "s": "new"})
        elif page_number == 3:
            victim = first[-5]["id"]
            assert victim not in seen
            plain_container.delete_item(victim, partition_key="d1")
        elif page_number == 4:
            target = first[-10]["id"]
            assert target not in seen
            plain_container.patch_item(target, "d1", [{"op": "set", "path": "/s", "value": "patched"}])

    pages_so_far: list[list[dict]] = []
    token = None
    outcomes = []
    while True:
        pager = plain_container.query_items(query, parameters=DAY, partition_key="d1", max_item_count=100).by_page(token)
        pages_so_far.append(list(next(pager)))
        outcomes.append(plain_container.client_connection.last_response_headers.get(CACHE_HEADER))
        token = pager.continuation_token
        if not token:
            break
        writes(len(pages_so_far))
    rows = [r for page in pages_so_far for r in page]

    # exactly what the query returns now, since every write landed after the pages already read
    now = list(plain_container.query_items(query, parameters=DAY, partition_key="d1"))
    assert rows == now
    ids = [r["id"] for r in rows]
    assert "new-doc" in ids and first[-5]["id"] not in ids
    assert next(r for r in rows if r["id"] == first[-10]["id"])["s"] == "patched"
    assert len(ids) == len(set(ids)) == 1000
    # page 1 fills the cache, pages 2-4 hit it; each write makes the next page run the query again
    assert outcomes[:6] == ["miss", "hit", "miss", "miss", "miss", "hit"], outcomes


def test_result_cache_is_dropped_by_replace_container_and_off_with_ttl(database, plain_container, container):
    _seed_many(plain_container, per_day=300, days=("d1",))
    query = "SELECT c.id FROM c"
    pager = plain_container.query_items(query, partition_key="d1", max_item_count=50).by_page()
    conn = plain_container.client_connection
    next(pager)
    next(pager)
    assert conn.last_response_headers.get(CACHE_HEADER) == "hit"
    # new properties (the indexing policy decides which ORDER BY queries are served): run the query again
    composite = [[{"path": "/n", "order": "ascending"}, {"path": "/s", "order": "descending"}]]
    database.replace_container(plain_container, partition_key=PartitionKey(path="/day"),
                               indexing_policy={"compositeIndexes": composite})
    assert len(list(next(pager))) == 50
    assert conn.last_response_headers.get(CACHE_HEADER) == "miss"
    database.replace_container(plain_container, partition_key=PartitionKey(path="/day"), default_ttl=3600)
    assert len(list(next(pager))) == 50
    # TTL is now on: expiry would change results without a write, so nothing is cached
    assert conn.last_response_headers.get(CACHE_HEADER) == "off"

    _seed_many(container, per_day=300, days=("d1",))  # default_ttl=-1: TTL on
    pages, _, outcomes = _cached_pages(container, query, 100, partition_key="d1")
    assert set(outcomes) == {"off"} and sum(len(p) for p in pages) == 300


@pytest.mark.timeout(240)
def test_paging_a_large_partition_runs_the_query_once(plain_container):
    """20,000 rows of one day in pages of 500: the query is evaluated for the first page only."""
    _seed_many(plain_container, per_day=20000, days=("d1",))
    query = "SELECT c.id, c.n, c.s FROM c WHERE c.day = @day"
    for order_by in ("", " ORDER BY c.n"):
        start = time.perf_counter()
        pages, _, outcomes = _cached_pages(plain_container, query + order_by, 500, parameters=DAY, partition_key="d1")
        elapsed = time.perf_counter() - start
        assert sum(len(p) for p in pages) == 20000 and len(pages) == 40
        assert outcomes.count("miss") == 1 and outcomes.count("hit") == 39, outcomes
        print(f"\n[P2] 20,000 rows in pages of 500{order_by or ''}: {elapsed:.2f} s")


# --------------------------------------------------------------------------------------------------
# TTL (defect 3)


def test_ttl_expiry_hides_documents(database, container):
    short = database.create_container_if_not_exists(
        id=f"c{uuid.uuid4().hex[:10]}", partition_key=PartitionKey(path="/day"), default_ttl=1
    )
    try:
        container.upsert_item({"id": "gone", "day": "d", "ttl": 1})
        container.upsert_item({"id": "kept", "day": "d"})  # container default -1: never expires
        container.upsert_item({"id": "pinned", "day": "d", "ttl": -1})
        short.upsert_item({"id": "gone-too", "day": "d"})  # container default 1 s
        short.upsert_item({"id": "stays", "day": "d", "ttl": 3600})
        assert container.read_item("gone", "d")["id"] == "gone"
        time.sleep(2.1)
        with pytest.raises(exceptions.CosmosResourceNotFoundError):
            container.read_item("gone", "d")
        with pytest.raises(exceptions.CosmosResourceNotFoundError):
            short.read_item("gone-too", "d")
        assert sorted(r["id"] for r in container.query_items("SELECT * FROM c", partition_key="d")) == ["kept", "pinned"]
        assert [r["id"] for r in short.query_items("SELECT * FROM c", enable_cross_partition_query=True)] == ["stays"]
        # an expired id can be created again
        assert container.create_item({"id": "gone", "day": "d"})["id"] == "gone"
    finally:
        database.delete_container(short)


def test_replace_container_keeps_documents(database, container):
    container.upsert_item({"id": "a", "day": "d"})
    database.replace_container(container, partition_key=PartitionKey(path="/day"), default_ttl=3600)
    assert container.read()["defaultTtl"] == 3600
    assert container.read_item("a", "d")["id"] == "a"


# --------------------------------------------------------------------------------------------------
# transactional batch (defect 4)


def test_batch_applies_all_operations(container):
    container.upsert_item({"id": "to-replace", "day": "d", "v": 1})
    container.upsert_item({"id": "to-delete", "day": "d"})
    results = container.execute_item_batch(
        batch_operations=[
            ("upsert", ({"id": "up", "day": "d"},)),
            ("create", ({"id": "new", "day": "d"},)),
            ("replace", ("to-replace", {"id": "to-replace", "day": "d", "v": 2})),
            ("delete", ("to-delete",)),
            ("read", ("up",)),
            ("patch", ("new", [{"op": "set", "path": "/p", "value": True}])),
        ],
        partition_key="d",
    )
    assert [r["statusCode"] for r in results] == [201, 201, 200, 204, 200, 200]
    assert results[4]["resourceBody"]["id"] == "up"
    assert container.read_item("to-replace", "d")["v"] == 2
    assert container.read_item("new", "d")["p"] is True
    with pytest.raises(exceptions.CosmosResourceNotFoundError):
        container.read_item("to-delete", "d")


def test_failing_batch_applies_nothing(container):
    container.upsert_item({"id": "existing", "day": "d", "v": 1})
    container.upsert_item({"id": "victim", "day": "d"})
    with pytest.raises(exceptions.CosmosBatchOperationError) as err:
        container.execute_item_batch(
            batch_operations=[
                ("upsert", ({"id": "fresh", "day": "d"},)),
                ("replace", ("existing", {"id": "existing", "day": "d", "v": 2})),
                ("delete", ("victim",)),
                ("create", ({"id": "existing", "day": "d"},)),  # 409: already exists
                ("upsert", ({"id": "after", "day": "d"},)),
            ],
            partition_key="d",
        )
    assert err.value.error_index == 3
    assert err.value.status_code == 409
    assert [r["statusCode"] for r in err.value.operation_responses] == [424, 424, 424, 409, 424]
    for missing in ("fresh", "after"):
        with pytest.raises(exceptions.CosmosResourceNotFoundError):
            container.read_item(missing, "d")
    assert container.read_item("existing", "d")["v"] == 1
    assert container.read_item("victim", "d")["id"] == "victim"


# --------------------------------------------------------------------------------------------------
# keep-alive (defect 5) and --delay-ms (6)


def test_keep_alive_reuses_connections(server, container, monkeypatch):
    opened = []
    original = urllib3.connection.HTTPConnection._new_conn

    def counting_new_conn(self):
        opened.append(self)
        return original(self)

    monkeypatch.setattr(urllib3.connection.HTTPConnection, "_new_conn", counting_new_conn)
    for i in range(30):
        container.upsert_item({"id": f"k{i}", "day": "d"})
    assert len(opened) <= 1, f"{len(opened)} new connections for 30 upserts"
    headers = container.client_connection.last_response_headers
    assert headers.get("Connection", "").lower() == "keep-alive"

    conn = _unverified_connection(server.port)
    try:
        _timed_get(conn)
        sock = conn.sock
        _timed_get(conn)
        assert conn.sock is sock  # the second request went over the same TLS connection
    finally:
        conn.close()


def test_delay_ms_slows_each_request(server):
    delay_s = 0.3
    slow = _Server("--delay-ms", str(int(delay_s * 1000)))
    try:
        fast_conn, slow_conn = _unverified_connection(server.port), _unverified_connection(slow.port)
        try:
            _timed_get(fast_conn), _timed_get(slow_conn)  # handshakes
            fast = min(_timed_get(fast_conn) for _ in range(2))
            delayed = min(_timed_get(slow_conn) for _ in range(2))
        finally:
            fast_conn.close()
            slow_conn.close()
        assert delay_s - 0.01 <= delayed <= fast + delay_s + 0.25, (fast, delayed)
    finally:
        assert slow.stop() == 0  # SIGTERM exits cleanly, even with a connection that was kept alive
