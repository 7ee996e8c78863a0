"""The one exception of the OData layer: an HTTP status plus the OData JSON error body that names the problem."""
from __future__ import annotations

# Status codes used by the layer (the service turns an ODataError into a response with this status).
BAD_REQUEST = 400


class ODataError(Exception):
    """A client error (4xx) or a valid-but-unsupported request (501).

    `code` is a short machine-readable word (e.g. "InvalidFilter", "UnknownProperty", "NotImplemented"),
    `message` a sentence for a person, `target` the query option or property concerned (e.g. "$filter").
    """

    def __init__(self, status: int, code: str, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target

    def to_body(self) -> dict:
        """The OData v4 JSON error body: {"error": {"code", "message", "target"?}}."""
        error: dict = {"code": self.code, "message": self.message}
        if self.target is not None:
            error["target"] = self.target
        return {"error": error}

    def __repr__(self) -> str:
        return f"ODataError({self.status}, {self.code!r}, {self.message!r}, target={self.target!r})"


def bad_request(code: str, message: str, target: str | None = None) -> ODataError:
    return ODataError(BAD_REQUEST, code, message, target)
