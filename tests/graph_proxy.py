"""A real HTTP server in front of the Graph simulator that changes chosen pages on their way to the client: rows
the simulator never sends (a row without an id, a time years from its day) for the collector's tests.

Every request goes on to the simulator with the proxy's own address as Host, so the simulator's nextLinks point
back at the proxy and every page of a window passes through it. A rule edits the JSON of the pages whose path
it matches, at most `times` times; every other answer is passed on byte for byte.
"""
from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

PASSED_HEADERS = ("Authorization", "Accept", "client-request-id")
RETURNED_HEADERS = ("Content-Type", "Retry-After", "request-id", "client-request-id")


@dataclass
class Rule:
    matches: Callable[[str], bool]   # on the request path (with its query)
    edit: Callable[[dict], None]     # changes the page document in place
    times: int


def first_page(path: str) -> bool:
    return "$skip=" not in path


def page_at(skip: int) -> Callable[[str], bool]:
    return lambda path: f"$skip={skip}" in path


class GraphProxy:
    def __init__(self, upstream_url: str):
        upstream = urlsplit(upstream_url)
        self._upstream = (upstream.hostname, upstream.port)
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self.edited: list[str] = []  # paths of the pages a rule changed
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                status, headers, body = outer._forward(self.path, self.headers, self.headers.get("Host", ""))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def rewrite(self, matches: Callable[[str], bool], edit: Callable[[dict], None], times: int = 1) -> None:
        with self._lock:
            self._rules.append(Rule(matches, edit, times))

    def _rule_for(self, path: str) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.times > 0 and rule.matches(path):
                    rule.times -= 1
                    self.edited.append(path)
                    return rule
        return None

    def _forward(self, path: str, request_headers, host: str) -> tuple[int, dict, bytes]:
        connection = http.client.HTTPConnection(*self._upstream, timeout=30)
        try:
            headers = {name: request_headers[name] for name in PASSED_HEADERS if request_headers.get(name)}
            connection.request("GET", path, headers={**headers, "Host": host})
            response = connection.getresponse()
            body = response.read()
            returned = {name: response.headers[name] for name in RETURNED_HEADERS if response.headers.get(name)}
            status = response.status
        finally:
            connection.close()
        rule = self._rule_for(path) if status == 200 else None
        if rule is not None:
            document = json.loads(body)
            rule.edit(document)
            body = json.dumps(document).encode()
        return status, returned, body

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)
