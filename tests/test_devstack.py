"""The stack script and the local Functions host."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import azure.functions as func
import pytest
import requests

from devstack.localhost import FunctionIndex, Keys, make_server
from devstack.stack import Stack

from .collecting import fresh_settings, served_app

ROOT = Path(__file__).resolve().parent.parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes; it only waits for its parent to reap it.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout.split("\n")
    children: dict[int, list[int]] = {}
    for line in out:
        if line.strip():
            p, pp = map(int, line.split())
            children.setdefault(pp, []).append(p)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def test_stopping_the_stack_leaves_no_process_behind():
    stack = Stack.on_free_ports().start()
    try:
        started = set(stack.pids())
        for pid in list(started):
            started |= _descendants(pid)
        assert len(started) >= 3
        assert all(_alive(p) for p in stack.pids())
    finally:
        stack.stop()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in started):
        time.sleep(0.1)
    assert not [p for p in started if _alive(p)]


def test_a_busy_port_is_reported_by_name(stack):
    clash = Stack(ports=dict(stack.ports))
    with pytest.raises(Exception, match="already in use"):
        clash.start()


def _demo_app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route(route="items/{id}", methods=["GET"])
    def item(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(f"{req.route_params['id']}|{req.params.get('q', '')}", headers={"X-Demo": "1"})

    @app.route(route="boom", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("secret detail")

    @app.route(route="echo", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
    def echo(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(req.get_body(), status_code=201)

    return app


@pytest.fixture
def host():
    def start(keys=None):
        server = make_server(_demo_app(), "127.0.0.1", 0, keys)
        import threading
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/api"
    servers = []
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_local_host_serves_routes_with_params_like_func_start(host):
    base = host()
    r = requests.get(f"{base}/items/42?q=x")
    assert (r.status_code, r.text, r.headers["X-Demo"]) == (200, "42|x", "1")
    assert requests.post(f"{base}/echo", data=b"hi").status_code == 201
    assert requests.get(f"{base}/echo").status_code == 405
    assert requests.get(f"{base}/nothing").status_code == 404


def test_local_host_hides_a_failing_function_behind_a_bare_500(host):
    r = requests.get(f"{host()}/boom")
    assert r.status_code == 500 and "secret" not in r.text and "Traceback" not in r.text


def test_local_host_demands_keys_only_when_asked(host):
    base = host(Keys(required=True, function_key="fk", admin_key="ak"))
    assert requests.get(f"{base}/items/1").status_code == 401
    assert requests.get(f"{base}/items/1", params={"code": "fk"}).status_code == 200
    assert requests.get(f"{base}/items/1", headers={"x-functions-key": "wrong"}).status_code == 401
    assert requests.post(f"{base}/echo", data=b"x", headers={"x-functions-key": "fk"}).status_code == 401
    assert requests.post(f"{base}/echo", data=b"x", headers={"x-functions-key": "ak"}).status_code == 201
    assert requests.get(f"{base}/boom").status_code == 500  # anonymous needs no key


def test_the_real_app_registers_its_functions_with_the_declared_triggers():
    from function_app import app

    index = FunctionIndex.of(app)
    assert "collect" in index.others
    timer = next(b for b in index.bindings["collect"]["bindings"] if b["type"] == "timerTrigger")
    assert timer["schedule"] == "%COLLECT_TIMER_SCHEDULE%"
    routes = {r.name: r for r in index.routes}
    assert routes["health"].auth_level == "anonymous"


def test_shared_never_imports_azure_functions():
    imports = re.compile(r"^\s*(import|from)\s+azure\.functions\b|^\s*from\s+azure\s+import\s+functions\b", re.M)
    offenders = [p.name for p in (ROOT / "shared").rglob("*.py") if imports.search(p.read_text())]
    assert not offenders
    code = "import sys, shared.config.settings, shared.api.health, shared.stores.schema; print('azure.functions' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_health_route_reports_both_stores(app_env):
    from function_app import app
    from shared.stores.schema import ensure_stores
    from shared.config.settings import load_settings

    ensure_stores(load_settings(app_env))
    health = FunctionIndex.of(app).function("health")
    response = health(func.HttpRequest("GET", "/api/health", body=b""))
    assert response.status_code == 200, response.get_body()
    assert b'"cosmos": "ok"' in response.get_body() and b'"blob": "ok"' in response.get_body()


def test_health_answers_json_with_its_content_type(stack):
    """The local host sends a function's mimetype as its Content-Type, as the Functions worker does: the health
    probe's JSON answer is labelled JSON, over real HTTP."""
    with served_app(fresh_settings(stack, stack.graph_url)) as served:
        response = requests.get(f"{served['api']}/health", timeout=60)
        assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
        assert response.json()["status"] == "healthy"
