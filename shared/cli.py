"""The operators' command line, over the same code paths as the Functions.

    python -m shared.cli collect --day 2026-11-28                  # one day, every feed in FEEDS
    python -m shared.cli collect --from 2026-11-01 --to 2026-11-07 --feed pstn
    python -m shared.cli run                                        # what the timer does: the work list
    python -m shared.cli status [--days 90]                         # coverage, gaps, failures, next run
    python -m shared.cli backfill --from 2026-09-01 --to 2026-09-30 [--feed pstn] [--queue-only]
    python -m shared.cli replay --feed pstn --day 2026-11-28 [--to 2026-11-30]   # rebuild from the archive

Settings come from the environment (and local.settings.json "Values" when present, like `func start`).
Exit code: 0 all days succeeded, 1 some day failed, 2 bad arguments or settings.

The stages are imported inside the commands: `--help` and a bad argument answer at once, without the Azure
SDKs' import time.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys

from .config.feeds import FEEDS
from .config.settings import SettingsError, apply_local_settings_file, load_settings
from .instants import days_between


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared.cli", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    collect = commands.add_parser("collect", help="collect a day or a date range by hand")
    collect.add_argument("--day", type=_date, help="one day (in TIME_ZONE)")
    collect.add_argument("--from", dest="first", type=_date, help="first day of a range")
    collect.add_argument("--to", dest="last", type=_date, help="last day of a range (inclusive)")
    collect.add_argument("--feed", choices=sorted(FEEDS), action="append",
                         help="feed to collect (repeatable); default: the FEEDS setting")
    commands.add_parser("run", help="one scheduled run: every missing day plus the re-scan, within the budget")
    status = commands.add_parser("status", help="per feed: days covered, gaps, failed days, last and next run")
    status.add_argument("--days", type=int, default=90, help="days back from yesterday to show (default 90)")
    backfill = commands.add_parser("backfill", help="record a backfill request and work it off now")
    backfill.add_argument("--from", dest="first", type=_date, required=True)
    backfill.add_argument("--to", dest="last", type=_date, help="default: --from")
    backfill.add_argument("--feed", choices=sorted(FEEDS), action="append", help="default: the FEEDS setting")
    backfill.add_argument("--queue-only", action="store_true", help="only record it; the timer works it off")
    replay = commands.add_parser("replay", help="rebuild days' documents from the archived pages (no Graph call)")
    replay.add_argument("--feed", choices=sorted(FEEDS), required=True)
    replay.add_argument("--day", type=_date, required=True)
    replay.add_argument("--to", dest="last", type=_date, help="last day of a range (default: --day)")
    for sub in commands.choices.values():
        sub.add_argument("--json", action="store_true", help="print the report as JSON")
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _progress_bar(total: int | None, quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None, lambda outcome: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="day", file=sys.stderr, dynamic_ncols=True)

    def advance(outcome) -> None:
        bar.set_postfix_str(f"{outcome.feed} {outcome.day} {outcome.outcome} {outcome.rows} rows")
        bar.update(1)
    return bar, advance


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        apply_local_settings_file()
        settings = load_settings()
    except SettingsError as exc:
        print(f"invalid setting: {exc}", file=sys.stderr)
        return 2

    from .collect.run import run_days, run_scheduled

    if args.command == "status":
        return _status(settings, args)
    if args.command == "replay":
        return _replay(settings, args)
    if args.command == "backfill":
        return _backfill(settings, args)
    if args.command == "collect":
        if args.day and (args.first or args.last):
            print("give --day or --from/--to, not both", file=sys.stderr)
            return 2
        first, last = (args.day, args.day) if args.day else (args.first, args.last or args.first)
        if first is None:
            print("give --day, or --from (and --to)", file=sys.stderr)
            return 2
        if last < first:
            print(f"--to {last} is before --from {first}", file=sys.stderr)
            return 2
        feeds = [FEEDS[name] for name in (args.feed or settings.feeds)]
        bar, advance = _progress_bar(len(feeds) * ((last - first).days + 1), args.quiet)
        report = run_days(settings, feeds, first, last, progress=advance)
    else:
        bar, advance = _progress_bar(None, args.quiet)
        report = run_scheduled(settings, progress=advance)
    if bar is not None:
        bar.close()

    if args.json:
        print(json.dumps({"runId": report.run_id, "totals": report.totals(),
                          "days": [o.as_dict() for o in report.outcomes], "deferred": report.deferred}, indent=1))
    else:
        print(report.summary())
    return 1 if report.failed else 0


def _ledger(settings):
    from .stores import open_stores

    return open_stores(settings).ledger


def _status(settings, args) -> int:
    from .api.status import build_status

    if not 1 <= args.days <= 366:
        print("--days must be from 1 to 366", file=sys.stderr)
        return 2
    status = build_status(settings, _ledger(settings), days=args.days)
    if args.json:
        print(json.dumps(status, indent=1))
        return 0
    print(f"next scheduled run: {status['nextRun'] or 'set by the host'}")
    for name, feed in status["feeds"].items():
        last = feed["lastRun"] or {}
        print(f"{name}: {feed['daysCovered']} of {len(feed['days'])} days collected "
              f"({feed['window']['from']} to {feed['window']['to']}), {feed['rows']} rows; "
              f"last run {last.get('ended') or 'never'} {last.get('outcome') or ''}; "
              f"last success {feed['lastSuccessAt'] or 'never'}")
        backlog = feed.get("backlog") or {}
        if backlog.get("days"):
            print(f"  backlog: {backlog['days']} day(s), about {backlog['requests']} Graph requests at "
                  f"{backlog['requestsPerMinute']} a minute; expected done by {backlog['finish']}")
        if feed["gaps"]:
            print(f"  without a successful run: {', '.join(feed['gaps'])}")
        for failed in feed["failed"]:
            print(f"  FAILED {failed['day']}: {failed['error']}")
        for request in feed["backfills"]:
            if request["status"] == "pending":
                print(f"  backfill pending: {request['from']} to {request['to']} (requested {request['requestedAt']})")
    return 0 if status["healthy"] else 1


def _backfill(settings, args) -> int:
    from .collect.run import run_days

    last = args.last or args.first
    if last < args.first:
        print(f"--to {last} is before --from {args.first}", file=sys.stderr)
        return 2
    feeds = [FEEDS[name] for name in (args.feed or settings.feeds)]
    ledger = _ledger(settings)
    for feed in feeds:
        request = ledger.request_backfill(feed.name, args.first, last, requested_by="cli")
        print(f"recorded {request['id']}: {feed.name} {args.first} to {last}")
    if args.queue_only:
        return 0
    bar, advance = _progress_bar(len(feeds) * ((last - args.first).days + 1), args.quiet)
    report = run_days(settings, feeds, args.first, last, progress=advance)
    if bar is not None:
        bar.close()
    for feed in feeds:
        ledger.settle_backfills(feed.name)
    print(json.dumps(report.totals()) if args.json else report.summary())
    return 1 if report.failed else 0


def _replay(settings, args) -> int:
    from .collect.replay import ReplayError
    from .collect.run import build_collector

    last = args.last or args.day
    if last < args.day:
        print(f"--to {last} is before --day {args.day}", file=sys.stderr)
        return 2
    days = days_between(args.day, last)
    collector = build_collector(settings)
    bar, _ = _progress_bar(len(days), args.quiet)
    reports, failed = [], 0
    try:
        for day in days:
            try:
                reports.append(collector.replay(FEEDS[args.feed], day).as_dict())
            except ReplayError as exc:
                failed += 1
                print(f"  {day}: {exc}", file=sys.stderr)
            if bar is not None:
                bar.update(1)
    finally:
        collector.close()
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(reports, indent=1))
    else:
        for r in reports:
            print(f"replayed {r['feed']} {r['day']} from {len(r['runs'])} run(s): {r['pages']} pages, {r['rows']} rows "
                  f"({r['new']} new, {r['changed']} changed, {r['unchanged']} unchanged)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
