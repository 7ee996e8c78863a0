"""python -m bench [--quick] [--reps N] [--only abcde] [--graph-latency S] [--cosmos-delay-ms MS] [--json PATH]

Starts two local stacks (one per mode: raw, and modelled latency), runs benchmarks a-e in both modes side by
side (each repetition measures raw, then modelled), prints every figure as median (min-max) per mode with its
target, writes all samples as JSON (default .devstack/bench/results.json) and stops every process it started.
Exit code 0 when every benchmark ran, whether or not its target was met; 1 when one failed to run.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
import traceback
import warnings

from . import a_ingest, b_rescan, c_memory, d_feed, e_ratelimit
from .common import DAY, RAW, STATE_DIR, BenchStack, Figures, log, modelled, table

# The sequential baseline of (a) takes about 3 minutes a run with modelled latency (20,000 single writes at
# 5 ms + 20 pages at 1 s); it runs in the first `baseline_reps` repetitions only, to keep the suite near 15 min.
FULL = {"reps": 3, "baseline_reps": 2, "a_rows": 20_000, "c_small": 5_000, "c_large": 50_000,
        "d_week": 20_000, "d_clients": 16, "d_seconds": 30.0, "e_rate": 5.0, "e_rows": 6_000, "e_page": 100}
QUICK = {"reps": 1, "baseline_reps": 1, "a_rows": 2_000, "c_small": 500, "c_large": 5_000,
         "d_week": 2_000, "d_clients": 4, "d_seconds": 3.0, "e_rate": 5.0, "e_rows": 1_500, "e_page": 50}


def machine() -> dict:
    def run(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return "unavailable"
    return {"nproc": run("nproc"), "free -h": run("free", "-h"), "python": platform.python_version(),
            "node": run("node", "--version"), "platform": platform.platform(),
            "cpu": next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                         if line.startswith("model name")), "unknown") if os.path.exists("/proc/cpuinfo") else ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and one repetition: a smoke run")
    parser.add_argument("--reps", type=int, help="repetitions per figure (default 3, --quick 1)")
    parser.add_argument("--baseline-reps", type=int, help="runs of the sequential baseline (default 2, --quick 1)")
    parser.add_argument("--only", default="abcde", help="which benchmarks, e.g. --only ab (b needs a's day)")
    parser.add_argument("--graph-latency", type=float, default=1.0, help="modelled Graph seconds per page")
    parser.add_argument("--cosmos-delay-ms", type=int, default=5, help="modelled Cosmos ms per request")
    parser.add_argument("--json", default=str(STATE_DIR / "results.json"), help="where to write every sample")
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    if args.reps:
        sizes["reps"] = args.reps
        sizes["baseline_reps"] = min(sizes["baseline_reps"], args.reps)
    if args.baseline_reps:
        sizes["baseline_reps"] = min(args.baseline_reps, sizes["reps"])
    only = set(args.only.lower())
    warnings.filterwarnings("ignore")  # the local Cosmos server's self-signed certificate

    info = machine()
    log(f"machine: {info['nproc']} cores ({info['cpu']}), Python {info['python']}, Node {info['node']}")
    modes = [RAW, modelled(args.graph_latency, args.cosmos_delay_ms)]
    for mode in modes:
        log(f"mode {mode.label}")
    figures = Figures()
    failures: list[str] = []
    started = time.perf_counter()
    stacks = [BenchStack(mode) for mode in modes]
    try:
        for stack in stacks:
            stack.start()
        run_all(stacks, sizes, only, figures, failures)
    finally:
        for stack in stacks:
            stack.stop()
    elapsed = time.perf_counter() - started

    names = [m.name for m in modes]
    print()
    print(table(figures, names))
    print()
    with_target = [f for f in figures if f.target]
    met = [f for f in with_target if f.met()]
    log(f"targets met: {len(met)} of {len(with_target)}; {len(failures)} benchmark(s) failed to run; "
        f"{elapsed / 60:.1f} min")
    for failure in failures:
        print(failure, file=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as out:
        json.dump({"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": info,
                   "modes": [vars(m) for m in modes], "sizes": sizes, "seconds": round(elapsed, 1),
                   "figures": figures.as_list(), "failures": failures}, out, indent=1)
    log(f"samples written to {args.json}")
    return 1 if failures else 0


def run_all(stacks: list[BenchStack], sizes: dict, only: set[str], figures: Figures, failures: list[str]) -> None:
    reps = sizes["reps"]

    def attempt(name: str, action) -> None:
        try:
            action()
        except Exception:
            failures.append(f"benchmark {name} failed:\n{traceback.format_exc()}")
            log(f"benchmark {name} FAILED (details at the end)")

    if "a" in only or "b" in only:
        def ab() -> None:
            for rep in range(reps):
                for stack in stacks:
                    mode = stack.mode.name
                    log(f"(a{'/b' if 'b' in only else ''}) run {rep + 1}/{reps}, {mode}")

                    def rescan(settings, first) -> None:
                        if "b" in only:
                            b_rescan.measure(mode, settings, first, figures)

                    with_baseline = "a" in only and rep < sizes["baseline_reps"]
                    first = a_ingest.measure(stack, sizes["a_rows"], figures, baseline=with_baseline,
                                             after_collect=rescan)
                    if with_baseline and "b" in only:
                        figures.get("b.vs_baseline", "(b) re-scan time / sequential baseline time of (a)", "ratio",
                                    target="<= 0.2").add(mode, figures["b.rescan"].samples[mode][-1]
                                                          / figures["a.baseline"].samples[mode][-1])
                    log(f"    collector {first.seconds:.2f} s, {first.pages} pages, {first.requests} requests"
                        + (f"; re-scan {figures['b.rescan'].samples[mode][-1]:.2f} s" if "b" in only else "")
                        + (f"; baseline {figures['a.baseline'].samples[mode][-1]:.1f} s" if with_baseline else ""))

        attempt("a/b", ab)
        if "a" in only:
            attempt("a: document size", lambda: document_size(stacks[0], sizes["a_rows"], figures))

    if "c" in only:
        def c() -> None:
            for rep in range(reps):
                for stack in stacks:
                    log(f"(c) run {rep + 1}/{reps}, {stack.mode.name}: {sizes['c_small']:,} and "
                        f"{sizes['c_large']:,}-row days, each in its own process")
                    c_memory.measure(stack, sizes["c_small"], sizes["c_large"], figures)
        attempt("c", c)

    if "d" in only:
        def d() -> None:
            for stack in stacks:
                log(f"(d) {stack.mode.name}: {sizes['d_week']:,}-row week, {reps} streaming run(s)")
                d_feed.measure(stack, sizes["d_week"], figures, runs=reps, clients=sizes["d_clients"],
                               seconds=sizes["d_seconds"])
        attempt("d", d)

    if "e" in only:
        def e() -> None:
            for rep in range(reps):
                for stack in stacks:
                    log(f"(e) run {rep + 1}/{reps}, {stack.mode.name}: limit {sizes['e_rate']:g} req/s")
                    result = e_ratelimit.measure(stack, sizes["e_rate"], sizes["e_rows"], sizes["e_page"], figures)
                    log(f"    {result['requests']} requests at {result['achieved']:.2f} req/s, "
                        f"{result['throttled']} answered 429")
        attempt("e", e)


def document_size(stack: BenchStack, rows: int, figures: Figures) -> None:
    """The mean size of a stored document (JSON bytes), for the RU projection."""
    import requests

    from shared.stores.rows import to_document

    stack.simulate(rows_per_day=rows)
    response = requests.get(f"{stack.graph_url}/_sim/truth", timeout=300, params={
        "feed": "pstn", "from": f"{DAY}T00:00:00Z", "to": f"{DAY + dt.timedelta(days=1)}T00:00:00Z"})
    response.raise_for_status()
    docs = [to_document(row, "startDateTime") for row in response.json()["value"]]
    size = sum(len(json.dumps(doc, separators=(",", ":"))) for doc in docs) / len(docs)
    figures.get("a.doc_bytes", "(a) mean stored document size", "bytes").add(stack.mode.name, size)


if __name__ == "__main__":
    sys.exit(main())
