"""OAuth clients: dynamic registration (RFC 7591) and client ID metadata documents, both validated here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from idp_mcp.core.audit import AuditLog
from idp_mcp.core.crypto import digest, new_id, new_secret
from idp_mcp.core.rate_limits import CLIENT_REGISTRATION, Limit, RateLimits, address_key
from idp_mcp.core.redirect_uris import is_loopback_http, validate_redirect_uri
from idp_mcp.domain import SUPPORTED_SCOPES, Actor, Client, Clock, hidden_character, split_scope
from idp_mcp.errors import InvalidClientMetadata, InvalidRedirectUri, RegistrationThrottled
from idp_mcp.store.db import Database
from idp_mcp.store.repos import clients as repo

AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")
GrantType = Literal["authorization_code", "refresh_token"]
GRANT_TYPES = ("authorization_code", "refresh_token")
MAX_REDIRECT_URIS = 20


def _web_uri(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if (
        len(value) > 2048
        or not parts.netloc
        or not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback_http(value)))
    ):
        raise ValueError(f"{field} must be an https URL")
    return value


class ClientMetadata(BaseModel):
    """The RFC 7591 client metadata we accept. Unknown members are ignored, as the RFC asks."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    redirect_uris: list[str] = Field(min_length=1, max_length=MAX_REDIRECT_URIS)
    token_endpoint_auth_method: Literal["none", "client_secret_basic", "client_secret_post"] = "client_secret_basic"
    grant_types: list[GrantType] = Field(default_factory=lambda: list[GrantType](["authorization_code"]), min_length=1)
    response_types: list[Literal["code"]] = Field(default_factory=lambda: list[Literal["code"]](["code"]), min_length=1)
    client_name: str | None = Field(default=None, max_length=200)
    client_uri: str | None = None
    logo_uri: str | None = None
    tos_uri: str | None = None
    policy_uri: str | None = None
    scope: str | None = Field(default=None, max_length=1000)
    contacts: list[str] | None = Field(default=None, max_length=10)
    software_id: str | None = Field(default=None, max_length=200)
    software_version: str | None = Field(default=None, max_length=100)

    @field_validator("*")
    @classmethod
    def _visible(cls, value: Any) -> Any:
        # Shown to people (the consent page, the console, the audit log): nothing invisible or reordering.
        for text in value if isinstance(value, list) else [value]:
            hidden = hidden_character(text) if isinstance(text, str) else None
            if hidden:
                raise ValueError(f"must not contain control or invisible formatting characters ({hidden})")
        return value

    @field_validator("client_uri", "logo_uri", "tos_uri", "policy_uri")
    @classmethod
    def _https(cls, value: str | None, info: Any) -> str | None:
        return _web_uri(value, info.field_name)

    @field_validator("scope")
    @classmethod
    def _known_scopes(cls, value: str | None) -> str | None:
        unknown = [s for s in split_scope(value) if s not in SUPPORTED_SCOPES]
        if unknown:
            raise ValueError(f"unknown scope(s) {', '.join(unknown)}; supported: {' '.join(SUPPORTED_SCOPES)}")
        return value


def parse_client_metadata(payload: Any) -> ClientMetadata:
    """Validate RFC 7591 metadata; redirect URI problems raise ``invalid_redirect_uri`` specifically."""
    if not isinstance(payload, dict):
        raise InvalidClientMetadata("The registration request body must be a JSON object.")
    try:
        metadata = ClientMetadata.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        message = first["msg"].removeprefix("Value error, ")
        if where.startswith("redirect_uris"):
            raise InvalidRedirectUri(f"redirect_uris: {message}") from None
        raise InvalidClientMetadata(f"{where}: {message}") from None
    public = metadata.token_endpoint_auth_method == "none"
    for uri in metadata.redirect_uris:
        validate_redirect_uri(uri, public_client=public)
    return metadata


@dataclass(frozen=True)
class Registration:
    client: Client
    client_secret: str | None


@dataclass(frozen=True)
class RegistrationLimits:
    """How many clients one address may register in a window (open registration must not fill the database)."""

    per_address: int = 20
    window_seconds: int = 3600


