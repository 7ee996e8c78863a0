"""What the server sends back: a Reply value, and the Graph-shaped error bodies."""
from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson

# Graph's error codes for the statuses the simulator produces.
ERROR_CODES = {
    400: "BadRequest", 401: "InvalidAuthenticationToken", 403: "Forbidden", 404: "ResourceNotFound",
    405: "MethodNotAllowed", 406: "NotAcceptable", 429: "TooManyRequests", 500: "InternalServerError",
    502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout",
}
ERROR_MESSAGES = {
    403: "Missing application permission CallRecords.Read.All (or CallRecord-PstnCalls.Read.All).",
    429: "Too many requests.",
    500: "An internal server error occurred.",
    503: "The service is temporarily unavailable.",
    504: "The gateway timed out.",
}
PAGE_CONTENT_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # "full": a normal answer; "half": headers and half the body, then close; "close": close, say nothing
    delivery: str = "full"

    def sent_bytes(self) -> bytes | None:
        """The body bytes that actually leave the server (None when nothing does)."""
        return {"full": self.body, "half": self.body[: len(self.body) // 2], "close": None}[self.delivery]


class GraphError(Exception):
    """A request Graph would refuse; turned into a Graph error reply."""

    def __init__(self, status: int, message: str | None = None, code: str | None = None,
                 retry_after: float | None = None):
        self.status = status
        self.code = code or ERROR_CODES.get(status, "UnknownError")
        self.message = message or ERROR_MESSAGES.get(status, self.code)
        self.retry_after = retry_after
        super().__init__(f"{status} {self.code}: {self.message}")


def compact_json(obj: object) -> bytes:
    # The simulator stands in for Graph's servers, but shares the machine with the collector it serves: orjson
    # writes a 1,000-row page in a fifteenth of json.dumps' CPU, which the benchmarks would otherwise count.
    try:
        return orjson.dumps(obj)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def json_reply(status: int, obj: object, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, compact_json(obj), {"Content-Type": "application/json", **(headers or {})})


def error_reply(error: GraphError, request_id: str, client_request_id: str) -> Reply:
    """Graph's error envelope: {"error": {"code", "message", "innerError": {date, request-id, ...}}}."""
    body = {"error": {"code": error.code, "message": error.message, "innerError": {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": request_id,
        "client-request-id": client_request_id,
    }}}
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(math.ceil(error.retry_after))  # HTTP allows whole seconds only
    return json_reply(error.status, body, headers)


def new_request_id() -> str:
    return str(uuid.uuid4())
