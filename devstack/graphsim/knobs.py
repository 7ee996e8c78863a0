"""The simulator's settings ("knobs"): defaults, validation, and the row volume they imply.

  seed                   int; the tenant and every row derive from it
  rows_per_day           int n (pstn n rows a day, directRouting n // 5: direct routing is usually the
                         smaller feed) or {"pstn": n, "directRouting": m}
  rows_per_day_overrides {"YYYY-MM-DD": <same forms as rows_per_day>} for single days
  page_size              rows per page (Graph: 1000)
  latency                seconds added to every Graph request
  faults                 list of fault rules (see faults.py); replaces the list and its counters
  late_rows              list of late-row rules (see late.py); replaces the list and restarts its clocks
  rate_limit             null, {"requests": n, "per_seconds": s} or "n/s" (see ratelimit.py)
  limits                 null (off), "documented" (50 requests / 60 s per function, 200 per app, 1,000 per
                         tenant) or {"per_function": LIMIT | {"getPstnCalls": LIMIT, "*": LIMIT},
                         "per_app": LIMIT, "per_tenant": LIMIT}, each key optional, LIMIT as rate_limit's;
                         a refusal is 429 naming its scope in x-ms-throttle-scope (see scopes.py)
  time_scale             number > 0 (default 1): every `limits` window and Retry-After is divided by it. At 1
                         Retry-After is whole seconds (ceil, >= 1) as Graph sends; otherwise decimal seconds
                         with three places (e.g. "0.250", at least "0.001"), which HTTP does not allow but the
                         project's client reads. rate_limit and fault rules' retry_after are not scaled
  token                  null (any bearer token passes) or the only token that passes
  functions              {name: declaration} of made-up Graph functions served besides the real two
                         (see functions.py); replaces the previous ones
"""
from __future__ import annotations

from datetime import date

from .checks import is_int, is_number
from .faults import FaultRule, parse_fault
from .functions import FunctionTable, parse_functions
from .late import parse_late
from .ratelimit import parse_rate_limit
from .scopes import parse_limits, parse_time_scale
from .rows import FEEDS

DEFAULTS = {
    "seed": 1,
    "rows_per_day": 2500,
    "rows_per_day_overrides": {},
    "page_size": 1000,
    "latency": 0.0,
    "faults": (),
    "late_rows": (),
    "rate_limit": None,
    "limits": None,
    "time_scale": 1.0,
    "token": None,
    "functions": FunctionTable(),
}


def validate(updates: dict) -> dict:
    """Checked, normalised copies of the given knobs (rules become objects). Raises ValueError."""
    unknown = set(updates) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown knobs {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    out = {}
    for name, value in updates.items():
        out[name] = _VALIDATORS[name](value)
    return out


def as_json(knobs: dict) -> dict:
    """The knobs as the control API shows them."""
    out = dict(knobs)
    out["faults"] = [rule.as_json() for rule in knobs["faults"]]
    out["late_rows"] = [rule.as_json() for rule in knobs["late_rows"]]
    out["rate_limit"] = knobs["rate_limit"].as_json() if knobs["rate_limit"] else None
    out["limits"] = knobs["limits"].as_json() if knobs["limits"] else None
    out["functions"] = knobs["functions"].as_json()
    return out


def rows_for(knobs: dict, feed: str, day: str) -> int:
    """Rows generated for `feed` on `day` (YYYY-MM-DD), late rows not included."""
    spec = knobs["rows_per_day_overrides"].get(day, knobs["rows_per_day"])
    if isinstance(spec, int):
        return spec if feed == "pstn" else spec // 5
    return spec[feed]


def _volume(value: object) -> int | dict:
    if is_int(value, 0):
        return value
    if isinstance(value, dict) and set(value) == set(FEEDS) and all(is_int(v, 0) for v in value.values()):
        return dict(value)
    raise ValueError(f'a row count must be an integer >= 0 or {{"pstn": n, "directRouting": m}}, not {value!r}')


def _overrides(value: object) -> dict:
    if not isinstance(value, dict):
        raise ValueError('rows_per_day_overrides must be {"YYYY-MM-DD": count}')
    for day in value:
        try:
            date.fromisoformat(day)
        except (TypeError, ValueError):
            raise ValueError(f"rows_per_day_overrides key {day!r} is not YYYY-MM-DD") from None
    return {day: _volume(count) for day, count in value.items()}


def _seed(value: object) -> int:
    if not is_int(value, 0):
        raise ValueError(f"seed must be an integer >= 0, not {value!r}")
    return value


def _page_size(value: object) -> int:
    if not is_int(value, 1):
        raise ValueError(f"page_size must be an integer >= 1, not {value!r}")
    return value


def _latency(value: object) -> float:
    if not is_number(value, 0):
        raise ValueError(f"latency must be a number of seconds >= 0, not {value!r}")
    return float(value)


def _faults(value: object) -> tuple[FaultRule, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError("faults must be a list of rules")
    return tuple(parse_fault(rule) for rule in value)


def _late_rows(value: object) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ValueError("late_rows must be a list of rules")
    return tuple(parse_late(i, rule) for i, rule in enumerate(value))


def _token(value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError("token must be null or a non-empty string")
    return value


_VALIDATORS = {
    "seed": _seed, "rows_per_day": _volume, "rows_per_day_overrides": _overrides, "page_size": _page_size,
    "latency": _latency, "faults": _faults, "late_rows": _late_rows, "rate_limit": parse_rate_limit,
    "token": _token, "functions": parse_functions, "limits": parse_limits, "time_scale": parse_time_scale,
}
