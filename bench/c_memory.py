"""(c) Peak memory of a collecting process for a small and a large day.

Each day is collected by a fresh process (`python -m bench.c_memory --child`), which runs the collector the
way the command line does and reports its own /proc status: VmRSS before collecting (interpreter, SDKs and
clients loaded) and VmHWM, the peak resident set, after. The Graph simulator and the stores run in their own
processes, so only the collector is counted.
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

from .common import DAY, ROOT, BenchStack, proc_status

SMALL_DAY = DAY + dt.timedelta(days=1)
LARGE_DAY = DAY + dt.timedelta(days=2)
SETTINGS = {"SUBWINDOWS": "8", "GRAPH_FUNCTION_REQUESTS_PER_MINUTE": "6000", "GRAPH_APP_REQUESTS_PER_MINUTE": "6000",
            "GRAPH_TENANT_REQUESTS_PER_MINUTE": "6000", "UPSERT_CONCURRENCY": "8"}


def run_child(env: dict[str, str], day: dt.date, timeout: float = 900) -> dict:
    """Collect `day` in a new process; its report (kB figures, seconds, rows)."""
    spec = json.dumps({"env": env, "day": day.isoformat()})
    done = subprocess.run([sys.executable, "-m", "bench.c_memory", "--child"], input=spec, capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"the collecting process failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(stack: BenchStack, small: int, large: int, figures) -> dict[int, dict]:
    """One run of (c) in the stack's mode: a `small`-row and a `large`-row day, each in its own process."""
    mode = stack.mode.name
    stack.simulate(rows_per_day=small, overrides={SMALL_DAY.isoformat(): small, LARGE_DAY.isoformat(): large})
    stack.warm(SMALL_DAY, LARGE_DAY)
    reports = {}
    for rows, day in ((small, SMALL_DAY), (large, LARGE_DAY)):
        settings = stack.settings(**SETTINGS)
        try:
            env = stack.env(**SETTINGS)
            env.update({"COSMOS_DATABASE": settings.cosmos_database, "ARCHIVE_CONTAINER": settings.archive_container})
            report = run_child(env, day)
        finally:
            stack.drop(settings)
        if report["rows"] != rows:
            raise RuntimeError(f"the collecting process stored {report['rows']} rows of a {rows}-row day")
        reports[rows] = report
        figures.get(f"c.peak.{rows}", f"(c) peak RSS, {rows:,}-row day", "MB").add(mode, report["VmHWM"] / 1024)
        figures.get(f"c.growth.{rows}", f"(c) RSS growth while collecting, {rows:,}-row day", "MB").add(
            mode, (report["VmHWM"] - report["before"]) / 1024)
    figures.get("c.ratio", f"(c) peak RSS ratio {large:,} / {small:,} rows", "ratio", target="<= 1.3").add(
        mode, reports[large]["VmHWM"] / reports[small]["VmHWM"])
    return reports


def child() -> None:
    """The collecting process: settings from stdin, one day, its /proc figures on stdout as JSON."""
    import time

    from shared.collect.run import run_days
    from shared.config.feeds import FEEDS
    from shared.config.settings import load_settings

    spec = json.loads(sys.stdin.read())
    settings = load_settings(spec["env"])
    day = dt.date.fromisoformat(spec["day"])
    before = proc_status()["VmRSS"]
    started = time.perf_counter()
    report = run_days(settings, [FEEDS["pstn"]], day, day)
    seconds = time.perf_counter() - started
    outcome = report.outcomes[0]
    if outcome.outcome != "succeeded":
        raise SystemExit(f"collecting {day} failed: {outcome.error}")
    status = proc_status()
    print(json.dumps({"before": before, "VmHWM": status["VmHWM"], "VmRSS": status["VmRSS"], "seconds": seconds,
                      "rows": outcome.rows, "pages": outcome.pages}))


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child()
    else:
        raise SystemExit("usage: python -m bench.c_memory --child  (run by the benchmark runner)")
