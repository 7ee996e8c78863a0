"""python -m devstack.graphsim: run the simulator in the foreground until SIGTERM or SIGINT."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from .server import GraphSimulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.graphsim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rows-per-day", type=int, default=2500,
                        help="PSTN rows a day; Direct Routing gets a fifth of it")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each Graph request")
    parser.add_argument("--rate-limit", metavar="N/SECONDS", help="e.g. 200/60: at most N requests per window")
    parser.add_argument("--limits", help='Graph\'s scopes: "documented" (50 a minute per function, 200 per app, '
                                         '1,000 per tenant) or their JSON (devstack/graphsim/scopes.py)')
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="the limits' windows and Retry-After are divided by this (default 1)")
    parser.add_argument("--token", help="the only bearer token accepted (default: any)")
    args = parser.parse_args(argv)
    limits = args.limits
    if limits and limits.lstrip().startswith("{"):
        try:
            limits = json.loads(limits)
        except ValueError as exc:  # json's own message names no option
            parser.error(f"--limits is not valid JSON: {exc}")
    try:
        simulator = GraphSimulator(host=args.host, port=args.port, seed=args.seed,
                                   rows_per_day=args.rows_per_day, token=args.token,
                                   page_size=args.page_size, latency=args.latency,
                                   rate_limit=args.rate_limit, time_scale=args.time_scale,
                                   limits=limits)
    except ValueError as exc:
        parser.error(str(exc))
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        simulator.start()
    except OSError as exc:  # typically: the port is taken
        parser.exit(1, f"graphsim: cannot listen on {args.host}:{args.port}: {exc}\n")
    print(f"graphsim listening on {simulator.url}", flush=True)
    stopping.wait()
    simulator.stop()
    print("graphsim stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
