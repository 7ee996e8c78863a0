"""Request-rate limits shared by every thread and every Graph client of a process.

Graph throttles the call-log functions at three scopes at once (Microsoft's "PSTN call records limits"): per
function (collection), per application per tenant, and per tenant for all apps. A request counts in all three,
so it takes its slot in all three at one instant: under one lock the earliest instant every scope allows is
found and recorded in each, and the caller sleeps outside the lock (held for microseconds). Each scope cuts
time into cells of 1/rate seconds with at most one request a cell, so any span of W seconds holds at most
W x rate + 1 of its requests; see _Scope for why cells rather than one theoretical arrival time.

    limiter = limiter_for(settings)              # the process-wide limiter of this endpoint, tenant and app
    slot = limiter.acquire("getPstnCalls")        # waits for a slot in the function, app and tenant scopes
    limiter.succeeded(slot)                       # after a 2xx: a slowed scope climbs back
    limiter.throttled(slot, header, retry_after)  # after a 429: the scope it names slows down and holds

Adaptive: a 429 halves the rate of the scope it came from (x-ms-throttle-scope says which; without it, the
request's function, the narrowest) down to 1/16 of its configured rate, and holds that scope for Retry-After;
then each success in the scope raises its rate by 1/16 of the configured rate until it is back. Counting
requests rather than seconds keeps the recovery the same on a simulator's compressed time scale.

`reset_registry()` gives tests a fresh process-wide registry (optionally on an injected clock and sleep).
"""
from __future__ import annotations

import logging
import math
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger(__name__)

FUNCTION, APP, TENANT = "function", "app", "tenant"
# After a 429 the rate halves, but never below this share of the configured rate: a scope at the floor still
# makes progress, and climbs back in SLOWDOWN_STEPS successes.
SLOWDOWN_FLOOR = 1 / 16
SLOWDOWN_STEPS = 16

ScopeKey = tuple  # ("function", name), ("app",) or ("tenant",)


