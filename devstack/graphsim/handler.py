"""HTTP plumbing: the threaded server, and a handler that reads a request, routes it to the control API
or the Graph simulator, and writes the reply (or deliberately fails to, for the drop fault)."""
from __future__ import annotations

import socket
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from . import control
from .replies import Reply, json_reply


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every reply carries Content-Length
    server_version = "graphsim"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection is closed after this many seconds
    # Headers and body go out in two writes; with Nagle on, the second waits for the client's delayed ACK,
    # about 40 ms on every kept-alive request, which Graph does not add.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = self._read_body()
        simulator = self.server.simulator
        try:
            if urlsplit(self.path).path.split("/")[1:2] == ["_sim"]:
                reply = control.handle(simulator, self.command, self.path, body)
            else:
                reply = simulator.handle_graph(self.command, self.path, self.headers, self._base())
        except Exception as exc:  # a simulator bug: say so instead of hanging up
            traceback.print_exc(file=sys.stderr)
            reply = json_reply(500, {"error": {"code": "InternalServerError", "message": f"graphsim: {exc!r}"}})
        self._send(reply)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length and length.isdigit():
            return self.rfile.read(int(length))
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # no chunked bodies here: the stream cannot be resynchronised
        return b""

    def _base(self) -> str:
        """scheme://host[:port] as the client addressed this server, for nextLinks on any port."""
        host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
        return f"http://{host}"

    def _send(self, reply: Reply) -> None:
        if reply.delivery == "close":
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.sent_bytes())
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; nothing to tell it
        if reply.delivery == "half":
            self.close_connection = True

    def log_message(self, format: str, *args) -> None:
        """Quiet: the request log (GET /_sim/log) records Graph traffic."""


class SimulatorHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that can also cut its open keep-alive connections, so a stopped
    simulator stops answering on connections clients still hold in their pools."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], simulator):
        super().__init__(address, Handler)
        self.simulator = simulator
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request_thread(self, request, client_address) -> None:
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    def close_connections(self) -> None:
        with self._open_lock:
            for connection in self._open:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed by the other side
