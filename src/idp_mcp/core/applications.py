"""Applications of a tenant: the OAuth clients a developer's software uses to sign users in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args
from urllib.parse import urlsplit

from sqlalchemy import Connection

from idp_mcp.core.audit import AuditLog
from idp_mcp.core.crypto import new_id
from idp_mcp.core.redirect_uris import is_loopback_http, validate_redirect_uri
from idp_mcp.domain import Actor, Client, Clock, hidden_character
from idp_mcp.errors import IdpError, NotFound, ValidationFailed
from idp_mcp.store.db import Database
from idp_mcp.store.repos import clients as repo
from idp_mcp.store.repos import grants as grants_repo

if TYPE_CHECKING:  # secrets.py imports this module
    from idp_mcp.core.secrets import IssuedSecret

ApplicationType = Literal["traditional", "spa", "native", "m2m"]
IdTokenAlg = Literal["ES256", "RS256"]
APPLICATION_TYPES: tuple[str, ...] = get_args(ApplicationType)
MAX_NAME, MAX_DESCRIPTION, MAX_URIS = 128, 1000, 20
LINE_BREAKS = "\n\r\t"  # a description may span lines; a name may not


class TemporarySecretMaker(Protocol):
    """Makes an application's secret inside the caller's transaction (``ClientSecrets`` does)."""

    def insert_in(
        self, conn: Connection, tenant_id: str, client_id: str, kind: Literal["temporary"], actor: Actor
    ) -> IssuedSecret: ...


@dataclass(frozen=True)
class NewApplication:
    application: Application
    temporary_secret: IssuedSecret | None  # for confidential applications; its value is known only now


class ApplicationNotFound(NotFound):
    code = "application.not_found"


@dataclass(frozen=True)
class Application:
    tenant_id: str
    id: str
    name: str
    type: ApplicationType
    description: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    cors_origins: tuple[str, ...]
    id_token_alg: IdTokenAlg
    created_at: datetime | None
    # Made by someone other than the tenant (a partner): its users see a consent screen naming it.
    third_party: bool = False

    @property
    def confidential(self) -> bool:
        return self.type in ("traditional", "m2m")


#: The fields an update may change, in the order a diff names them.
_FIELDS = ("name", "description", "redirect_uris", "post_logout_redirect_uris", "cors_origins", "id_token_alg")


@dataclass(frozen=True)
class ApplicationUpdate:
    """What :meth:`Applications.revise` did: the application before and after, and the fields that changed."""

    before: Application
    after: Application
    changed: tuple[str, ...]


@dataclass(frozen=True)
class ApplicationChanges:
    """A partial update: only the fields that are not None change."""

    name: str | None = None
    description: str | None = None
    redirect_uris: list[str] | None = None
    post_logout_redirect_uris: list[str] | None = None
    cors_origins: list[str] | None = None
    id_token_alg: IdTokenAlg | None = None


def _from_client(client: Client) -> Application:
    meta = client.metadata
    return Application(
        tenant_id=client.tenant_id,
        id=client.client_id,
        name=client.name,
        type=meta["application_type"],
        description=meta.get("description", ""),
        redirect_uris=client.redirect_uris,
        post_logout_redirect_uris=tuple(meta.get("post_logout_redirect_uris", [])),
        cors_origins=tuple(meta.get("cors_origins", [])),
        id_token_alg=meta.get("id_token_signed_response_alg", "ES256"),
        created_at=client.created_at,
        third_party=bool(meta.get("third_party", False)),
    )


def _check_text(value: str, what: str, maximum: int, *, required: bool, allowed: str = "") -> str:
    clean = value.strip()
    if required and not clean:
        raise ValidationFailed(f"The {what} must not be empty.")
    if len(clean) > maximum:
        raise ValidationFailed(f"The {what} is too long: at most {maximum} characters.")
    hidden = hidden_character(clean, allowed)
    if hidden:
        # The name is shown on consent and sign-in pages: no bidi overrides, zero-width or control characters.
        raise ValidationFailed(
            f"The {what} contains a control or invisible formatting character ({hidden}); remove it."
        )
    return clean


def _check_redirects(app_type: str, uris: list[str], what: str) -> list[str]:
    if app_type == "m2m":
        if uris:
            raise ValidationFailed(f"Machine-to-machine applications have no {what}; leave them empty.")
        return []
    if len(uris) > MAX_URIS:
        raise ValidationFailed(f"At most {MAX_URIS} {what}.")
    public = app_type in ("spa", "native")
    checked = []
    for uri in uris:
        try:
            validate_redirect_uri(uri, public_client=public)
        except IdpError as exc:
            raise ValidationFailed(f"{what}: {exc.message}") from None
        scheme = urlsplit(uri).scheme
        if app_type == "spa" and scheme not in ("https", "http"):
            raise ValidationFailed(f"{what}: a single-page app redirects to https (or loopback http), not '{scheme}:'.")
        checked.append(uri)
    return list(dict.fromkeys(checked))


def _check_origins(app_type: str, origins: list[str]) -> list[str]:
    if origins and app_type != "spa":
        raise ValidationFailed("Allowed CORS origins apply to single-page apps only.")
    if len(origins) > MAX_URIS:
        raise ValidationFailed(f"At most {MAX_URIS} CORS origins.")
    checked = []
    for origin in origins:
        parts = urlsplit(origin)
        if (
            parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or not parts.netloc
            or "@" in parts.netloc
            or not (parts.scheme == "https" or is_loopback_http(origin))
        ):
            raise ValidationFailed(f"'{origin[:100]}' is not an origin: use https://host[:port] without a path.")
        checked.append(f"{parts.scheme}://{parts.netloc}")
    return list(dict.fromkeys(checked))


def _application_or_not_found(client: Client | None, application_id: str) -> Application:
    if client is None or client.origin != "application":
        raise ApplicationNotFound(
            f"No application '{application_id[:64]}' in this tenant. Call listApplications to see the ids."
        )
    return _from_client(client)


def _apply(current: Application, changes: ApplicationChanges) -> tuple[set[str], dict[str, Any]]:
    """The fields ``changes`` really changes, and the column values after it (checked; raises on a bad value)."""
    name = _check_text(changes.name, "name", MAX_NAME, required=True) if changes.name is not None else current.name
    description = (
        _check_text(changes.description, "description", MAX_DESCRIPTION, required=False, allowed=LINE_BREAKS)
        if changes.description is not None
        else current.description
    )
    redirects = (
        _check_redirects(current.type, changes.redirect_uris, "redirect URIs")
        if changes.redirect_uris is not None
        else list(current.redirect_uris)
    )
    if current.type != "m2m" and not redirects:
        raise ValidationFailed("An application that signs users in needs at least one redirect URI.")
    post_logout = (
        _check_redirects(current.type, changes.post_logout_redirect_uris, "post-logout redirect URIs")
        if changes.post_logout_redirect_uris is not None
        else list(current.post_logout_redirect_uris)
    )
    origins = (
        _check_origins(current.type, changes.cors_origins)
        if changes.cors_origins is not None
        else list(current.cors_origins)
    )
    alg = changes.id_token_alg or current.id_token_alg
    if alg not in ("ES256", "RS256"):
        raise ValidationFailed("The ID token algorithm must be ES256 or RS256.")
    changed = {
        key
        for key, value, before in (
            ("name", name, current.name),
            ("description", description, current.description),
            ("redirect_uris", redirects, list(current.redirect_uris)),
            ("post_logout_redirect_uris", post_logout, list(current.post_logout_redirect_uris)),
            ("cors_origins", origins, list(current.cors_origins)),
            ("id_token_alg", alg, current.id_token_alg),
        )
        if value != before
    }
    metadata = {
        "description": description,
        "post_logout_redirect_uris": post_logout,
        "cors_origins": origins,
        "id_token_signed_response_alg": alg,
    }
    return changed, {"name": name, "redirect_uris": redirects, "metadata": metadata}


class Applications:
    def __init__(self, db: Database, clock: Clock, audit: AuditLog, secrets: TemporarySecretMaker) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit
        self._secrets = secrets

    def create(
        self,
        tenant_id: str,
        *,
        name: str,
        app_type: str,
        actor: Actor,
        description: str = "",
        redirect_uris: list[str] | None = None,
        post_logout_redirect_uris: list[str] | None = None,
        cors_origins: list[str] | None = None,
        id_token_alg: str = "ES256",
        third_party: bool = False,
    ) -> Application:
        """Create an application; every field is validated before anything is written."""
        values = self._new_values(
            tenant_id, name=name, app_type=app_type, description=description, redirect_uris=redirect_uris,
            post_logout_redirect_uris=post_logout_redirect_uris, cors_origins=cors_origins,
            id_token_alg=id_token_alg, third_party=third_party,
        )  # fmt: skip
        with self._db.transaction() as conn:
            return self._insert(conn, values, actor)

    def create_with_secret(
        self,
        tenant_id: str,
        *,
        name: str,
        app_type: str,
        actor: Actor,
        description: str = "",
        redirect_uris: list[str] | None = None,
        post_logout_redirect_uris: list[str] | None = None,
        cors_origins: list[str] | None = None,
        id_token_alg: str = "ES256",
        third_party: bool = False,
    ) -> NewApplication:
        """Create an application and, when it is confidential (traditional, m2m), its first temporary secret: one
        transaction with both audit rows, so an application never exists without the secret it was created with."""
        values = self._new_values(
            tenant_id, name=name, app_type=app_type, description=description, redirect_uris=redirect_uris,
            post_logout_redirect_uris=post_logout_redirect_uris, cors_origins=cors_origins,
            id_token_alg=id_token_alg, third_party=third_party,
        )  # fmt: skip
        with self._db.transaction() as conn:
            application = self._insert(conn, values, actor)
            secret = (
                self._secrets.insert_in(conn, tenant_id, application.id, "temporary", actor)
                if application.confidential
                else None
            )
        return NewApplication(application, secret)

    def _new_values(
        self,
        tenant_id: str,
        *,
        name: str,
        app_type: str,
        description: str,
        redirect_uris: list[str] | None,
        post_logout_redirect_uris: list[str] | None,
        cors_origins: list[str] | None,
        id_token_alg: str,
        third_party: bool,
    ) -> dict[str, Any]:
        """The row of a new application, every field validated (nothing is written here)."""
        if app_type not in APPLICATION_TYPES:
            raise ValidationFailed(
                f"Unknown application type '{app_type[:40]}'; use one of {', '.join(APPLICATION_TYPES)}."
            )
        if id_token_alg not in ("ES256", "RS256"):
            raise ValidationFailed("The ID token algorithm must be ES256 or RS256.")
        name = _check_text(name, "name", MAX_NAME, required=True)
        description = _check_text(description, "description", MAX_DESCRIPTION, required=False, allowed=LINE_BREAKS)
        redirects = _check_redirects(app_type, redirect_uris or [], "redirect URIs")
        if app_type != "m2m" and not redirects:
            raise ValidationFailed("Give at least one redirect URI (where users return after signing in).")
        post_logout = _check_redirects(app_type, post_logout_redirect_uris or [], "post-logout redirect URIs")
        origins = _check_origins(app_type, cors_origins or [])
        now = self._clock()
        client_id = new_id(12)
        confidential = app_type in ("traditional", "m2m")
        values: dict[str, Any] = {
            "tenant_id": tenant_id,
            "client_id": client_id,
            "origin": "application",
            "name": name,
            "client_uri": None,
            "logo_uri": None,
            "redirect_uris": redirects,
            "grant_types": ["client_credentials"] if app_type == "m2m" else ["authorization_code", "refresh_token"],
            "response_types": [] if app_type == "m2m" else ["code"],
            "token_endpoint_auth_method": "client_secret_basic" if confidential else "none",
            "scope": None,
            "secret_digest": None,
            "secret_expires_at": None,
            "metadata": {
                "application_type": app_type,
                "description": description,
                "post_logout_redirect_uris": post_logout,
                "cors_origins": origins,
                "id_token_signed_response_alg": id_token_alg,
                "third_party": third_party,
            },
            "created_at": now,
            "updated_at": now,
        }
        return values

    def _insert(self, conn: Connection, values: dict[str, Any], actor: Actor) -> Application:
        tenant_id, client_id, metadata = values["tenant_id"], values["client_id"], values["metadata"]
        repo.insert_client(conn, values)
        self._audit.write(
            conn, actor, "application.create", target_type="application", target_id=client_id, tenant_id=tenant_id,
            details={
                "name": values["name"], "type": metadata["application_type"], "redirect_uris": values["redirect_uris"],
                "third_party": metadata["third_party"],
            },
        )  # fmt: skip
        client = repo.get(conn, tenant_id, client_id)
        assert client is not None
        return _from_client(client)

    def list(self, tenant_id: str) -> list[Application]:
        with self._db.read() as conn:
            return [_from_client(client) for client in repo.list_applications(conn, tenant_id)]

    def get(self, tenant_id: str, application_id: str) -> Application:
        with self._db.read() as conn:
            client = repo.get(conn, tenant_id, application_id)
        return _application_or_not_found(client, application_id)

    def update(self, tenant_id: str, application_id: str, changes: ApplicationChanges, actor: Actor) -> Application:
        """Apply a partial update; invalid values change nothing. See :meth:`change`."""
        return self.change(tenant_id, application_id, changes, actor)[1]

    def change(
        self, tenant_id: str, application_id: str, changes: ApplicationChanges, actor: Actor
    ) -> tuple[Application, Application]:
        """Apply a partial update and return the application (before, after) as this update saw and left it."""
        update = self.revise(tenant_id, application_id, changes, actor)
        return update.before, update.after

    def revise(
        self, tenant_id: str, application_id: str, changes: ApplicationChanges, actor: Actor
    ) -> ApplicationUpdate:
        """Apply a partial update; returns the application as this update saw and left it, and what changed.

        The application is read, checked and written in one transaction holding its row (``FOR UPDATE`` on
        PostgreSQL; SQLite's write transactions are serial), so concurrent updates of different fields all land and
        each audit row names what its update really changed.
        """
        with self._db.transaction() as conn:
            client = repo.get(conn, tenant_id, application_id, for_update=True)
            current = _application_or_not_found(client, application_id)
            changed, values = _apply(current, changes)
            if not changed:
                self._audit.ride(conn)
                return ApplicationUpdate(current, current, ())
            assert client is not None
            values["metadata"] = {**client.metadata, **values["metadata"]}
            repo.update_client(conn, tenant_id, application_id, {**values, "updated_at": self._clock()})
            self._audit.write(
                conn, actor, "application.update", target_type="application", target_id=application_id,
                tenant_id=tenant_id, details={"changed": sorted(changed)},
            )  # fmt: skip
            updated = repo.get(conn, tenant_id, application_id)
        after = _application_or_not_found(updated, application_id)
        return ApplicationUpdate(current, after, tuple(field for field in _FIELDS if field in changed))

    def delete(self, tenant_id: str, application_id: str, actor: Actor) -> Application:
        """Delete an application, its secrets, and end every grant it holds."""
        with self._db.transaction() as conn:
            current = _application_or_not_found(
                repo.get(conn, tenant_id, application_id, for_update=True), application_id
            )
            grants_repo.revoke_client_families(conn, tenant_id, application_id, self._clock())
            repo.delete_client(conn, tenant_id, application_id)
            self._audit.write(
                conn, actor, "application.delete", target_type="application", target_id=application_id,
                tenant_id=tenant_id, details={"name": current.name, "type": current.type},
            )  # fmt: skip
        return current
