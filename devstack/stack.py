"""Starts and stops the local stand-ins for Azure: Azurite (Blob), the Cosmos DB server, the Graph simulator.

Each runs as its own process group on a loopback port, so stopping the stack kills every process it started,
grandchildren included. `make run` and the tests' session fixture both use this module.

A stack must not outlive the process that started it, however that process ends:
  * on Linux every service is told by the kernel (PR_SET_PDEATHSIG) to die when its parent does, SIGKILL
    included, since being a group of its own it sees no Ctrl-C and no hang-up of the terminal;
  * SIGTERM and SIGHUP become a KeyboardInterrupt (`signals_stop()`), so the owner stops the stack in order;
  * what a stack started is recorded in its state_dir (`running-<ports>.json`: owner and service pids, start
    times, command lines), so a later start on that state_dir stops a leftover whose owner is gone, after
    checking the processes are the ones recorded, and a port held by anything else is reported with the
    process that holds it.

    python -m devstack.stack            # start with the default ports, print the settings, wait for Ctrl-C
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
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

log = logging.getLogger("devstack")


class StackError(RuntimeError):
    pass


class StopSignal(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread like Ctrl-C so the same `except KeyboardInterrupt` and
    `finally` blocks stop the stack in order."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signals_stop() -> None:
    """Turn SIGTERM and SIGHUP (a closed terminal) into StopSignal in the main thread."""
    def raise_stop(signum, _frame):
        raise StopSignal(signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, raise_stop)


# --- dying with the parent ---------------------------------------------------------------------------------
PR_SET_PDEATHSIG = 1


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        # Looked up in the parent: the child between fork and exec should do as little as possible.
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    # prctl's arguments are unsigned longs: say so, or the upper halves of the registers are left undefined.
    prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    prctl.restype = ctypes.c_int
    return prctl


_prctl = _load_prctl()


def die_with_parent(death_signal: int) -> None:
    """Have the kernel send this process death_signal when its parent (e.g. `make`) dies, however it dies."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0)


def _die_with_parent(death_signal: int, parent: int):
    def preexec() -> None:
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0)
        # The parent may have died between fork and prctl; then no signal will ever come.
        if os.getppid() != parent:
            os._exit(1)
    return preexec


class _Spawner:
    """Forks services from one thread that lives as long as the process.

    The kernel sends the parent-death signal when the *thread* that forked the child ends, not the process: a
    stack started from a short-lived thread (a thread pool, a test helper) would lose its services as soon as
    that thread returned. The main thread lives as long as the process, so it forks directly."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs = None

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        if threading.current_thread() is threading.main_thread():
            return subprocess.Popen(argv, **kwargs)
        import queue

        with self._lock:
            if self._jobs is None:
                self._jobs = queue.SimpleQueue()
                threading.Thread(target=self._serve, name="devstack-spawner", daemon=True).start()
        done = threading.Event()
        box: dict = {}
        self._jobs.put((argv, kwargs, box, done))
        done.wait()
        if "error" in box:
            raise box["error"]
        return box["process"]

    def _serve(self) -> None:
        while True:
            argv, kwargs, box, done = self._jobs.get()
            try:
                box["process"] = subprocess.Popen(argv, **kwargs)
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc
            done.set()


_spawner = _Spawner()


# --- the process table (Linux /proc) -----------------------------------------------------------------------
def _start_time(pid: int) -> int | None:
    """Clock ticks after boot at which pid started (with the pid, it names one process for good), or None
    if there is no such live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):  # a zombie only waits to be reaped
        return None
    return int(fields[19])


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _identity(pid: int) -> dict:
    return {"pid": pid, "start": _start_time(pid), "cmdline": _cmdline(pid)}


def _is(recorded: dict, argv: list[str] | None = None) -> bool:
    """Whether the recorded process is still the one running under its pid: same start time, and its command
    line ends with the argv it was started with (an `env node` shebang puts the interpreter in front)."""
    pid = recorded.get("pid")
    if not isinstance(pid, int) or pid <= 0 or _start_time(pid) != recorded.get("start"):
        return False
    expected = argv if argv is not None else recorded.get("cmdline") or []
    actual = _cmdline(pid)
    return bool(expected) and actual[-len(expected):] == expected


def _describe(pid: int) -> str:
    return f"pid {pid}: {' '.join(_cmdline(pid)) or '?'}"