class Clients:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        audit: AuditLog,
        rate_limits: RateLimits | None = None,
        registration_limits: RegistrationLimits | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit
        self._rate_limits = rate_limits
        self._registration_limits = registration_limits or RegistrationLimits()

    def get(self, tenant_id: str, client_id: str) -> Client | None:
        with self._db.read() as conn:
            return repo.get(conn, tenant_id, client_id)

    def register(
        self,
        tenant_id: str,
        metadata: ClientMetadata,
        *,
        actor: Actor | None = None,
        client_address: str | None = None,
    ) -> Registration:
        """Store a dynamically registered client. Confidential clients get a secret, kept only as a digest.

        Without ``actor`` the registration is recorded as done by the new client itself (open DCR). With
        ``client_address`` (open registration over HTTP) it counts against that address's limit first:
        :class:`RegistrationThrottled` past it.
        """
        # One transaction: the count and the client commit together (a failed insert counts nothing), and a refusal
        # commits its audit row alone (the counter is left as it was).
        with self._db.unit_of_work(writes=True):
            throttled = self._count_registration(tenant_id, client_address) if client_address is not None else None
            registration = None if throttled else self._insert_registration(tenant_id, metadata, actor)
        if throttled:
            raise throttled
        assert registration is not None
        return registration

    def _insert_registration(self, tenant_id: str, metadata: ClientMetadata, actor: Actor | None) -> Registration:
        now = self._clock()
        client_id = new_id(16)
        actor = actor or Actor(tenant_id=tenant_id, sub=None, client_id=client_id, client_name=metadata.client_name)
        secret = None if metadata.token_endpoint_auth_method == "none" else new_secret(32)
        values = self._row(tenant_id, client_id, "dcr", metadata, now)
        values["secret_digest"] = digest(secret) if secret else None
        with self._db.transaction() as conn:
            repo.insert_client(conn, values)
            self._audit.write(
                conn,
                actor,
                "client.register",
                target_type="client",
                target_id=client_id,
                details={
                    "client_name": metadata.client_name,
                    "redirect_uris": metadata.redirect_uris,
                    "token_endpoint_auth_method": metadata.token_endpoint_auth_method,
                },
            )
            client = repo.get(conn, tenant_id, client_id)
        assert client is not None
        return Registration(client=client, client_secret=secret)

    def _count_registration(self, tenant_id: str, client_address: str) -> RegistrationThrottled | None:
        """Count a registration from ``client_address``; past the limit, record the refusal and return the error to
        raise once the transaction committed."""
        if self._rate_limits is None:
            return None
        policy = self._registration_limits
        limit = Limit("address", address_key(client_address), policy.per_address)
        exceeded = self._rate_limits.hit(CLIENT_REGISTRATION, tenant_id, [limit], policy.window_seconds)
        if exceeded is None:
            return None
        self._audit.write_failure(
            Actor(tenant_id=tenant_id, sub=None),
            "client.registration_throttled",
            details={"client_address": client_address, "retry_after": exceeded.retry_after},
        )
        return RegistrationThrottled(
            f"Too many client registrations from this address; try again in {exceeded.retry_after} seconds.",
            exceeded.retry_after,
        )

    def store_metadata_document(self, tenant_id: str, client_id: str, metadata: ClientMetadata) -> Client:
        """Store (or refresh) a client known by its metadata document URL."""
        now = self._clock()
        values = self._row(tenant_id, client_id, "cimd", metadata, now)
        with self._db.transaction() as conn:
            existed = repo.get(conn, tenant_id, client_id) is not None
            repo.upsert(conn, values)
            if not existed:
                self._audit.write(
                    conn,
                    Actor(tenant_id=tenant_id, sub=None, client_id=client_id, client_name=metadata.client_name),
                    "client.metadata_document",
                    target_type="client",
                    target_id=client_id,
                    details={"redirect_uris": metadata.redirect_uris},
                )
            client = repo.get(conn, tenant_id, client_id)
        assert client is not None
        return client

    @staticmethod
    def _row(tenant_id: str, client_id: str, origin: str, metadata: ClientMetadata, now: datetime) -> dict[str, Any]:
        grant_types = list(dict.fromkeys(metadata.grant_types))
        return {
            "tenant_id": tenant_id,
            "client_id": client_id,
            "origin": origin,
            "name": metadata.client_name or "Unnamed client",
            "client_uri": metadata.client_uri,
            "logo_uri": metadata.logo_uri,
            "redirect_uris": list(metadata.redirect_uris),
            "grant_types": grant_types,
            "response_types": list(dict.fromkeys(metadata.response_types)),
            "token_endpoint_auth_method": metadata.token_endpoint_auth_method,
            "scope": metadata.scope,
            "secret_digest": None,
            "secret_expires_at": None,
            "metadata": metadata.model_dump(exclude_none=True),
            "created_at": now,
            "updated_at": now,
        }
