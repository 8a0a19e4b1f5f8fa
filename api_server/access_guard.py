"""Who may talk to the server: the API key, and (on loopback) only pages that name this machine.

With a key, every request needs ``Authorization: Bearer KEY`` (compared in
constant time). On a loopback address, the Host header must name this machine
(localhost, 127.x.x.x, ::1): a web page that re-points its own domain at
127.0.0.1 (DNS rebinding) would otherwise reach the model from a browser.
"""

from __future__ import annotations

import hmac
import ipaddress

from .errors import ApiError


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """'127.0.0.1:8080' -> '127.0.0.1', '[::1]:8080' -> '::1'."""
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class AccessGuard:
    """ASGI middleware in front of the whole app: refuse before reading a body or running anything."""

    def __init__(self, app, api_key: str | None, loopback_only: bool):
        self.app = app
        self.api_key = api_key.encode("utf-8") if api_key else None
        self.loopback_only = loopback_only

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            refusal = self.refusal(dict(scope["headers"]), key_needed=scope.get("path") != "/health")
            if refusal is not None:
                await refusal.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, headers: dict[bytes, bytes], key_needed: bool = True) -> ApiError | None:
        """Why a request is refused, or None; a gateway's health check (``/health``) needs no key."""
        host = headers.get(b"host", b"").decode("latin-1")
        if self.loopback_only and host and not is_loopback(_host_name(host)):
            return ApiError(403, f"This server answers requests for this computer only, not for {host!r}.",
                            code="host_not_allowed")
        if self.api_key is None or not key_needed:
            return None
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return ApiError(401, "This server needs an API key: send it as 'Authorization: Bearer KEY'.",
                            code="missing_api_key")
        if not hmac.compare_digest(token.strip().encode("latin-1"), self.api_key):
            return ApiError(401, "The API key is not the one this server was started with.",
                            code="invalid_api_key")
        return None