def port_holder(port: int) -> int | None:
    """The pid of a process of this user listening on 127.0.0.1/any address at port, if /proc shows one."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{parts[9]}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(entry.name)
        except OSError:  # another user's process, or gone meanwhile
            continue
    return None


def port_in_use_message(name: str, port: int, state_dir: Path | None = None) -> str:
    """Says what holds a port we need and how to free it."""
    holder = port_holder(port)
    if holder is None:
        return (f"{name}: port {port} is already in use by a process this user cannot see "
                f"(`ss -ltnp 'sport = :{port}'` or `sudo lsof -i :{port}` names it): stop it, or pick other ports")
    owner = _recorded_owner_of(holder, state_dir) if state_dir is not None else None
    if owner is not None:
        return (f"{name}: port {port} is already in use by {_describe(holder)}, part of the local stack that "
                f"{_describe(owner)} started and still runs: stop that one (Ctrl-C where it runs, or "
                f"`kill {owner}`), or pick other ports")
    parent = _parent(holder)
    started_by = f", started by {_describe(parent)}" if parent not in (None, 0, 1) else ""
    return (f"{name}: port {port} is already in use by {_describe(holder)}{started_by}: stop it "
            f"(`kill {holder}`), or pick other ports")


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[1])


def _records(state_dir: Path) -> list[Path]:
    try:
        return sorted(state_dir.glob("running-*.json"))
    except OSError:
        return []


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("owner"), dict) else None


def _recorded_owner_of(pid: int, state_dir: Path) -> int | None:
    for path in _records(state_dir):
        record = _read_record(path)
        if record is None or not _is(record["owner"]):
            continue
        try:
            session = os.getsid(pid)
        except OSError:
            return None
        # A service leads a session of its own; its children share it.
        if any(service.get("pid") in (pid, session) for service in record.get("services", [])):
            return record["owner"]["pid"]
    return None


def stop_leftovers(state_dir: Path) -> list[str]:
    """Stop what a stack recorded in state_dir whose owner is gone; return what was stopped, one line each.

    Only processes still matching the record (pid, start time, command line) are signalled, with their groups;
    a record whose owner still runs is left alone."""
    stopped = []
    for path in _records(state_dir):
        record = _read_record(path)
        if record is None:
            path.unlink(missing_ok=True)
            continue
        if _is(record["owner"]):
            continue
        for service in record.get("services", []):
            if not isinstance(service, dict) or not _is(service, service.get("argv")):
                continue
            pid = service["pid"]
            line = f"{service.get('name', '?')} ({_describe(pid)}, port {service.get('port')})"
            _end_group(pid, service.get("grace", 5))
            stopped.append(line)
        path.unlink(missing_ok=True)
    return stopped


def _end_group(pid: int, grace: float) -> None:
    """SIGTERM, then SIGKILL after grace, to the process group that pid leads (a service's own session)."""
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return
    if group != pid:  # not a leader: signal it alone, never some other group
        group = None
    def send(sig: int) -> None:
        if group:
            os.killpg(group, sig)
        else:
            os.kill(pid, sig)

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            send(sig)
            # A stopped process keeps SIGTERM pending until it runs again.
            send(signal.SIGCONT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _start_time(pid) is not None:
            time.sleep(0.05)
        if _start_time(pid) is None:
            break
    if group:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
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
    # What the kernel sends the service when the process that started it dies. SIGTERM lets it close its files;
    # a service that may hang on SIGTERM with nothing to flush gets SIGKILL.
    death_signal: int = signal.SIGTERM
    process: subprocess.Popen | None = None

    def start(self, state_dir: Path | None = None) -> None:
        if _port_open(self.port):
            raise StackError(port_in_use_message(self.name, self.port, state_dir))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_path, "wb")
        # A new session makes the service its own process group: stop() can then signal the whole group. It
        # also hides the service from the terminal's Ctrl-C and hang-up, hence the parent-death signal.
        try:
            self.process = _spawner.popen(self.argv, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          preexec_fn=_die_with_parent(self.death_signal, os.getpid()))
        finally:
            log_file.close()

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

    def kill(self) -> None:
        """SIGKILL the service's group at once (a second Ctrl-C while stopping)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def record(self) -> dict:
        return {"name": self.name, "port": self.port, "argv": self.argv, "grace": self.grace,
                **_identity(self.process.pid)}


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
        # In memory Azurite has nothing to lose, and on SIGTERM it waits for keep-alive clients to hang up.
        azurite_death = signal.SIGTERM if self.persist else signal.SIGKILL
        return [Service("azurite", blob, self.ports["blob"], logs / "azurite.log", grace=1,
                        death_signal=azurite_death),
                Service("cosmos", cosmos, self.ports["cosmos"], logs / "cosmos.log", ready_text="cosmos listening"),
                Service("graphsim", graph, self.ports["graph"], logs / "graphsim.log")]

    @property
    def record_path(self) -> Path:
        return self.state_dir / f"running-{self.ports['blob']}-{self.ports['cosmos']}-{self.ports['graph']}.json"

    def _record(self) -> None:
        """Write down what this stack runs, so a start after this process died unexpectedly can stop it."""
        record = {"owner": _identity(os.getpid()), "ports": self.ports,
                  "services": [s.record() for s in self.services if s.process is not None]}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.record_path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(record, indent=1))
        os.replace(temporary, self.record_path)

    def _forget(self) -> None:
        # Only our own record: another Stack object of this process may share the state_dir and the ports.
        record = _read_record(self.record_path)
        if record is None or record["owner"].get("pid") != os.getpid():
            return
        ours = {s.process.pid for s in self.services if s.process is not None}
        if {s.get("pid") for s in record.get("services", [])} <= ours:
            self.record_path.unlink(missing_ok=True)

    def start(self, timeout: float = 60) -> "Stack":
        for line in stop_leftovers(self.state_dir):
            log.warning("stopped a leftover of an earlier local stack whose owner is gone: %s", line)
        self.services = self._define()
        try:
            # Every port first, so a clash is reported before anything is started (or recorded).
            for service in self.services:
                if _port_open(service.port):
                    raise StackError(port_in_use_message(service.name, service.port, self.state_dir))
            for service in self.services:
                service.start(self.state_dir)
                self._record()
            deadline = time.monotonic() + timeout
            for service in self.services:
                service.wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            for service in reversed(self.services):
                service.stop()
        except BaseException:
            # Interrupted (a second Ctrl-C): no more grace for what is still running.
            self.kill()
            raise
        self._forget()

    def kill(self) -> None:
        for service in reversed(self.services):
            service.kill()
        self._forget()

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def restart(self, name: str, timeout: float = 30) -> None:
        """Stop one service and start it again on the same port (fault-injection tests)."""
        service = self.service(name)
        service.stop()
        service.start(self.state_dir)
        self._record()
        service.wait_ready(time.monotonic() + timeout)

    def pids(self) -> list[int]:
        return [s.process.pid for s in self.services if s.process is not None]

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    signals_stop()
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
