"""Every configuration knob, read from the environment with the prefix ``IDP_MCP_``."""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The data directory before it had a stable default: relative to wherever a command ran.
LEGACY_DATA_DIR = Path(".idp-mcp")
DATABASE_FILE = "idp-mcp.db"
#: Addresses that mean "every interface": a URL cannot name them, so the public URL uses 127.0.0.1 instead.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104 (recognised, not bound to)


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/idp-mcp``, else ``~/.local/share/idp-mcp``: the same directory whichever directory a command
    runs from (the XDG base directory rule: a relative XDG_DATA_HOME is ignored)."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "idp-mcp"
    try:
        return Path.home() / ".local" / "share" / "idp-mcp"
    except RuntimeError:  # no HOME and no passwd entry (a bare container): the old default, made absolute
        return LEGACY_DATA_DIR.resolve()


def public_url_for_bind(host: str, port: int) -> tuple[str, bool]:
    """The URL clients reach a server bound to ``host``:``port`` on from this machine, and whether ``host`` was a
    wildcard (every interface; the URL then names 127.0.0.1, which other machines cannot use)."""
    wildcard = host.strip() in WILDCARD_HOSTS
    name = "127.0.0.1" if wildcard else host.strip().strip("[]").lower()
    try:
        if ipaddress.ip_address(name).version == 6:
            name = f"[{name}]"
    except ValueError:
        pass  # a host name such as localhost
    return (f"http://{name}" if port == 80 else f"http://{name}:{port}"), wildcard


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IDP_MCP_", extra="ignore")

    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Where clients reach this server; issuer, MCP resource and links derive from it.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the SQLite database lives; default $XDG_DATA_HOME/idp-mcp, else ~/.local/share/idp-mcp.",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is a SQLite file in the data dir."
    )
    sqlite_synchronous: Literal["full", "normal"] = Field(
        default="full",
        description="SQLite only. full: every commit is synced to disk before it is answered, so a power loss or an "
        "OS crash cannot roll back a token rotation, a revocation, a sign-out or a new secret; it costs one disk sync "
        "per write transaction (bench/sqlite_sync.py). normal: no sync per commit; the commits since the last "
        "checkpoint may roll back after such a crash (a crash of the process alone loses nothing either way).",
    )
    db_pool_size: int = Field(
        default=10, ge=1, le=1000, description="PostgreSQL only: connections each process keeps open."
    )
    db_max_overflow: int = Field(
        default=20, ge=0, le=1000, description="PostgreSQL only: extra connections a process may open under load."
    )
    db_pool_timeout: float = Field(
        default=30.0, gt=0, le=600, description="PostgreSQL only: how long a request waits for a free connection (s)."
    )
    debug_loop_guard: bool = Field(
        default=False,
        description="DEBUGGING: database work on an event-loop thread raises (the test suite turns it on).",
    )
    debug_transaction_tally: bool = Field(
        default=False,
        description="DEBUGGING: a request or tool call that opens more than one transaction is logged as an error "
        "(the test suite turns it on and fails the test).",
    )
    access_token_ttl: int = Field(default=3600, ge=30, le=86400, description="Access token lifetime (s).")
    refresh_token_ttl: int = Field(default=30 * 86400, ge=60, description="Refresh token lifetime (s).")
    authorization_code_ttl: int = Field(default=300, ge=10, le=600, description="Authorization code life.")
    session_ttl: int = Field(default=14 * 86400, ge=60, description="Browser session lifetime (s).")
    interaction_ttl: int = Field(default=900, ge=60, description="Time to finish sign-in and consent (s).")
    temporary_secret_ttl: int = Field(
        default=3600, ge=1, le=3600, description="Lifetime of secrets handed out by tools (s), at most an hour."
    )
    mcp_stateless: bool = Field(
        default=False, description="Serve /mcp without sessions (for replicas without sticky routing)."
    )
    key_cache_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="How often each process reloads the signing keys, so a rotation done elsewhere signs everywhere.",
    )
    audit_flush_interval: float = Field(
        default=0.05,
        gt=0,
        le=3600,
        description="How long a read tool call's audit row may wait in memory before it is committed (s); writes "
        "commit their rows before they answer.",
    )
    log_level: str = Field(default="INFO")
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest request body accepted by pages, forms and OAuth endpoints (bytes); larger: 413.",
    )
    mcp_max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest request body accepted at /mcp (bytes); larger: 413.",
    )

    # Client ID metadata documents (CIMD).
    cimd_allow_private_addresses: bool = Field(
        default=False,
        description="TESTS ONLY: let CIMD fetches reach loopback and private addresses.",
    )
    cimd_ca_bundle: Path | None = Field(
        default=None, description="TESTS ONLY: extra CA bundle trusted for CIMD fetches."
    )
    cimd_timeout: float = Field(default=5.0, gt=0, le=30)
    cimd_max_bytes: int = Field(default=5 * 1024, ge=512, le=64 * 1024)
    cimd_cache_ttl: int = Field(default=300, ge=0)
    cimd_max_fetches: int = Field(
        default=32, ge=1, le=1024, description="CIMD fetches in flight at once; past it a fetch fails at once."
    )
    cimd_max_fetches_per_host: int = Field(
        default=4, ge=1, le=1024, description="CIMD fetches in flight to one host; past it a fetch fails at once."
    )
    cimd_failure_cache_seconds: float = Field(
        default=30.0, ge=0, le=3600, description="How long a failed CIMD fetch is answered from memory (s)."
    )

    # Connectors (upstream identity providers): every fetch of discovery, JWKS, token and userinfo.
    connector_timeout: float = Field(
        default=10.0, gt=0, le=60, description="Total time allowed for one request to an upstream provider (s)."
    )
    connector_max_bytes: int = Field(
        default=256 * 1024, ge=4096, le=4 * 1024 * 1024, description="Largest accepted answer of an upstream provider."
    )
    connector_max_requests: int = Field(
        default=64,
        ge=1,
        le=1024,
        description="Requests to upstream providers in flight at once; past it one fails at once.",
    )
    connector_max_requests_per_host: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="Requests to one upstream host in flight at once; past it one fails at once.",
    )

    # Brute-force protection of password sign-in (the admin page and every tenant's hosted page). Failures are
    # counted in the database, so every replica sees the same counts.
    sign_in_max_failures_per_identifier: int = Field(
        default=5, ge=1, le=1000, description="Failed password sign-ins allowed per identifier in the window."
    )
    sign_in_max_failures_per_address: int = Field(
        default=30, ge=1, le=100000, description="Failed password sign-ins allowed per client address in the window."
    )
    sign_in_failure_window: int = Field(
        default=900, ge=60, le=86400, description="Window in which sign-in failures are counted (s)."
    )
    known_device_ttl: int = Field(
        default=90 * 86400,
        ge=3600,
        le=400 * 86400,
        description="How long a browser stays a known device of an account after its last sign-in there (s).",
    )
    registration_max_per_address: int = Field(
        default=20,
        ge=1,
        le=1_000_000,
        description="Dynamic client registrations allowed per client address per window.",
    )
    registration_window: int = Field(
        default=3600, ge=60, le=86400, description="Window in which client registrations are counted (s)."
    )

    # The SMTP connector that sends one-time email codes. Email codes are offered only when host and sender are set.
    smtp_host: str | None = Field(default=None, description="SMTP server that sends email codes; unset: no email.")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = Field(default=None, description="SMTP login, when the server asks for one.")
    smtp_password: SecretStr | None = Field(default=None)
    smtp_from: str | None = Field(default=None, description="Sender address of the emails, e.g. no-reply@example.com.")
    smtp_starttls: bool = Field(default=True, description="Upgrade the connection with STARTTLS before logging in.")
    smtp_timeout: float = Field(default=10.0, gt=0, le=60, description="Time allowed for one SMTP delivery (s).")

    @field_validator("public_url")
    @classmethod
    def _normalise_public_url(cls, value: str) -> str:
        # Issuer and resource are compared as exact strings: one canonical spelling, no trailing slash.
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("IDP_MCP_PUBLIC_URL must be an absolute http(s) URL")
        if "@" in parts.netloc:
            raise ValueError("IDP_MCP_PUBLIC_URL must not contain credentials")
        if parts.path.strip("/") or parts.query or parts.fragment:
            # Well-known metadata paths (RFC 8414, RFC 9728) hang off the origin; serve at a host's root.
            raise ValueError("IDP_MCP_PUBLIC_URL must be an origin such as https://id.example.com (no path)")
        return f"{parts.scheme}://{parts.netloc.lower()}"

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str | None) -> str | None:
        if value and value.startswith(("postgresql://", "postgres://")):
            # psycopg 3 is the driver we ship; plain postgresql:// would ask SQLAlchemy for psycopg2.
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @cached_property
    def issuer(self) -> str:
        """Issuer of the authorization server that MCP clients use."""
        return self.public_url

    @cached_property
    def mcp_resource(self) -> str:
        """The RFC 8707 / RFC 9728 identifier of the MCP endpoint."""
        return f"{self.public_url}/mcp"

    @cached_property
    def is_https(self) -> bool:
        return self.public_url.startswith("https://")

    @cached_property
    def public_host(self) -> str:
        return urlsplit(self.public_url).netloc

    @property
    def email_connector_configured(self) -> bool:
        """Whether email codes can be sent: an SMTP host and a sender address are set."""
        return bool(self.smtp_host and self.smtp_from)

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / DATABASE_FILE).resolve()}"

    def url(self, path: str) -> str:
        """An absolute URL on this server for a path that starts with '/'."""
        return f"{self.public_url}{path}"
