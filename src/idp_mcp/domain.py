"""Plain types shared by every layer."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Clock = Callable[[], datetime]

ADMIN_TENANT_ID = "admin"
DEFAULT_TENANT_ID = "default"

# Scopes an MCP client may ask for. Tools declare which one they need.
SCOPE_READ = "idp:read"
SCOPE_WRITE = "idp:write"
SCOPE_OPENID = "openid"
SCOPE_PROFILE = "profile"
SCOPE_EMAIL = "email"
SCOPE_OFFLINE = "offline_access"
MCP_SCOPES = (SCOPE_READ, SCOPE_WRITE)
SUPPORTED_SCOPES = (SCOPE_OPENID, SCOPE_PROFILE, SCOPE_EMAIL, SCOPE_OFFLINE, *MCP_SCOPES)

SCOPE_DESCRIPTIONS: dict[str, str] = {
    SCOPE_READ: "Read the tenant's settings, applications, users and guides",
    SCOPE_WRITE: "Create, change and delete applications, users and sign-in settings",
    SCOPE_OPENID: "Know who you are",
    SCOPE_PROFILE: "See your name",
    SCOPE_EMAIL: "See your email address",
    SCOPE_OFFLINE: "Stay connected while you are away (refresh tokens)",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every comparison here is in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def split_scope(scope: str | None) -> list[str]:
    """Scopes in request order, duplicates dropped."""
    seen: dict[str, None] = {}
    for item in (scope or "").split():
        seen.setdefault(item, None)
    return list(seen)


def join_scope(scopes: list[str] | tuple[str, ...]) -> str:
    return " ".join(scopes)


def contains_nul(value: Any) -> bool:
    """Whether a string, or any key or item of nested dicts and lists, holds a NUL character. PostgreSQL refuses
    NUL in text (even as a query parameter), so input holding one is refused at the edge, on every database."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(key) or contains_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(item) for item in value)
    return False


# Control (Cc), format (Cf: bidi overrides U+202A-U+202E and isolates U+2066-U+2069, zero-width characters, the BOM)
# and line/paragraph separators: invisible or reordering text, so a name shown on the consent page could pass for
# another ("Claude\u202e..."). Refused in names and other metadata people read.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def hidden_character(text: str, allowed: str = "") -> str | None:
    """The first control, format or separator character of ``text`` (except those in ``allowed``) as ``U+XXXX``,
    or None when every character is visible."""
    for char in text:
        if char not in allowed and unicodedata.category(char) in HIDDEN_CATEGORIES:
            return f"U+{ord(char):04X}"
    return None


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class User:
    tenant_id: str
    id: str
    username: str | None
    email: str | None
    name: str | None
    suspended: bool
    created_at: datetime
    email_verified: bool = False  # the address was proven by a code sent to it, or an administrator vouched for it


@dataclass(frozen=True)
class Actor:
    """Who acts: the human (``sub``) and the agent (OAuth client) acting for them, if any."""

    tenant_id: str
    sub: str | None
    client_id: str | None = None
    client_name: str | None = None


ClientOrigin = Literal["dcr", "cimd", "application"]


@dataclass(frozen=True)
class Client:
    tenant_id: str
    client_id: str
    origin: ClientOrigin
    name: str
    client_uri: str | None
    logo_uri: str | None
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    response_types: tuple[str, ...]
    token_endpoint_auth_method: str
    scope: str | None
    secret_digest: str | None
    secret_expires_at: datetime | None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    tenant_id: str
    action: str
    target_type: str | None
    target_id: str | None
    actor_sub: str | None
    actor_client_id: str | None
    actor_client_name: str | None
    outcome: str
    details: dict[str, Any]
