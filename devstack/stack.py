"""Starts and stops the local stand-ins for Azure: Azurite (Blob), the Cosmos DB server, the Graph simulator.

Each runs as its own process group on a loopback port, so stopping the stack kills every process it started,
grandchildren included. `make run` and the tests' session fixture both use this module.

    python -m devstack.stack            # start with the default ports, print the settings, wait for Ctrl-C
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = ROOT / "node_modules" / ".bin"

# Well-known, public development credentials of Azurite and the Cosmos DB emulator (not secrets).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
COSMOS_EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
SIMULATOR_TOKEN = "local-simulator-token"

DEFAULT_PORTS = {"blob": 10000, "cosmos": 8081, "graph": 8765}


class StackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Service:
    name: str
    argv: list[str]
    port: int
    log_path: Path
    # Seconds to wait after SIGTERM before SIGKILL. Azurite waits for idle keep-alive clients to hang up before
    # it exits; with in-memory persistence there is nothing to flush, so it gets a short grace.
    grace: float = 10
    # A line the service prints when it is ready; until then an open port is not enough (the Cosmos server
    # replays its journal after binding its port).
    ready_text: str | None = None
    process: subprocess.Popen | None = None

    def start(self) -> None:
        if _port_open(self.port):
            raise StackError(f"{self.name}: port {self.port} is already in use (another stack running? "
                             f"stop it, or pick other ports)")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        # A new session makes the service its own process group: stop() can then signal the whole group.
        self.process = subprocess.Popen(self.argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StackError(f"{self.name} exited with code {self.process.returncode}:\n{self.log_tail()}")
            if _port_open(self.port) and (self.ready_text is None or self.ready_text in self._log_text()):
                return
            time.sleep(0.1)
        raise StackError(f"{self.name} did not answer on port {self.port} in time:\n{self.log_tail()}")

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        pgid = self.process.pid
        for sig, wait in ((signal.SIGTERM, self.grace), (signal.SIGKILL, 5)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # The leader may be gone while a grandchild lingers in the group: make sure none is left.
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class Stack:
    """The three local services. Use as a context manager, or start()/stop()."""

    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    state_dir: Path = ROOT / ".devstack"
    graph_args: list[str] = field(default_factory=list)
    cosmos_delay_ms: int = 0
    # Keep Blob and Cosmos data on disk under state_dir, so a service stopped and started again (fault-injection
    # tests) still has what it held. Off by default: make run and the tests start from empty stores.
    persist: bool = False
    services: list[Service] = field(default_factory=list)

    @classmethod
    def on_free_ports(cls, **kwargs) -> "Stack":
        ports = {name: free_port() for name in DEFAULT_PORTS}
        # A folder per stack for its logs (and data): stacks side by side must not share files.
        kwargs.setdefault("state_dir", ROOT / ".devstack" / "stacks" / str(ports["cosmos"]))
        return cls(ports=ports, **kwargs)

    # --- endpoints -------------------------------------------------------------------------------------
    @property
    def graph_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['graph']}"

    @property
    def cosmos_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['cosmos']}/"

    @property
    def blob_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['blob']}/{AZURITE_ACCOUNT}"

    @property
    def blob_connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                f"BlobEndpoint={self.blob_url};")

    def app_env(self) -> dict[str, str]:
        """The app settings that point the app at this stack."""
        return {
            "GRAPH_ENDPOINT": self.graph_url,
            "GRAPH_CREDENTIAL": "static_token",
            "GRAPH_STATIC_TOKEN": SIMULATOR_TOKEN,
            "COSMOS_ENDPOINT": self.cosmos_url,
            "COSMOS_KEY": COSMOS_EMULATOR_KEY,
            "STORAGE_CONNECTION_STRING": self.blob_connection_string,
        }

    # --- lifecycle -------------------------------------------------------------------------------------
    def _define(self) -> list[Service]:
        for tool in ("azurite-blob",):
            if not (NODE_BIN / tool).exists():
                raise StackError(f"{NODE_BIN / tool} is missing: run `npm ci` (make does) first")
        logs = self.state_dir / "logs"
        cosmos = ["node", str(ROOT / "devstack" / "cosmos_server.js"), "--host", "127.0.0.1",
                  "--port", str(self.ports["cosmos"]), "--delay-ms", str(self.cosmos_delay_ms)]
        blob = [str(NODE_BIN / "azurite-blob"), "--blobHost", "127.0.0.1", "--blobPort", str(self.ports["blob"]),
                "--silent", "--skipApiVersionCheck", "--loose"]
        blob += ["--location", str(self.state_dir / "azurite")] if self.persist else ["--inMemoryPersistence"]
        if self.persist:
            cosmos += ["--data-file", str(self.state_dir / "cosmos.jsonl")]
        graph = [sys.executable, "-m", "devstack.graphsim", "--host", "127.0.0.1",
                 "--port", str(self.ports["graph"]), "--token", SIMULATOR_TOKEN, *self.graph_args]
        return [Service("azurite", blob, self.ports["blob"], logs / "azurite.log", grace=1),
                Service("cosmos", cosmos, self.ports["cosmos"], logs / "cosmos.log", ready_text="cosmos listening"),
                Service("graphsim", graph, self.ports["graph"], logs / "graphsim.log")]

    def start(self, timeout: float = 60) -> "Stack":
        self.services = self._define()
        try:
            for service in self.services:
                service.start()
            deadline = time.monotonic() + timeout
            for service in self.services:
                service.wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def restart(self, name: str, timeout: float = 30) -> None:
        """Stop one service and start it again on the same port (fault-injection tests)."""
        service = self.service(name)
        service.stop()
        service.start()
        service.wait_ready(time.monotonic() + timeout)

    def pids(self) -> list[int]:
        return [s.process.pid for s in self.services if s.process is not None]

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    stack = Stack()
    with stack:
        print("local stack running; app settings:")
        for key, value in stack.app_env().items():
            print(f"  {key}={value}")
        print("Ctrl-C stops it.", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
