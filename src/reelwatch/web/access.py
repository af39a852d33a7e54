"""Who may call what: the API token, dashboard sessions with CSRF, loopback-only without a token."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reelwatch.web.errors import ApiError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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


PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip", "via")


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def logged_in(request: Request) -> bool:
    """A dashboard session that presented the token on the login page."""
    return bool(request.session.get("user"))


def require_user(request: Request) -> None:
    """The API: the bearer token if one is set, else loopback clients only.

    A logged-in dashboard session may read the API too (that is how the dashboard's script and
    its live events authenticate); a change through the API from a session also needs the
    session's `X-CSRF-Token` header.
    """
    token = request.app.state.settings.api_token
    if token:
        if secret_matches(request.headers.get("authorization"), token):
            return
        if logged_in(request):
            if request.method not in SAFE_METHODS:
                same_site_only(request)  # a second layer beside SameSite and the token
                check_csrf(request, request.headers.get("x-csrf-token"))
            return
        raise ApiError(401, "unauthorized", "a valid Authorization: Bearer token is required")
    require_local(request)


def require_local(request: Request) -> None:
    """Loopback-only mode: a loopback client, asking for a loopback host name.

    The host check stops DNS rebinding (a page on another site whose name resolves to
    127.0.0.1); for changes, a browser's Origin or Sec-Fetch-Site must say same-origin, which
    stops cross-site form posts. Scripts and the CLI send neither header and pass.
    """
    client = request.client.host if request.client else None
    if not is_loopback(client) or any(h in request.headers for h in PROXY_HEADERS):
        # A proxy on this machine would make every client look local: a request that says it
        # was forwarded is not taken as local (a proxy that says nothing cannot be told apart,
        # hence docs/deploying.md: behind a proxy, set the token).
        raise ApiError(
            403, "forbidden", "without REELWATCH_API_TOKEN only loopback clients are served"
        )
    hostname = request.url.hostname or ""
    if hostname != "localhost" and not is_loopback(hostname.strip("[]")):
        raise ApiError(403, "forbidden", "without REELWATCH_API_TOKEN only localhost is served")
    if request.method not in SAFE_METHODS:
        same_site_only(request)


def same_site_only(request: Request) -> None:
    """Refuse a change a browser says comes from another site (Sec-Fetch-Site, Origin)."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site is not None and site not in ("same-origin", "none"):
        raise ApiError(403, "cross_site", "cross-site requests are refused")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise ApiError(403, "cross_site", "cross-site requests are refused")


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use); forms carry it in a hidden field."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def check_csrf(request: Request, presented: str | None) -> None:
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not presented:
        raise ApiError(403, "csrf", "missing CSRF token: reload the page and try again")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise ApiError(403, "csrf", "wrong CSRF token: reload the page and try again")


def session_secret(api_token: str | None) -> str:
    """Sign session cookies with a key derived from the token, so every replica agrees.

    Without a token the server is loopback-only and a per-process key is enough.
    """
    if api_token:
        return hashlib.sha256(b"reelwatch-session:" + api_token.encode()).hexdigest()
    return secrets.token_hex(32)


def public_host(host: str) -> bool:
    """Whether binding to `host` exposes the server beyond this machine."""
    if host in ("localhost", ""):
        return host == ""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


class SecureCookies:
    """Mark every cookie `Secure` on requests that came over HTTPS.

    Starlette's SessionMiddleware sets `Secure` only when told `https_only`, which would break
    the plain-http loopback use; this asks each request instead. The scheme is the one the
    server reports: uvicorn takes it from `X-Forwarded-Proto` when the proxy is trusted
    (`--forwarded-allow-ips`, loopback by default).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (name, _secure(value) if name.lower() == b"set-cookie" else value)
                    for name, value in message.get("headers", [])
                ]
            await send(message)

        await self.app(scope, receive, secured)


def _secure(cookie: bytes) -> bytes:
    attributes = [part.strip().lower() for part in cookie.split(b";")[1:]]
    return cookie if b"secure" in attributes else cookie + b"; Secure"
