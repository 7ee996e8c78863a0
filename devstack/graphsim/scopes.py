"""Graph's "PSTN call records limits", per scope, on a time scale.

Knob `limits` (null = off):
  "documented"  the documented figures: per function 50/60 s, per app 200/60 s, per tenant 1,000/60 s
  {"per_function": LIMIT | {"getPstnCalls": LIMIT, "*": LIMIT}, "per_app": LIMIT, "per_tenant": LIMIT}
      each key optional; LIMIT is null, {"requests": n, "per_seconds": s} or "n/s" (ratelimit.py). A per-function
      dict names functions case-insensitively, "*" for the others; every function has a window of its own.
Knob `time_scale` (number > 0, default 1): every window and every Retry-After is divided by it, so a test lives
through minutes of limits in seconds. At 1, Retry-After is whole seconds as Graph sends; otherwise the scaled
value in decimal seconds (at least 0.001), which HTTP does not allow but the project's client reads.

A request is admitted only when every scope admits it, and only admitted requests occupy windows. A refused
one is answered 429 with the Retry-After of the scope that needs the longest wait, named in the header
`x-ms-throttle-scope`: `Collection/{function}`, `Tenant_Application/{appKey}` or `Tenant`. The app is the
`appid` (or `azp`) claim of a JWT bearer token; any other token is an app of its own, shown as `application`
(a token is never echoed).
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
from collections import deque
from dataclasses import dataclass, field

from .checks import is_number
from .ratelimit import RateLimit, parse_rate_limit

DOCUMENTED = {"per_function": RateLimit(50, 60.0), "per_app": RateLimit(200, 60.0), "per_tenant": RateLimit(1000, 60.0)}
_KEYS = ("per_function", "per_app", "per_tenant")


@dataclass(frozen=True)
class Limits:
    per_function: dict[str, RateLimit | None] = field(default_factory=dict)  # lower-case name or "*"
    per_app: RateLimit | None = None
    per_tenant: RateLimit | None = None

    def as_json(self) -> dict:
        return {"per_function": {k: v.as_json() if v else None for k, v in self.per_function.items()},
                "per_app": self.per_app.as_json() if self.per_app else None,
                "per_tenant": self.per_tenant.as_json() if self.per_tenant else None}


def parse_limits(obj: object) -> Limits | None:
    if obj is None:
        return None
    if obj == "documented":
        return Limits({"*": DOCUMENTED["per_function"]}, DOCUMENTED["per_app"], DOCUMENTED["per_tenant"])
    if not isinstance(obj, dict) or not set(obj) <= set(_KEYS):
        raise ValueError(f'limits must be null, "documented" or an object with keys among {list(_KEYS)}')
    per_function = obj.get("per_function")
    functions: dict[str, RateLimit] = {}
    if isinstance(per_function, dict) and set(per_function) - {"requests", "per_seconds"}:
        for name, limit in per_function.items():
            if not isinstance(name, str) or not name:
                raise ValueError("limits.per_function names must be function names or '*'")
            # A named null is no per-function limit for that function, whatever "*" says.
            functions[name.lower()] = _limit(f"limits.per_function.{name}", limit)
    else:
        parsed = _limit("limits.per_function", per_function)
        if parsed:
            functions["*"] = parsed
    return Limits(functions, _limit("limits.per_app", obj.get("per_app")),
                  _limit("limits.per_tenant", obj.get("per_tenant")))


def _limit(name: str, value: object) -> RateLimit | None:
    try:
        return parse_rate_limit(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def parse_time_scale(value: object) -> float:
    if not is_number(value, 0) or value == 0 or value > 1_000_000:
        raise ValueError("time_scale must be a number above 0 (and at most 1,000,000)")
    return float(value)


def app_key(authorization: str | None) -> str:
    """The app a bearer token belongs to: its appid/azp claim when it is a JWT, else one app for all."""
    token = (authorization or "").partition(" ")[2].strip()
    parts = token.split(".")
    if len(parts) == 3:
        try:
            payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
            claim = payload.get("appid") or payload.get("azp")
            if isinstance(claim, str) and claim.isprintable() and len(claim) <= 100:
                return claim
        except (ValueError, AttributeError):
            pass
    return "application"


def app_identity(authorization: str | None) -> tuple[str, str]:
    """(label, window key) of a token's app: a JWT's claim for both; for any other token the label
    `application` and a hash of the token as the key, so two opaque tokens are two apps and neither is shown."""
    label = app_key(authorization)
    if label != "application":
        return label, label
    token = (authorization or "").partition(" ")[2].strip()
    return label, "opaque:" + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:16]


class _Window:
    def __init__(self, limit: RateLimit, scale: float):
        self.requests, self.seconds = limit.requests, limit.per_seconds / scale
        self.admitted_at: deque[float] = deque()
        self.admitted = self.refused = 0

    def wait(self, now: float) -> float:
        """0 when a request may pass now, else the seconds until it may."""
        while self.admitted_at and self.admitted_at[0] <= now - self.seconds:
            self.admitted_at.popleft()
        if len(self.admitted_at) < self.requests:
            return 0.0
        return self.admitted_at[0] + self.seconds - now


class ScopeBook:
    """The windows of every scope, and what they admitted and refused. Not thread-safe: the simulator holds
    its lock around `admit`."""

    def __init__(self, limits: Limits | None, scale: float):
        self.limits, self.scale = limits, scale
        self._windows: dict[str, _Window] = {}
        self._functions: dict[str, dict] = {}

    def _window(self, key: str, limit: RateLimit | None) -> _Window | None:
        if limit is None:
            return None
        if key not in self._windows:
            self._windows[key] = _Window(limit, self.scale)
        return self._windows[key]

    def admit(self, function: str, app: str | tuple[str, str], now: float) -> tuple[str, str] | None:
        """None when admitted; else (Retry-After header value, x-ms-throttle-scope value). `app` is the app's
        key, or (the label the header shows, the key of its window) as app_identity gives them."""
        if self.limits is None:
            return None
        functions = self.limits.per_function
        limit = functions[function.lower()] if function.lower() in functions else functions.get("*")
        label, window_key = app if isinstance(app, tuple) else (app, app)
        scopes = [(f"Collection/{function}", self._window(f"Collection/{function}", limit)),
                  (f"Tenant_Application/{label}", self._window(f"Tenant_Application/{window_key}",
                                                               self.limits.per_app)),
                  ("Tenant", self._window("Tenant", self.limits.per_tenant))]
        scopes = [(name, window) for name, window in scopes if window is not None]
        waits = [(window.wait(now), name, window) for name, window in scopes]
        longest = max(waits, default=(0.0, "", None), key=lambda w: w[0])
        if longest[0] > 0:
            longest[2].refused += 1
            return _retry_after(longest[0], self.scale), longest[1]
        for _, _, window in waits:
            window.admitted_at.append(now)
            window.admitted += 1
        entry = self._functions.setdefault(function, {"admitted": 0, "first_admitted": now, "last_admitted": now})
        entry["admitted"] += 1
        entry["last_admitted"] = now
        return None

    def stats(self) -> dict:
        """Per scope admitted and refused; per function admitted and the first and last admission (monotonic
        seconds), from which a request rate follows."""
        return {"scopes": {k: {"admitted": w.admitted, "refused": w.refused} for k, w in self._windows.items()},
                "functions": {k: dict(v) for k, v in self._functions.items()},
                "time_scale": self.scale}


def _retry_after(seconds: float, scale: float) -> str:
    if scale == 1:
        return str(max(1, math.ceil(seconds)))
    return f"{max(1, math.ceil(seconds * 1000)) / 1000:.3f}"  # rounded up: never earlier than the window frees
