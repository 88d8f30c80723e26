"""The websocket handshake's Origin check, compared as Django's CSRF check compares it.

A browser sends the page's origin (scheme, host and port) with every websocket handshake; a page
on another origin must not open a socket with the player's session cookie. Channels'
``AllowedHostsOriginValidator`` compares only the host name against ``ALLOWED_HOSTS``
(``http://127.0.0.1:1`` passed for a site on port 8000, and so did ``https://`` for a plain
HTTP site), so the whole origin is compared here:

- the server's own origin: ``https`` when the socket came in over TLS (``wss``, or the proxy's
  ``X-Forwarded-Proto: https``, which Daphne's ``--proxy-headers`` deployment passes on), else
  ``http``, then ``://`` and the handshake's ``Host`` header, which must be one of
  ``ALLOWED_HOSTS``: as ``CsrfViewMiddleware`` builds ``good_origin``;
- or one of ``CSRF_TRUSTED_ORIGINS`` (exactly, or ``https://*.example.org`` for subdomains).

Anything else, or no Origin at all, is refused before the socket opens (HTTP 403).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            try:
                return bytes(value).decode("latin1")
            except (TypeError, ValueError):
                return None
    return None


def _allowed_hosts() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def _is_secure(scope: dict[str, Any]) -> bool:
    if scope.get("scheme") in ("wss", "https"):
        return True
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        header, secure_value = proxy
        name = header.removeprefix("HTTP_").replace("_", "-").lower().encode("latin1")
        return bool(_header(scope, name) == secure_value)
    forwarded = _header(scope, b"x-forwarded-proto")
    return forwarded is not None and forwarded.split(",")[0].strip().lower() == "https"


def own_origin(scope: dict[str, Any]) -> str | None:
    """Return this server's origin as the handshake names it, or None for a host not allowed."""
    host = (_header(scope, b"host") or "").strip().lower()
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return None
    return f"{'https' if _is_secure(scope) else 'http'}://{host}"


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Return whether the handshake's Origin is this server's own origin or a trusted one."""
    origin = _header(scope, b"origin")
    if not origin or origin == "null":
        return False
    origin = origin.strip().lower()
    if origin == own_origin(scope):
        return True
    trusted = [item.lower() for item in settings.CSRF_TRUSTED_ORIGINS]
    if origin in trusted:
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    for item in trusted:
        if "*" not in item:
            continue
        pattern = urlsplit(item)
        if pattern.scheme == parsed.scheme and is_same_domain(
            parsed.netloc, pattern.netloc.replace("*", "", 1)
        ):
            return True
    return False


class SameOriginValidator:
    """ASGI middleware: let a websocket handshake through only from an allowed origin."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
