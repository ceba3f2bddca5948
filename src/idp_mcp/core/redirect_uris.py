"""Redirect URI rules (RFC 6749 §3.1.2, RFC 8252, OAuth 2.1): what may be registered, and what matches."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from idp_mcp.domain import hidden_character
from idp_mcp.errors import InvalidRedirectUri

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]", "localhost"})
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*$")
# Schemes that would run code or read local data in the browser rather than hand the code to an app.
_FORBIDDEN_SCHEMES = frozenset(
    {"javascript", "data", "file", "vbscript", "about", "blob", "filesystem", "ftp", "ws", "wss"}
)
MAX_URI_LENGTH = 2048


def _host(netloc: str) -> str:
    host = netloc.rsplit("@", 1)[-1]
    if host.startswith("["):
        return host[: host.index("]") + 1].lower() if "]" in host else host.lower()
    return host.split(":", 1)[0].lower()


def is_loopback_http(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme == "http" and _host(parts.netloc) in LOOPBACK_HOSTS


def validate_redirect_uri(uri: str, *, public_client: bool) -> str:
    """Return ``uri`` if it may be registered, else raise :class:`InvalidRedirectUri` saying why."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI_LENGTH:
        raise InvalidRedirectUri(f"Redirect URIs must be non-empty strings of at most {MAX_URI_LENGTH} characters.")
    if any(ch.isspace() for ch in uri) or "*" in uri:
        raise InvalidRedirectUri(f"Redirect URI '{uri[:100]}' must not contain spaces or wildcards.")
    hidden = hidden_character(uri)
    if hidden:
        # Its host is shown on the consent page: nothing invisible or reordering (and not quoted back either).
        raise InvalidRedirectUri(
            f"Redirect URIs must not contain control or invisible formatting characters ({hidden})."
        )
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if not scheme or not _SCHEME.match(scheme):
        raise InvalidRedirectUri(f"Redirect URI '{uri[:100]}' must be an absolute URI.")
    if parts.fragment or uri.endswith("#"):
        raise InvalidRedirectUri(f"Redirect URI '{uri[:100]}' must not contain a fragment.")
    if scheme in _FORBIDDEN_SCHEMES:
        raise InvalidRedirectUri(f"Redirect URI scheme '{scheme}' is not allowed.")
    if "@" in parts.netloc:
        raise InvalidRedirectUri(f"Redirect URI '{uri[:100]}' must not contain user information.")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port outside 0-65535
    except ValueError:
        raise InvalidRedirectUri(f"Redirect URI '{uri[:100]}' has an invalid port.") from None
    if scheme == "https":
        if not parts.netloc:
            raise InvalidRedirectUri(f"Redirect URI '{uri[:100]}' has no host.")
        return uri
    if scheme == "http":
        if _host(parts.netloc) not in LOOPBACK_HOSTS:
            raise InvalidRedirectUri(
                f"Redirect URI '{uri[:100]}' uses http on a non-loopback host; use https, or http on "
                "127.0.0.1, [::1] or localhost for native apps."
            )
        return uri
    # Private-use URI scheme (RFC 8252 §7.1), e.g. cursor://anysphere.cursor-mcp/oauth/callback.
    if not public_client:
        raise InvalidRedirectUri(
            f"Redirect URI scheme '{scheme}' is a private-use scheme, allowed only for public clients "
            "(token_endpoint_auth_method 'none')."
        )
    return uri


def _loopback_without_port(uri: str) -> tuple[str, str, str, str] | None:
    parts = urlsplit(uri)
    if parts.scheme != "http":
        return None
    host = _host(parts.netloc)
    if host not in LOOPBACK_HOSTS:
        return None
    port = parts.netloc[len(host) :]
    if port and not re.fullmatch(r":\d{1,5}", port):
        return None
    return (host, parts.path or "/", parts.query, parts.fragment)


def redirect_uri_matches(registered: tuple[str, ...] | list[str], requested: str) -> bool:
    """Exact string match, except loopback http where any port is accepted (RFC 8252 §7.3)."""
    if requested in registered:
        return True
    wanted = _loopback_without_port(requested)
    if wanted is None:
        return False
    return any(_loopback_without_port(uri) == wanted for uri in registered)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
