"""Fault rules: which Graph requests get a broken answer, and which kind of broken.

A rule is a plain JSON object (it arrives over the control API too):
  {"kind": "status", "status": 503, "retry_after": 2, "times": 1, "feed": "pstn", "skip": 1000, "after": 0}
  kind:        status | drop | invalid_json | loop | slow | empty_page
  status:      (kind status) the HTTP status, 400-599, answered with a Graph error body
  retry_after: (kind status, optional) seconds for a Retry-After header
  partial:     (kind drop, optional) true: send the headers and half the body, then close;
               false (default): close without answering
  seconds:     (kind slow) sleep this long, then answer normally
  times:       how many times the rule fires (default 1)
  feed:        only requests for this feed ("pstn" | "directRouting")
  skip:        only requests with this $skip (0 = a first page)
  after:       let this many matching requests through before firing (default 0)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .checks import is_int, is_number
from .rows import FEEDS

KINDS = ("status", "drop", "invalid_json", "loop", "slow", "empty_page")
_ONLY_FOR = {"status": "status", "retry_after": "status", "partial": "drop", "seconds": "slow"}
_FIELDS = {"kind", "times", "feed", "skip", "after", *_ONLY_FOR}


@dataclass(frozen=True)
class FaultRule:
    kind: str
    times: int = 1
    feed: str | None = None
    skip: int | None = None
    after: int = 0
    status: int | None = None
    retry_after: float | None = None
    partial: bool = False
    seconds: float = 0.0

    def as_json(self) -> dict:
        """The rule as given: kind, times, after, and the fields that differ from their defaults."""
        defaults = {f.name: f.default for f in fields(self)}
        return {k: v for k, v in asdict(self).items() if k in ("kind", "times", "after") or v != defaults[k]}


def parse_fault(obj: object) -> FaultRule:
    """Validate one rule; ValueError names what is wrong (typos must not silently disable a fault)."""
    if not isinstance(obj, dict):
        raise ValueError(f"a fault rule must be an object, not {obj!r}")
    unknown = set(obj) - _FIELDS
    if unknown:
        raise ValueError(f"fault rule has unknown fields {sorted(unknown)}")
    kind = obj.get("kind")
    if kind not in KINDS:
        raise ValueError(f"fault kind must be one of {list(KINDS)}, not {kind!r}")
    for name, owner in _ONLY_FOR.items():
        if name in obj and kind != owner:
            raise ValueError(f"fault field {name!r} applies to kind {owner!r} only")
    if kind == "status" and not (is_int(obj.get("status"), 400) and obj["status"] <= 599):
        raise ValueError("a status fault needs an integer 'status' between 400 and 599")
    if kind == "slow" and not is_number(obj.get("seconds"), 0):
        raise ValueError("a slow fault needs 'seconds' >= 0")
    if "retry_after" in obj and not is_number(obj["retry_after"], 0):
        raise ValueError("'retry_after' must be a number >= 0")
    if "partial" in obj and not isinstance(obj["partial"], bool):
        raise ValueError("'partial' must be true or false")
    if not is_int(obj.get("times", 1), 1):
        raise ValueError("'times' must be an integer >= 1")
    if not is_int(obj.get("after", 0), 0):
        raise ValueError("'after' must be an integer >= 0")
    if obj.get("feed") not in (None, *FEEDS):
        raise ValueError(f"'feed' must be one of {list(FEEDS)}")
    if obj.get("skip") is not None and not is_int(obj["skip"], 0):
        raise ValueError("'skip' must be an integer >= 0")
    return FaultRule(**obj)


class FaultBook:
    """The active rules with their counters. Not thread-safe: the simulator calls it under its lock."""

    def __init__(self, rules: tuple[FaultRule, ...]):
        self.rules = rules
        self._seen = [0] * len(rules)
        self._fired = [0] * len(rules)

    def match(self, feed: str, skip: int) -> FaultRule | None:
        """The rule to fire for this request, if any. Rules are tried in order; a rule counts a request
        as seen only when the request gets that far, so an earlier rule that fires hides it from later ones."""
        for i, rule in enumerate(self.rules):
            if rule.feed not in (None, feed) or rule.skip not in (None, skip):
                continue
            self._seen[i] += 1
            if self._seen[i] > rule.after and self._fired[i] < rule.times:
                self._fired[i] += 1
                return rule
        return None
