"""Who may call what: the API token, loopback-only without one, and constant-time secrets."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import Request

from reelwatch.web.errors import ApiError


def secret_matches(header: str | None, secret: str) -> bool:
    """`Authorization: Bearer <secret>`, compared in constant time on bytes.

    Headers are latin-1 on the wire; a non-ASCII one simply does not match (never a 500).
    """
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    try:
        presented = value.strip().encode("latin-1")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(presented, secret.encode("utf-8"))


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_user(request: Request) -> None:
    """The API and dashboard: the bearer token if one is set, else loopback clients only."""
    token = request.app.state.settings.api_token
    if token:
        if not secret_matches(request.headers.get("authorization"), token):
            raise ApiError(
                401,
                "unauthorized",
                "a valid Authorization: Bearer token is required",
            )
        return
    client = request.client.host if request.client else None
    if not is_loopback(client):
        raise ApiError(
            403, "forbidden", "without REELWATCH_API_TOKEN only loopback clients are served"
        )


def public_host(host: str) -> bool:
    """Whether binding to `host` exposes the server beyond this machine."""
    if host in ("localhost", ""):
        return host == ""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True
