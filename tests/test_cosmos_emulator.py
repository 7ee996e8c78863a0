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

    def __init__(self, *extra_args: str) -> None:
        self.port = _free_port()
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            ["node", str(SERVER_JS), "--host", "127.0.0.1", "--port", str(self.port), *extra_args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
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
    srv = _Server()
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
