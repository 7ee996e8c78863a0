"""Timer blueprint: collection. A thin adapter over shared.collect.run.

The timer ticks at COLLECT_TIMER_SCHEDULE (every minute by default); each tick collects what is due
(shared/collect/worklist.py): the daily run at COLLECT_SCHEDULE, then whatever its time budget left, tick after
tick, until nothing is due. A tick with nothing to do returns at once and logs nothing.
"""
import logging

import azure.functions as func

bp = func.Blueprint()


class CollectionFailed(RuntimeError):
    """Raised after every due day was attempted, so the invocation shows as failed and the alert fires."""


@bp.timer_trigger(arg_name="timer", schedule="%COLLECT_TIMER_SCHEDULE%", run_on_startup=False, use_monitor=True)
def collect(timer: func.TimerRequest) -> None:
    from shared.collect.run import run_scheduled
    from shared.config.settings import load_settings

    report = run_scheduled(load_settings())
    if report.outcomes or report.deferred:
        logging.info(report.summary())
    if report.failed:
        days = ", ".join(f"{o.feed} {o.day}" for o in report.failed)
        raise CollectionFailed(f"{len(report.failed)} day(s) failed and will be retried: {days}")
