"""What every benchmark shares: the two modes, a local stack per mode, fresh stores, and figures.

A `BenchStack` is the project's local stack (devstack.stack.Stack: Azurite, the Cosmos server, the Graph
simulator, each its own process) started for one mode. Every measurement gets a database and an archive
container of its own, dropped afterwards, so runs do not see each other's rows and the in-memory stores stay
small. The Graph simulator is configured for each measurement with every knob spelled out.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import requests

from devstack.stack import Stack
from shared.config.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".devstack" / "bench"

# The synthetic tenant's days used by the benchmarks; any past days would do.
DAY = dt.date(2026, 5, 4)


@dataclass(frozen=True)
class Mode:
    """How much network latency the local stack models: Graph seconds per request, Cosmos ms per request."""
    name: str
    graph_latency: float
    cosmos_delay_ms: int

    @property
    def label(self) -> str:
        if not self.graph_latency and not self.cosmos_delay_ms:
            return f"{self.name} (no modelled latency)"
        return f"{self.name} (Graph {self.graph_latency:g} s/page, Cosmos {self.cosmos_delay_ms} ms/request)"


RAW = Mode("raw", 0.0, 0)


def modelled(graph_latency: float = 1.0, cosmos_delay_ms: int = 5) -> Mode:
    return Mode("modelled", graph_latency, cosmos_delay_ms)


class BenchStack:
    """The local stack of one mode. A context manager; `stop()` ends every process it started."""

    def __init__(self, mode: Mode, state_dir: Path | None = None):
        self.mode = mode
        self.stack = Stack.on_free_ports(state_dir=(state_dir or STATE_DIR) / mode.name,
                                         cosmos_delay_ms=mode.cosmos_delay_ms)
        self._session = requests.Session()

    def start(self) -> "BenchStack":
        self.stack.start()
        return self

    def stop(self) -> None:
        self._session.close()
        self.stack.stop()

    def __enter__(self) -> "BenchStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def graph_url(self) -> str:
        return self.stack.graph_url

    # --- the Graph simulator ---------------------------------------------------------------------------
    def simulate(self, rows_per_day: int, overrides: dict[str, int] | None = None, page_size: int = 1000,
                 latency: float | None = None, rate_limit: dict | None = None) -> None:
        """Reset the simulator (counters, log, rate window) and set every knob: PSTN rows per day (Direct
        Routing none), per-day overrides, page size, latency (default: the mode's) and rate limit."""
        knobs = {
            "rows_per_day": {"pstn": rows_per_day, "directRouting": 0},
            "rows_per_day_overrides": {day: {"pstn": n, "directRouting": 0} for day, n in (overrides or {}).items()},
            "page_size": page_size,
            "latency": self.mode.graph_latency if latency is None else latency,
            "rate_limit": rate_limit, "faults": [], "late_rows": [],
        }
        self._post("/_sim/reset", {})
        self._post("/_sim/config", knobs)

    def sim_stats(self) -> dict:
        response = self._session.get(f"{self.graph_url}/_sim/stats", timeout=30)
        response.raise_for_status()
        return response.json()

    def sim_log(self) -> list[dict]:
        response = self._session.get(f"{self.graph_url}/_sim/log", timeout=60)
        response.raise_for_status()
        return response.json()["value"]

    def warm(self, first: dt.date, last: dt.date) -> None:
        """Have the simulator generate (and cache) the rows of these days, so no measurement pays for it."""
        response = self._session.get(f"{self.graph_url}/_sim/truth", timeout=300, params={
            "feed": "pstn", "from": f"{first}T00:00:00Z", "to": f"{last + dt.timedelta(days=1)}T00:00:00Z"})
        response.raise_for_status()

    def _post(self, path: str, body: dict) -> None:
        response = self._session.post(f"{self.graph_url}{path}", data=json.dumps(body), timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"graph simulator {path}: {response.status_code} {response.text[:300]}")

    # --- stores ----------------------------------------------------------------------------------------
    def env(self, **overrides: str) -> dict[str, str]:
        """App settings on this stack with a database and archive container of their own (PSTN feed only)."""
        suffix = uuid.uuid4().hex[:10]
        return {**self.stack.app_env(), "COSMOS_DATABASE": f"bench{suffix}", "ARCHIVE_CONTAINER": f"bench-{suffix}",
                "FEEDS": "pstn", "GRAPH_TIMEOUT_SECONDS": "120", **overrides}

    def settings(self, **overrides: str) -> Settings:
        from shared.stores.schema import ensure_stores

        settings = load_settings(self.env(**overrides))
        ensure_stores(settings)
        return settings

    def drop(self, settings: Settings) -> None:
        """Delete the measurement's database and archive container (the local stores keep them in memory)."""
        from shared.stores.clients import blob_service, cosmos_client

        for action in (lambda: cosmos_client(settings).delete_database(settings.cosmos_database),
                       lambda: blob_service(settings).delete_container(settings.archive_container)):
            try:
                action()
            except Exception:  # already gone, or the stack is stopping: nothing to clean
                pass


# --- figures -------------------------------------------------------------------------------------------

@dataclass
class Figure:
    """One measured quantity in every mode: its samples, and an optional target (checked on the median)."""
    key: str                 # e.g. "a.ratio"
    title: str
    unit: str
    samples: dict[str, list[float]] = field(default_factory=dict)  # mode name -> values, one per run
    target: str = ""         # e.g. ">= 5"; empty: informative only
    target_mode: str = "modelled"  # the mode whose median must meet the target; "all": every mode

    def add(self, mode: str, value: float) -> None:
        self.samples.setdefault(mode, []).append(float(value))

    def stats(self, mode: str) -> tuple[float, float, float] | None:
        values = self.samples.get(mode)
        if not values:
            return None
        return statistics.median(values), min(values), max(values)

    def met(self) -> bool | None:
        """Whether the target holds on the median of its mode(s); None without a target or samples."""
        if not self.target:
            return None
        op, _, bound = self.target.partition(" ")
        modes = list(self.samples) if self.target_mode == "all" else [self.target_mode]
        results = []
        for mode in modes:
            stats = self.stats(mode)
            if stats is None:
                return None
            results.append(_compare(stats[0], op, float(bound)))
        return all(results)

    def as_dict(self) -> dict:
        return {"key": self.key, "title": self.title, "unit": self.unit, "target": self.target,
                "target_mode": self.target_mode, "met": self.met(), "samples": self.samples,
                "stats": {m: dict(zip(("median", "min", "max"), self.stats(m))) for m in self.samples}}


def _compare(value: float, op: str, bound: float) -> bool:
    return {">=": value >= bound, "<=": value <= bound, "==": value == bound, ">": value > bound,
            "<": value < bound}[op]


class Figures:
    """The figures of a run, in the order they were first created."""

    def __init__(self):
        self._by_key: dict[str, Figure] = {}

    def get(self, key: str, title: str, unit: str, target: str = "", target_mode: str = "modelled") -> Figure:
        if key not in self._by_key:
            self._by_key[key] = Figure(key, title, unit, target=target, target_mode=target_mode)
        return self._by_key[key]

    def __iter__(self):
        return iter(self._by_key.values())

    def __getitem__(self, key: str) -> Figure:
        return self._by_key[key]

    def __contains__(self, key: str) -> bool:
        return key in self._by_key

    def as_list(self) -> list[dict]:
        return [f.as_dict() for f in self]


def fmt(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def table(figures: Iterable[Figure], modes: list[str]) -> str:
    """A plain-text table: one line per figure, median (min-max) per mode, target and whether it is met."""
    header = ["figure", *[f"{m}: median (min-max)" for m in modes], "target", "met"]
    lines = [header]
    for figure in figures:
        cells = [f"{figure.title} [{figure.unit}]" if figure.unit else figure.title]
        for mode in modes:
            stats = figure.stats(mode)
            cells.append("-" if stats is None else f"{fmt(stats[0])} ({fmt(stats[1])}-{fmt(stats[2])})")
        met = figure.met()
        target = f"{figure.target} ({figure.target_mode})" if figure.target else ""
        cells += [target, "" if met is None else ("yes" if met else "NO")]
        lines.append(cells)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    out = []
    for index, row in enumerate(lines):
        out.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


def timed(action: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def log(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", flush=True)


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS) and friends of a process, in kB (Linux /proc)."""
    out = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key.startswith("Vm"):
                out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children that were waited for (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")
