"""Timer blueprint: the daily collection. A thin adapter over shared.collect.run."""
import logging

import azure.functions as func

bp = func.Blueprint()


class CollectionFailed(RuntimeError):
    """Raised after every day was attempted, so the invocation shows as failed and the alert fires."""


@bp.timer_trigger(arg_name="timer", schedule="%COLLECT_SCHEDULE%", run_on_startup=False, use_monitor=True)
def collect(timer: func.TimerRequest) -> None:
    from shared.collect.run import run_scheduled
    from shared.config.settings import load_settings

    report = run_scheduled(load_settings())
    logging.info(report.summary())
    if report.failed:
        days = ", ".join(f"{o.feed} {o.day}" for o in report.failed)
        raise CollectionFailed(f"{len(report.failed)} day(s) failed and will be retried next run: {days}")
