"""Timer blueprint: the daily collection. A thin adapter over shared/."""
import logging

import azure.functions as func

bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%COLLECT_SCHEDULE%", run_on_startup=False, use_monitor=True)
def collect(timer: func.TimerRequest) -> None:
    from shared.settings import load_settings

    settings = load_settings()
    logging.info("collect: timer fired (past_due=%s); feeds %s", timer.past_due, ",".join(settings.feeds))
