"""Errors a client or the person starting the server can cause, and their OpenAI-shaped bodies.

OpenAI clients read ``{"error": {"message", "type", "param", "code"}}`` and the
status code; they show the message. So every refusal is an ``ApiError`` with a
message a person can act on, and nothing else ever reaches a client as a
traceback.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

from engine import EngineError


class ApiError(Exception):
    """A request this server refuses: the HTTP status plus OpenAI's error fields."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


class ServerStartError(EngineError):
    """The server cannot start as asked (address in use, open to the network without a key...).

    An ``EngineError`` so that the command line and the app, which already
    show those as one readable line, show these the same way.
    """


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def invalid(message: str, param: str | None = None, code: str | None = "invalid_value") -> ApiError:
    """A 400 for a field a client got wrong."""
    return ApiError(400, message, param=param, code=code)


def unsupported(message: str, param: str) -> ApiError:
    """A 400 for an OpenAI feature this server does not offer (rather than silently ignoring it)."""
    return ApiError(400, message, param=param, code="unsupported_parameter")
