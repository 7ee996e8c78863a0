"""The operators' command line, over the same code paths as the Functions.

    python -m shared.cli collect --day 2026-11-28                  # one day, every feed in FEEDS
    python -m shared.cli collect --from 2026-11-01 --to 2026-11-07 --feed pstn
    python -m shared.cli run                                        # what the timer does: the work list

Settings come from the environment (and local.settings.json "Values" when present, like `func start`).
Exit code: 0 all days succeeded, 1 some day failed, 2 bad arguments or settings.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys

from .feeds import FEEDS
from .settings import SettingsError, apply_local_settings_file, load_settings


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

    from .collector import run_days, run_scheduled

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
        print(summary(report))
    return 1 if report.failed else 0


def summary(report) -> str:
    t = report.totals()
    lines = [f"run {report.run_id}: {t['days']} day(s), {t['rows']} rows in {t['pages']} pages "
             f"({t['new']} new, {t['changed']} changed, {t['unchanged']} unchanged), {t['failed']} failed"]
    for o in report.outcomes:
        if o.outcome == "failed":
            lines.append(f"  FAILED {o.feed} {o.day}: {o.error}")
        elif o.outcome == "skipped":
            lines.append(f"  skipped {o.feed} {o.day}: {o.error}")
    if report.deferred:
        lines.append(f"  {len(report.deferred)} day(s) left for the next run (time budget)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