class RateLimiter:
    """One rate on its own, shared by threads: at most `burst` requests at once after an idle spell, then one
    every 1/rate_per_second seconds. GraphClient's limits are ScopedLimiter's; this is for one budget alone.

    In any span of W seconds at most `burst + W * rate_per_second` requests start. It is the generic cell
    rate algorithm: `_tat` is the theoretical arrival time of the next request on a perfectly spaced schedule.
    """

    def __init__(self, rate_per_second: float, burst: int = 1, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if not rate_per_second > 0:
            raise ValueError(f"rate_per_second must be positive, got {rate_per_second!r}")
        if int(burst) < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate_per_second = float(rate_per_second)
        self.interval = 1.0 / self.rate_per_second
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tat: float | None = None

    def reserve(self) -> float:
        """Claim the next slot; return how many seconds from now it starts (0 if at once). Does not sleep."""
        with self._lock:
            now = self._clock()
            tat = now if self._tat is None else max(self._tat, now)
            # The burst is tolerance below the schedule: up to burst-1 intervals early is still allowed.
            slot = max(now, tat - (self.burst - 1) * self.interval)
            self._tat = tat + self.interval
            return slot - now

    def hold(self, seconds: float) -> None:
        """Start no new request for `seconds`: the server asked the whole client, not one thread, to back off."""
        if seconds <= 0:
            return
        with self._lock:
            now = self._clock()
            # The first slot after the hold is now + seconds; the burst is spent, the schedule resumes spaced.
            resume = now + seconds + (self.burst - 1) * self.interval
            self._tat = resume if self._tat is None else max(self._tat, resume)

    def acquire(self) -> float:
        """Wait for the next slot; return the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait


# --- scopes --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScopeLimits:
    """Configured requests per minute of each scope."""

    function_per_minute: float
    app_per_minute: float
    tenant_per_minute: float

    @classmethod
    def from_settings(cls, settings) -> "ScopeLimits":
        return cls(settings.graph_function_requests_per_minute, settings.graph_app_requests_per_minute,
                   settings.graph_tenant_requests_per_minute)

    def per_minute(self, kind: str) -> float:
        return {FUNCTION: self.function_per_minute, APP: self.app_per_minute, TENANT: self.tenant_per_minute}[kind]


@dataclass(frozen=True)
class ScopeState:
    """What a scope is doing, for tests and status pages: rates in requests per minute."""

    configured_per_minute: float
    rate_per_minute: float
    held_until: float | None  # on the registry's clock; None when no hold has been asked for
    requests: int


class _Scope:
    """One scope's schedule, its adaptive rate and its hold. Guarded by the registry's lock.

    Time is cut into cells of 1/rate seconds, and a cell holds at most one request: any span of W seconds then
    holds at most W * rate + 1 requests. Unlike a single theoretical arrival time (GCRA), cells let a request
    take a free cell before one reserved further ahead. That matters because a request takes its slot in all
    three scopes at the instant it will start: one that waits for its own function (held after a 429, or
    slowed) reserves app and tenant cells at that later instant and leaves the earlier ones to the other
    functions, where a single arrival time would have pushed their whole schedule back with it.
    """

    def __init__(self, kind: str, per_minute: float):
        self.kind = kind
        self.configured = per_minute / 60.0
        self.rate = self.configured
        self.held_until: float | None = None
        self.count = 0     # requests reserved in this scope: each slot remembers its number
        self.cut_at = 0    # count when the rate was last cut: slots up to it were reserved before the cut
        self._starts: list[float] = []    # the recent and future starts, to rebuild the cells when the rate moves
        self._cells: dict[int, int] = {}  # cell -> requests in it (two only when a rate change merged cells)
        self._forget_at = 64

    def configure(self, per_minute: float) -> bool:
        if per_minute / 60.0 == self.configured:
            return False
        self.configured = per_minute / 60.0
        self.set_rate(self.configured)  # a new configuration starts again at its full rate
        return True

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        self._cells = {}
        for start in self._starts:
            cell = self._cell(start)
            self._cells[cell] = self._cells.get(cell, 0) + 1

    def _cell(self, t: float) -> int:
        # The cell whose start (cell / rate, computed the same way everywhere) is the last at or before t: the
        # corrections keep a start handed out by free_from() in its own cell despite rounding.
        cell = math.floor(t * self.rate)
        while (cell + 1) / self.rate <= t:
            cell += 1
        while cell / self.rate > t:
            cell -= 1
        return cell

    def free_from(self, t: float) -> float:
        """The first instant at or after `t` outside the hold whose cell is free."""
        if self.held_until is not None and t < self.held_until:
            t = self.held_until
        cell = self._cell(t)
        if cell not in self._cells:
            return t
        while cell in self._cells:
            cell += 1
        return cell / self.rate

    def take(self, t: float, now: float) -> int:
        cell = self._cell(t)
        self._cells[cell] = self._cells.get(cell, 0) + 1
        self._starts.append(t)
        self.count += 1
        if len(self._starts) >= self._forget_at:
            self._forget(now)
        return self.count

    def release(self, t: float) -> None:
        if t in self._starts:
            self._starts.remove(t)
            cell = self._cell(t)
            if self._cells.get(cell, 0) > 1:
                self._cells[cell] -= 1
            else:
                self._cells.pop(cell, None)

    def _forget(self, now: float) -> None:
        # Starts older than the slowest cell can no longer share a cell with a new request, even after a cut.
        horizon = now - 1.0 / (self.configured * SLOWDOWN_FLOOR)
        self._starts = [t for t in self._starts if t >= horizon]
        self.set_rate(self.rate)
        self._forget_at = max(64, 2 * len(self._starts))

    def state(self) -> ScopeState:
        return ScopeState(self.configured * 60.0, self.rate * 60.0, self.held_until, self.count)


@dataclass(frozen=True)
class Slot:
    """A request's place in its three scopes: when it starts (`at`, on the registry's clock), how long the
    caller waited for it, and which scope made it wait (None when it did not)."""

    function: str
    at: float
    waited: float
    bound_by: str | None
    numbers: dict = field(compare=False)  # ScopeKey -> the slot's number in that scope


# "Collection/getPstnCalls", "Tenant_Application/ReadWrite/{tenant}/{app}", "Tenant", "Application/...".
_THROTTLE_SCOPE = re.compile(r"\s*([A-Za-z_]+)\s*(?:/\s*([^/\s]*))?")


def throttle_scope(header: str | None, function: str) -> ScopeKey:
    """The scope a 429 came from, by its x-ms-throttle-scope header: Collection/{function} is that function,
    Tenant_Application (and Application, an app's limit across tenants) the app, Tenant the tenant. Absent or
    unknown: the request's own function, the narrowest scope, so a 429 slows only the feed that drew it."""
    match = _THROTTLE_SCOPE.match(header or "")
    kind = match.group(1).lower() if match else ""
    if kind == "collection":
        return (FUNCTION, match.group(2) or function)
    if kind in ("tenant_application", "application"):
        return (APP,)
    if kind == "tenant":
        return (TENANT,)
    return (FUNCTION, function)


class ScopedLimiter:
    """The limits of one app identity on one tenant of one Graph endpoint: a function scope per call-log
    function, the app scope and the tenant scope (the tenant scope is shared with the other app identities of
    the same tenant in this process). Get one with ScopeRegistry.limiter() or limiter_for(settings)."""

    def __init__(self, registry: "ScopeRegistry", key: tuple[str, str, str], limits: ScopeLimits,
                 app: _Scope, tenant: _Scope):
        self.key = key
        self._registry = registry
        self._limits = limits
        self._functions: dict[str, _Scope] = {}
        self._app = app
        self._tenant = tenant

    @property
    def limits(self) -> ScopeLimits:
        return self._limits

    # --- under the registry's lock ------------------------------------------------------------------------
    def _configure(self, limits: ScopeLimits) -> None:
        self._limits = limits
        scopes = [*self._functions.values(), self._app, self._tenant]
        if any([scope.configure(limits.per_minute(scope.kind)) for scope in scopes]):
            log.info("Graph request limits of %s now %.6g/%.6g/%.6g per minute (function/app/tenant)",
                     "/".join(self.key), limits.function_per_minute, limits.app_per_minute,
                     limits.tenant_per_minute)

    def _scope(self, key: ScopeKey) -> _Scope:
        if key[0] == APP:
            return self._app
        if key[0] == TENANT:
            return self._tenant
        scope = self._functions.get(key[1])
        if scope is None:
            scope = self._functions[key[1]] = _Scope(FUNCTION, self._limits.function_per_minute)
        return scope

    def _scopes(self, function: str) -> list[tuple[ScopeKey, _Scope]]:
        return [(key, self._scope(key)) for key in ((FUNCTION, function), (APP,), (TENANT,))]

    def _reserve(self, function: str, now: float) -> Slot:
        scopes = self._scopes(function)
        at, bound_by = now, None
        moved = True
        while moved:  # until one instant suits all three: each move is to a later cell, so this ends
            moved = False
            for _, scope in scopes:
                start = scope.free_from(at)
                if start > at:
                    at, bound_by, moved = start, scope.kind, True
        # One instant in all three: a request is one request in each scope, not three spread out.
        numbers = {key: scope.take(at, now) for key, scope in scopes}
        return Slot(function, at, at - now, bound_by if at > now else None, numbers)

    def _release(self, slot: Slot) -> None:
        for key, _ in slot.numbers.items():
            self._scope(key).release(slot.at)

    # --- public --------------------------------------------------------------------------------------------
    def reserve(self, function: str) -> Slot:
        """Claim the next slot of `function` in all three scopes; `waited` is how long until it starts. Does
        not sleep."""
        with self._registry._lock:
            return self._reserve(function, self._registry._clock())

    def acquire(self, function: str, sleep: Callable[[float], None] | None = None) -> Slot:
        """Wait for the next slot of `function` in all three scopes (with `sleep`, else the registry's); the
        slot's `waited` is the seconds waited in all."""
        sleep = sleep or self._registry._sleep
        waited, bound_by = 0.0, None
        while True:
            slot = self.reserve(function)
            if slot.waited > 0:
                sleep(slot.waited)
                waited += slot.waited
                bound_by = bound_by or slot.bound_by
            # A 429 that arrived while this thread slept holds a scope of it past the slot: give the slot back
            # and go again, rather than send into the hold.
            if slot.waited <= 0 or not self._held_past(slot):
                return Slot(function, slot.at, waited, bound_by, slot.numbers)

    def _held_past(self, slot: Slot) -> bool:
        with self._registry._lock:
            held = any(scope.held_until is not None and scope.held_until > slot.at
                       for _, scope in self._scopes(slot.function))
            if held:
                self._release(slot)
            return held

    def succeeded(self, slot: Slot) -> None:
        """A 2xx for `slot`: each of its scopes that is slowed climbs 1/16 of its configured rate, when the slot
        was reserved after the cut (an answer to a request sent before it says nothing about the new rate)."""
        with self._registry._lock:
            for key, scope in self._scopes(slot.function):
                if scope.rate < scope.configured and slot.numbers.get(key, 0) > scope.cut_at:
                    # Steps of a 16th from the cut: the last lands on the configured rate, whatever rounding did.
                    climbed = scope.rate + scope.configured / SLOWDOWN_STEPS
                    scope.set_rate(scope.configured if climbed > scope.configured * (1 - 1e-9) else climbed)
                    if scope.rate == scope.configured:
                        log.info("Graph %s scope of %s is back at its configured %.6g requests per minute",
                                 scope.kind, "/".join(self.key), scope.configured * 60)

    def throttled(self, slot: Slot, scope_header: str | None, retry_after: float | None, *,
                  slow_down: bool = True) -> str:
        """The answer to `slot` asked to back off: hold the scope `scope_header` names (x-ms-throttle-scope;
        see throttle_scope) for `retry_after` seconds if given, and with `slow_down` (a 429) halve its rate.
        Returns the scope's kind. Several requests in flight when the rate was cut halve it once, not each."""
        with self._registry._lock:
            key = throttle_scope(scope_header, slot.function)
            if key[0] == FUNCTION:
                # Graph's function names are case-insensitive; a collection this limiter never called can only
                # mean the request's own.
                known = {name.lower(): name for name in self._functions}
                key = (FUNCTION, known.get(key[1].lower(), slot.function))
            scope = self._scope(key)
            if slow_down and slot.numbers.get(key, scope.count + 1) > scope.cut_at:
                scope.set_rate(max(scope.configured * SLOWDOWN_FLOOR, scope.rate / 2))
                scope.cut_at = scope.count
                log.warning("Graph throttled the %s scope of %s (%s): %.6g requests per minute until it recovers",
                            scope.kind, "/".join(self.key), key[1] if key[0] == FUNCTION else scope_header or "",
                            scope.rate * 60)
            if retry_after is not None and retry_after > 0:
                until = self._registry._clock() + retry_after
                scope.held_until = until if scope.held_until is None else max(scope.held_until, until)
            return scope.kind

    def state(self) -> dict[ScopeKey, ScopeState]:
        """Every scope of this limiter (function scopes once they have been used), by its key."""
        with self._registry._lock:
            out = {(FUNCTION, name): scope.state() for name, scope in sorted(self._functions.items())}
            out[(APP,)] = self._app.state()
            out[(TENANT,)] = self._tenant.state()
            return out


class ScopeRegistry:
    """The limiters of a process, by (Graph endpoint, tenant id, app identity), on one clock and one lock.

    A limiter asked for again with other limits takes them (the latest settings win), so every client of the
    process draws from the same budget whatever it was configured with."""

    limiter_class = ScopedLimiter  # a subclass may observe the slots handed out (tests do)

    def __init__(self, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._limiters: dict[tuple[str, str, str], ScopedLimiter] = {}
        self._scopes: dict[tuple, _Scope] = {}

    def limiter(self, endpoint: str, tenant: str, app: str, limits: ScopeLimits) -> ScopedLimiter:
        key = (endpoint.rstrip("/").lower(), tenant or "default", app or "default")
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                # The app scope is this identity's; the tenant scope is shared with the tenant's other identities.
                limiter = self._limiters[key] = self.limiter_class(
                    self, key, limits, self._shared((*key, APP), APP, limits),
                    self._shared((*key[:2], TENANT), TENANT, limits))
            limiter._configure(limits)
            return limiter

    def _shared(self, key: tuple, kind: str, limits: ScopeLimits) -> _Scope:
        scope = self._scopes.get(key)
        if scope is None:
            scope = self._scopes[key] = _Scope(kind, limits.per_minute(kind))
        return scope

    def reset(self, clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None) -> None:
        """Forget every limiter and scope; optionally switch to another clock and sleep. Clients made before
        keep their old limiters: make them after the reset."""
        with self._lock:
            self._limiters.clear()
            self._scopes.clear()
            if clock is not None:
                self._clock = clock
            if sleep is not None:
                self._sleep = sleep


_REGISTRY = ScopeRegistry()


def registry() -> ScopeRegistry:
    """The process-wide registry every GraphClient draws from unless given another."""
    return _REGISTRY


def reset_registry(clock: Callable[[], float] | None = None,
                   sleep: Callable[[float], None] | None = None) -> ScopeRegistry:
    """Test hook: the process-wide registry with no limiter, no hold and no slowed scope, on `clock` and
    `sleep` when given (else the real ones)."""
    _REGISTRY.reset(clock or time.monotonic, sleep or time.sleep)
    return _REGISTRY


def app_identity(settings) -> tuple[str, str]:
    """(tenant, app) as Graph counts them for `settings`' credential; "default" where the process cannot tell
    (a managed identity knows its tenant only from its token; a system-assigned one has no client id here)."""
    tenant = settings.graph_tenant_id or "default"
    app = settings.graph_client_id
    if not app and settings.graph_credential in ("managed_identity", "default"):
        app = settings.azure_client_id
    return tenant, (app or "default")


def limiter_for(settings, registry_: ScopeRegistry | None = None) -> ScopedLimiter:
    """The limiter `settings`' requests share with every other client of the process (of `registry_`)."""
    tenant, app = app_identity(settings)
    return (registry_ or _REGISTRY).limiter(settings.graph_endpoint, tenant, app, ScopeLimits.from_settings(settings))
