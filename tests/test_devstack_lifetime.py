"""The local stack dies with the process that started it, however that process ends, and a start that finds a
stack left behind stops it (if it is ours and its owner is gone) or names what holds the port.

Real processes throughout: `python -m devstack.run` on free ports (the DEVSTACK_* overrides) in a state folder of
its own, killed the ways `make run` gets killed; what is left is found by walking the process table."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from devstack.stack import Stack, StackError, free_port

ROOT = Path(__file__).resolve().parent.parent
# How long a start or an exit may take on a busy 2-core machine before the test gives up waiting (a bound on
# waiting, not a measurement: the stack starts in a few seconds).
PATIENCE = 90


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    pairs = [tuple(map(int, line.split())) for line in out.splitlines() if line.strip()]
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in pairs:
            if ppid == parent:
                found.append(child)
                todo.append(child)
    return found


def _processes_of(pid: int) -> dict[int, tuple[int, str]]:
    """Every descendant of pid: pid -> (start time, command line), so a reused pid is not mistaken for it."""
    found = {}
    for child in _children(pid):
        start = _start_time(child)
        if start is not None:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            found[child] = (start, cmdline.strip())
    return found


def _still_running(processes: dict[int, tuple[int, str]]) -> list[str]:
    return [f"pid {pid}: {cmd}" for pid, (start, cmd) in processes.items() if _start_time(pid) == start]


def _wait_gone(processes: dict[int, tuple[int, str]]) -> list[str]:
    deadline = time.monotonic() + PATIENCE
    while _still_running(processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _still_running(processes)


class Run:
    """One `python -m devstack.run` on the given ports and state folder, its output in a file."""

    def __init__(self, env: dict[str, str], out: Path):
        self.out = out
        self.services: dict[int, tuple[int, str]] = {}
        self.proc = subprocess.Popen([sys.executable, "-m", "devstack.run"], cwd=ROOT, env=env,
                                     stdout=open(out, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_ready(self) -> dict[int, tuple[int, str]]:
        deadline = time.monotonic() + PATIENCE
        while "ready in" not in self.output():
            assert self.proc.poll() is None, f"devstack.run exited with {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"devstack.run was not ready in time:\n{self.output()}"
            time.sleep(0.2)
        services = _processes_of(self.proc.pid)
        assert len(services) >= 3, f"expected the three services under devstack.run, found {services}"
        self.services = services
        return services

    def wait_exit(self) -> int:
        try:
            return self.proc.wait(PATIENCE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"devstack.run did not exit:\n{self.output()}")

    def kill_all(self) -> None:
        """Cleanup whatever a failed test left: the run and its services."""
        if self.proc.poll() is None:
            self.services = {**_processes_of(self.proc.pid), **self.services}
            self.proc.kill()
            self.proc.wait()
        _kill_groups(self.services)


def _kill_groups(processes: dict[int, tuple[int, str]]) -> None:
    for pid, (start, _) in processes.items():
        if _start_time(pid) == start:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def run_env(tmp_path):
    ports = {name: str(free_port()) for name in ("BLOB", "COSMOS", "GRAPH", "API")}
    return {**os.environ, **{f"DEVSTACK_{name}_PORT": port for name, port in ports.items()},
            "DEVSTACK_STATE_DIR": str(tmp_path / "state")}


@pytest.fixture
def runs(tmp_path):
    started: list[Run] = []

    def start(env: dict[str, str]) -> Run:
        run = Run(env, tmp_path / f"run{len(started)}.out")
        started.append(run)
        return run

    yield start
    for run in started:
        run.kill_all()


@pytest.mark.parametrize("signals",
                         [[signal.SIGTERM], [signal.SIGHUP], [signal.SIGINT], [signal.SIGINT, signal.SIGINT]],
                         ids=["SIGTERM", "SIGHUP (terminal closed)", "Ctrl-C", "Ctrl-C twice"])
def test_make_run_stops_its_stack_in_order_when_signalled(run_env, runs, signals):
    run = runs(run_env)
    services = run.wait_ready()
    for sig in signals:
        run.proc.send_signal(sig)
    code = run.wait_exit()
    left = _wait_gone(services)
    assert not left, f"after {[s.name for s in signals]} to devstack.run these services were still running: {left}"
    if len(signals) == 1:  # an orderly stop: said so, and nothing recorded as running any more
        assert "stopped the local stack" in run.output(), run.output()
        assert code == (0 if signals[0] == signal.SIGINT else 128 + signals[0]), run.output()
        assert not list(Path(run_env["DEVSTACK_STATE_DIR"]).glob("running-*.json"))


def test_make_run_killed_outright_takes_its_stack_along(run_env, runs):
    run = runs(run_env)
    services = run.wait_ready()
    run.proc.kill()
    run.wait_exit()
    left = _wait_gone(services)
    assert not left, f"after SIGKILL of devstack.run these services were still running: {left}"


def test_a_start_stops_what_a_dead_run_left_behind(run_env, runs):
    """Services that outlive their owner (here: stopped with SIGSTOP, so the parent-death SIGTERM stays pending;
    or started before this safeguard) are stopped by the next start, which then comes up on the same ports."""
    first = runs(run_env)
    services = first.wait_ready()
    for pid in services:
        os.kill(pid, signal.SIGSTOP)
    first.proc.kill()
    first.wait_exit()
    # In-memory Azurite is sent SIGKILL when its owner dies, which even a stopped process cannot ignore; the
    # others are sent SIGTERM, which waits, pending, while they are stopped.
    survivors = {pid: p for pid, p in services.items() if "azurite" not in p[1]}
    left = _still_running(survivors)
    assert len(left) == len(survivors) == 2, f"precondition: the stopped services should outlive their owner: {left}"

    second = runs(run_env)
    second.wait_ready()
    output = second.output()
    assert _wait_gone({pid: services[pid] for pid in services}) == [], output
    for line in left:
        pid = line.split(":")[0].split()[1]
        assert f"pid {pid}:" in output and "leftover" in output, f"the start did not say it stopped {line}:\n{output}"
    second.proc.send_signal(signal.SIGTERM)
    assert second.wait_exit() == 128 + signal.SIGTERM, second.output()


def test_a_start_names_the_stack_that_still_holds_its_ports(run_env, runs):
    first = runs(run_env)
    services = first.wait_ready()
    clash = runs({**run_env, "DEVSTACK_API_PORT": str(free_port())})
    assert clash.wait_exit() == 1, clash.output()
    message = clash.output()
    assert "already in use" in message and f"`kill {first.proc.pid}`" in message, message
    assert any(f"pid {pid}:" in message for pid in services), message
    # The running stack was not touched.
    assert len(_still_running(services)) == len(services)
    first.proc.send_signal(signal.SIGTERM)
    first.wait_exit()
    assert not _wait_gone(services)


def test_a_port_held_by_some_other_process_is_named_with_its_pid(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import socket, sys, time
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
        print(s.getsockname()[1], flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(holder.stdout.readline())
        stack = Stack(ports={"blob": free_port(), "cosmos": port, "graph": free_port()}, state_dir=tmp_path)
        with pytest.raises(StackError) as raised:
            stack.start()
        message = str(raised.value)
        assert f"port {port}" in message and f"pid {holder.pid}:" in message and f"`kill {holder.pid}`" in message
        assert stack.pids() == [] or not any(_start_time(p) for p in stack.pids())
    finally:
        holder.kill()
        holder.wait()


def test_a_stack_started_from_a_thread_lives_on_after_the_thread_but_not_after_its_process(tmp_path):
    """The parent-death signal follows the thread that forked: a stack started from a thread that then ends must
    keep running, and still die with the process."""
    script = textwrap.dedent(f"""
        import threading, time
        from pathlib import Path
        from devstack.stack import Stack
        stacks = []
        start = lambda: stacks.append(Stack.on_free_ports(state_dir=Path({str(tmp_path)!r})).start())
        thread = threading.Thread(target=start)
        thread.start(); thread.join()
        # join() returns before the thread's last instructions run: wait until the kernel has ended it.
        while Path(f"/proc/self/task/{{thread.native_id}}").exists():
            time.sleep(0.01)
        print("started" if stacks else "failed", flush=True)
        time.sleep(600)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    services = {}
    try:
        assert owner.stdout.readline().strip() == "started"
        services = _processes_of(owner.pid)
        assert len(services) == 3, services
        # A parent-death signal sent as the thread ended would need a moment to end the services: give it one.
        time.sleep(1)
        assert len(_still_running(services)) == 3, "the services died with the thread that started them"
        owner.kill()
        owner.wait()
        left = _wait_gone(services)
        assert not left, f"after SIGKILL of their owner these services were still running: {left}"
    finally:
        owner.kill()
        owner.wait()
        _kill_groups(services)
