"""Connectors: the upstream identity providers a tenant's users may sign in with ("Continue with Google", an
enterprise's own OpenID provider), and the rules for the users they bring in.

A connector is ``oidc`` (endpoints from the issuer's discovery document, ID token checked) or ``oauth2`` (endpoints
given, the profile read from a userinfo endpoint through a claim mapping). Presets are data: endpoints, scopes,
claim mapping, button label and icon; nothing here is code per provider.

The client secret must be sent to the upstream token endpoint, so a digest would not do: it is stored encrypted
(Fernet: AES-128-CBC with HMAC-SHA256, from ``cryptography``) under a key generated on first use and kept in
``server_secrets``. That keeps it out of every row a query of the connectors returns, of backups of that table and
of logs; it does not protect against someone holding the whole database (like the signing keys, see the README).
It is set only in the console (a signed, short-lived link), never returned, never audited, never logged.

No HTTP here: fetching discovery, keys, tokens and profiles is the ``oauth.upstream`` adapter's work. The core
decides who the upstream user is here (:meth:`Connectors.resolve_user`) and keeps the one-time ``state`` of each
sign-in sent upstream.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from idp_mcp.core.audit import AuditLog
from idp_mcp.core.crypto import digest, new_id, new_secret
from idp_mcp.core.server_keys import stored_or_made
from idp_mcp.core.sign_in_experience import SignInExperiences
from idp_mcp.core.users import normalise_email
from idp_mcp.domain import Actor, Clock, User, as_utc
from idp_mcp.errors import Forbidden, IdpError, NotFound, UserNotFound, UserSuspended, ValidationFailed
from idp_mcp.store.db import Database
from idp_mcp.store.repos import connectors as repo
from idp_mcp.store.repos import sign_in_experiences as experiences_repo
from idp_mcp.store.repos import users as users_repo
from idp_mcp.store.tables import users as users_table
from idp_mcp.store.transaction_tally import apart

Kind = Literal["oidc", "oauth2"]
TokenAuth = Literal["client_secret_basic", "client_secret_post", "none"]
KINDS: tuple[Kind, ...] = ("oidc", "oauth2")
TOKEN_AUTH: tuple[TokenAuth, ...] = ("client_secret_basic", "client_secret_post", "none")
ENDPOINT_FIELDS = ("authorization", "token", "userinfo")
CLAIM_FIELDS = ("id", "email", "emailVerified", "name", "picture")
DEFAULT_CLAIMS = {
    "id": "sub",
    "email": "email",
    "emailVerified": "email_verified",
    "name": "name",
    "picture": "picture",
}
DEFAULT_OIDC_SCOPES = ("openid", "email", "profile")
MAX_NAME = 128
MAX_DOMAINS = 50
MAX_SCOPES = 20
LOGIN_TTL = timedelta(minutes=10)
SECRET_LINK_TTL = timedelta(minutes=30)
MAX_SECRET = 1024
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_CLAIM = re.compile(r"^[A-Za-z0-9_:.-]{1,64}$")
_FERNET_KEY = "connector_secret_key"
_LINK_KEY = "connector_secret_link_key"


# --- errors -----------------------------------------------------------------------------------------------------


class ConnectorNotFound(NotFound):
    code = "connector.not_found"


class NoAccount(Forbidden):
    """The upstream user has no account here and the tenant does not let them create one."""

    code = "connector.no_account"


class UpstreamSignInFailed(IdpError):
    """The trip to the upstream provider did not prove who the user is; nothing was created."""

    code = "connector.sign_in_failed"
    status = 400


class ConnectorUnusable(IdpError):
    code = "connector.waiting_for_secret"
    status = 409


class ConnectorConflict(IdpError):
    code = "connector.conflict"
    status = 409


class LastWayIn(IdpError):
    code = "user.last_way_in"
    status = 409


class IdentityNotFound(NotFound):
    code = "identity.not_found"


# --- presets ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """What a well-known provider needs, as data."""

    kind: Kind
    label: str
    icon: str
    scopes: tuple[str, ...]
    issuer: str | None = None
    endpoints: Mapping[str, str] = field(default_factory=dict)
    claims: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CLAIMS))
    token_auth: TokenAuth = "client_secret_basic"
    docs: str = ""


PRESETS: dict[str, Preset] = {
    "google": Preset(
        kind="oidc", label="Google", icon="google", scopes=("openid", "email", "profile"),
        issuer="https://accounts.google.com",
        docs="Google Cloud console → APIs & Services → Credentials → OAuth client ID (Web application).",
    ),
    "microsoft": Preset(
        # "common" admits any work, school or personal account; give issuer
        # https://login.microsoftonline.com/<directory id>/v2.0 for one directory (Entra ID tenant) only.
        kind="oidc", label="Microsoft", icon="microsoft", scopes=("openid", "email", "profile"),
        issuer="https://login.microsoftonline.com/common/v2.0",
        docs="Microsoft Entra admin center → App registrations → New registration (Web platform).",
    ),
    "github": Preset(
        kind="oauth2", label="GitHub", icon="github", scopes=("read:user", "user:email"),
        endpoints={
            "authorization": "https://github.com/login/oauth/authorize",
            "token": "https://github.com/login/oauth/access_token",
            "userinfo": "https://api.github.com/user",
        },
        # GitHub's /user shows only a public email and says nothing of its verification: never linked by email.
        claims={"id": "id", "email": "email", "name": "name", "picture": "avatar_url"},
        token_auth="client_secret_post",
        docs="GitHub → Settings → Developer settings → OAuth Apps → New OAuth App.",
    ),
    "gitlab": Preset(
        kind="oidc", label="GitLab", icon="gitlab", scopes=("openid", "email", "profile"), issuer="https://gitlab.com",
        docs="GitLab → Preferences → Applications (scopes openid, email, profile).",
    ),
}  # fmt: skip


# --- the connector ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Connector:
    tenant_id: str
    id: str
    kind: Kind
    preset: str | None
    name: str
    client_id: str
    issuer: str | None
    endpoints: dict[str, str]
    claims: dict[str, str]
    scopes: tuple[str, ...]
    email_domains: tuple[str, ...]
    link_by_email: bool
    token_auth: TokenAuth
    label: str
    icon: str | None
    has_secret: bool
    secret_last_four: str | None
    created_at: datetime | None
    updated_at: datetime | None

    @property
    def waiting_for_secret(self) -> bool:
        """A confidential connector cannot sign anyone in before its secret is set in the console."""
        return self.token_auth != "none" and not self.has_secret

    @property
    def usable(self) -> bool:
        return not self.waiting_for_secret


@dataclass(frozen=True)
class ConnectorInput:
    """What an agent gives to create a connector (everything but the secret)."""

    kind: Kind | None
    name: str
    client_id: str
    preset: str | None = None
    issuer: str | None = None
    endpoints: Mapping[str, str] | None = None
    claims: Mapping[str, str] | None = None
    scopes: list[str] | None = None
    email_domains: list[str] | None = None
    link_by_email: bool = False
    token_auth: TokenAuth | None = None


@dataclass(frozen=True)
class ConnectorChanges:
    name: str | None = None
    client_id: str | None = None
    issuer: str | None = None
    endpoints: Mapping[str, str] | None = None
    claims: Mapping[str, str] | None = None
    scopes: list[str] | None = None
    email_domains: list[str] | None = None
    link_by_email: bool | None = None
    token_auth: TokenAuth | None = None


@dataclass(frozen=True)
class UpstreamProfile:
    """Who the upstream says the user is, as mapped from its ID token or userinfo answer."""

    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    picture: str | None


@dataclass(frozen=True)
class PendingLogin:
    """A sign-in sent upstream: the values the callback checks, known only to this server and the browser."""

    state: str
    nonce: str
    code_verifier: str
    interaction_id: str


@dataclass(frozen=True)
class Identity:
    connector_id: str
    connector_name: str | None
    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    picture: str | None
    created_at: datetime
    last_sign_in_at: datetime


@dataclass(frozen=True)
class SignedInUpstream:
    user: User
    created: bool  # a new account
    linked: bool  # an existing account found by verified email


# --- checks -----------------------------------------------------------------------------------------------------


def _clean_text(value: str, field_name: str, limit: int) -> str:
    clean = " ".join(value.split())
    if not clean:
        raise ValidationFailed(f"{field_name} must not be empty.")
    if len(clean) > limit:
        raise ValidationFailed(f"{field_name} is too long: at most {limit} characters.")
    return clean


def check_url(value: str, field_name: str, *, allow_http_loopback: bool) -> str:
    """An https URL (plain http only to a loopback host, and only when the test setting allows private addresses)."""
    url = value.strip()
    if len(url) > 2048 or any(char.isspace() or ord(char) < 32 for char in url):
        raise ValidationFailed(f"{field_name} must be a URL of at most 2048 characters, without spaces.")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (a port that is not a number raises ValueError)
    except ValueError:
        raise ValidationFailed(f"{field_name}: '{url[:80]}' is not a valid URL.") from None
    if not host or parts.username or parts.password or parts.fragment:
        raise ValidationFailed(f"{field_name} must be an absolute URL without credentials or fragment.")
    loopback = host in ("127.0.0.1", "localhost", "::1")
    if parts.scheme == "https" or (parts.scheme == "http" and loopback and allow_http_loopback):
        return url
    raise ValidationFailed(f"{field_name} must be an https URL (https://…); '{url[:80]}' is not.")


def _scopes(values: list[str], kind: Kind) -> tuple[str, ...]:
    if len(values) > MAX_SCOPES:
        raise ValidationFailed(f"At most {MAX_SCOPES} scopes.")
    for scope in values:
        if not isinstance(scope, str) or not _SCOPE.match(scope):
            raise ValidationFailed(f"'{str(scope)[:40]}' is not a valid scope (no spaces, quotes or backslashes).")
    scopes = list(dict.fromkeys(values))
    if kind == "oidc" and "openid" not in scopes:
        scopes.insert(0, "openid")  # an OpenID provider returns an ID token only for the openid scope
    return tuple(scopes)


def _domains(values: list[str]) -> tuple[str, ...]:
    if len(values) > MAX_DOMAINS:
        raise ValidationFailed(f"At most {MAX_DOMAINS} email domains per connector.")
    domains = []
    for value in values:
        domain = str(value).strip().lower().removeprefix("@")
        if not _DOMAIN.match(domain):
            raise ValidationFailed(f"'{str(value)[:80]}' is not an email domain such as acme.com.")
        domains.append(domain)
    return tuple(dict.fromkeys(domains))


def _claims(values: Mapping[str, str]) -> dict[str, str]:
    unknown = sorted(str(key) for key in values if key not in CLAIM_FIELDS)
    if unknown:
        raise ValidationFailed(
            f"Unknown claim mapping field '{unknown[0][:40]}'. The fields are: {', '.join(CLAIM_FIELDS)}."
        )
    for key, claim in values.items():
        if not isinstance(claim, str) or not _CLAIM.match(claim):
            raise ValidationFailed(
                f"The claim mapping of {key} must be a claim name such as 'sub', not '{str(claim)[:40]}'."
            )
    return dict(values)


def _endpoints(values: Mapping[str, str], *, allow_http_loopback: bool) -> dict[str, str]:
    unknown = sorted(str(key) for key in values if key not in ENDPOINT_FIELDS)
    if unknown:
        raise ValidationFailed(
            f"Unknown endpoint '{unknown[0][:40]}'. The endpoints are: {', '.join(ENDPOINT_FIELDS)}."
        )
    return {
        key: check_url(url, f"endpoints.{key}", allow_http_loopback=allow_http_loopback)
        for key, url in values.items()
        if url
    }


def _check_complete(kind: Kind, issuer: str | None, endpoints: dict[str, str]) -> None:
    if kind == "oidc" and not issuer:
        raise ValidationFailed(
            "An oidc connector needs issuer: the provider's issuer URL (its discovery document is "
            "<issuer>/.well-known/openid-configuration)."
        )
    if kind == "oauth2":
        missing = [name for name in ENDPOINT_FIELDS if name not in endpoints]
        if missing:
            raise ValidationFailed(
                f"An oauth2 connector needs endpoints.{missing[0]}: give authorization, token and userinfo URLs."
            )


def domain_of(email: str) -> str | None:
    """The lower-cased domain of an email address, or None when it is not one."""
    local, at, domain = email.strip().lower().rpartition("@")
    return domain if at and local and _DOMAIN.match(domain) else None


# --- the service ------------------------------------------------------------------------------------------------


class Connectors:
    def __init__(
        self, db: Database, clock: Clock, audit: AuditLog, experiences: SignInExperiences, *, allow_http_loopback: bool
    ) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit
        self._experiences = experiences
        self._allow_http_loopback = allow_http_loopback
        self._keys: dict[str, bytes] = {}
        self._keys_lock = threading.Lock()

    # --- reading ------------------------------------------------------------------------------------------------

    def list(self, tenant_id: str) -> builtins.list[Connector]:
        """Every connector of the tenant, with whether its secret is set (never the secret)."""
        with self._db.read() as conn:
            rows = repo.list_for_tenant(conn, tenant_id)
            secrets = repo.secret_info(conn, tenant_id, [row.id for row in rows])
        return [_to_connector(row, secrets.get(row.id)) for row in rows]

    def get(self, tenant_id: str, connector_id: str) -> Connector:
        with self._db.read() as conn:
            return self._get(conn, tenant_id, connector_id)

    def _get(self, conn: Connection, tenant_id: str, connector_id: str) -> Connector:
        row = repo.get(conn, tenant_id, connector_id[:64])
        if row is None:
            raise ConnectorNotFound(
                f"No connector '{connector_id[:64]}' in this tenant. Call listConnectors to see the ids."
            )
        return _to_connector(row, repo.secret_info(conn, tenant_id, [row.id]).get(row.id))

    def for_email(self, tenant_id: str, email: str) -> Connector | None:
        """The usable connector whose email domains include ``email``'s (home-realm discovery), if any."""
        domain = domain_of(email)
        if domain is None:
            return None
        for connector in self.list(tenant_id):
            if domain in connector.email_domains and connector.usable:
                return connector
        return None

    def social(self, tenant_id: str, connector_ids: tuple[str, ...]) -> builtins.list[Connector]:
        """The usable connectors among ``connector_ids``, in that order (the buttons of the hosted page)."""
        if not connector_ids:
            return []
        with self._db.read() as conn:
            return self.social_in(conn, tenant_id, connector_ids)

    def social_in(self, conn: Connection, tenant_id: str, connector_ids: tuple[str, ...]) -> builtins.list[Connector]:
        """:meth:`social`, read in the caller's transaction."""
        if not connector_ids:
            return []
        rows = repo.list_for_tenant(conn, tenant_id)
        secrets = repo.secret_info(conn, tenant_id, [row.id for row in rows])
        by_id = {row.id: _to_connector(row, secrets.get(row.id)) for row in rows}
        return [by_id[cid] for cid in connector_ids if cid in by_id and by_id[cid].usable]

    def client_secret(self, tenant_id: str, connector_id: str) -> str | None:
        """The decrypted client secret, for the token request to the upstream only."""
        with self._db.read() as conn:
            ciphertext = repo.get_ciphertext(conn, tenant_id, connector_id)
        if ciphertext is None:
            return None
        try:
            return Fernet(self._key(_FERNET_KEY, fernet=True)).decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            return None  # the key changed (a restored database without its server secrets): set the secret again

    # --- writing ------------------------------------------------------------------------------------------------

    def create(self, tenant_id: str, given: ConnectorInput, actor: Actor) -> Connector:
        """Create a connector from a preset or from explicit settings; its secret is set later in the console."""
        preset = None
        if given.preset is not None:
            preset = PRESETS.get(given.preset)
            if preset is None:
                raise ValidationFailed(
                    f"Unknown preset '{given.preset[:40]}'. The presets are: {', '.join(PRESETS)}; or leave preset out "
                    "and give kind with issuer (oidc) or endpoints (oauth2)."
                )
        kind = given.kind or (preset.kind if preset else None)
        if kind not in KINDS:
            raise ValidationFailed("Give kind: 'oidc' (an OpenID provider) or 'oauth2' (explicit endpoints).")
        if preset is not None and kind != preset.kind:
            raise ValidationFailed(f"The {given.preset} preset is an {preset.kind} connector; leave kind out.")
        loopback = self._allow_http_loopback
        issuer_value = given.issuer or (preset.issuer if preset else None)
        issuer = check_url(issuer_value, "issuer", allow_http_loopback=loopback).rstrip("/") if issuer_value else None
        if given.issuer and kind == "oauth2":
            raise ValidationFailed("An oauth2 connector has no issuer: give endpoints instead (or use kind 'oidc').")
        endpoints = _endpoints(
            {**(preset.endpoints if preset else {}), **(given.endpoints or {})}, allow_http_loopback=loopback
        )
        if kind == "oidc" and given.endpoints:
            raise ValidationFailed(
                "An oidc connector reads its endpoints from the issuer's discovery document: leave endpoints out."
            )
        _check_complete(kind, issuer, endpoints)
        claims = _claims({**(preset.claims if preset else DEFAULT_CLAIMS), **(given.claims or {})})
        default_scopes = preset.scopes if preset else (DEFAULT_OIDC_SCOPES if kind == "oidc" else ())
        scopes = _scopes(list(given.scopes) if given.scopes is not None else list(default_scopes), kind)
        token_auth = given.token_auth or (preset.token_auth if preset else "client_secret_basic")
        if token_auth not in TOKEN_AUTH:
            raise ValidationFailed("tokenAuth must be client_secret_basic, client_secret_post or none.")
        now = self._clock()
        connector_id = new_id(8)
        domains = _domains(given.email_domains or [])
        values = {
            "tenant_id": tenant_id, "id": connector_id, "kind": kind, "preset": given.preset,
            "name": _clean_text(given.name, "name", MAX_NAME),
            "client_id": _clean_text(given.client_id, "clientId", 512), "issuer": issuer, "endpoints": endpoints,
            "claims": claims, "scopes": list(scopes), "email_domains": list(domains),
            "options": {
                "linkByEmail": bool(given.link_by_email), "tokenAuth": token_auth,
                "label": preset.label if preset else _clean_text(given.name, "name", MAX_NAME),
                "icon": preset.icon if preset else None,
            },
            "created_at": now, "updated_at": now,
        }  # fmt: skip
        with self._db.transaction() as conn:
            self._check_domains_free(conn, tenant_id, connector_id, list(domains))
            repo.insert_connector(conn, values)
            self._audit.write(
                conn, actor, "connector.create", target_type="connector", target_id=connector_id, tenant_id=tenant_id,
                details=_audit_details(values),
            )  # fmt: skip
            return self._get(conn, tenant_id, connector_id)

    def update(
        self, tenant_id: str, connector_id: str, changes: ConnectorChanges, actor: Actor
    ) -> tuple[Connector, builtins.list[str]]:
        """Change the fields given; the result is checked as a whole before anything is written."""
        loopback = self._allow_http_loopback
        with self._db.transaction() as conn:
            current = self._get(conn, tenant_id, connector_id)
            issuer = current.issuer
            if changes.issuer is not None:
                if current.kind == "oauth2":
                    raise ValidationFailed("An oauth2 connector has no issuer: change endpoints instead.")
                issuer = check_url(changes.issuer, "issuer", allow_http_loopback=loopback).rstrip("/")
            endpoints = current.endpoints
            if changes.endpoints is not None:
                if current.kind == "oidc":
                    raise ValidationFailed(
                        "An oidc connector reads its endpoints from discovery: change issuer instead."
                    )
                endpoints = {**endpoints, **_endpoints(changes.endpoints, allow_http_loopback=loopback)}
            _check_complete(current.kind, issuer, endpoints)
            token_auth = changes.token_auth or current.token_auth
            if token_auth not in TOKEN_AUTH:
                raise ValidationFailed("tokenAuth must be client_secret_basic, client_secret_post or none.")
            name = _clean_text(changes.name, "name", MAX_NAME) if changes.name is not None else current.name
            client_id = current.client_id
            if changes.client_id is not None:
                client_id = _clean_text(changes.client_id, "clientId", 512)
            claims = current.claims if changes.claims is None else _claims({**current.claims, **changes.claims})
            scopes = current.scopes if changes.scopes is None else _scopes(changes.scopes, current.kind)
            domains = current.email_domains if changes.email_domains is None else _domains(changes.email_domains)
            link = current.link_by_email if changes.link_by_email is None else bool(changes.link_by_email)
            values: dict[str, Any] = {
                "name": name, "client_id": client_id, "issuer": issuer, "endpoints": endpoints, "claims": claims,
                "scopes": list(scopes), "email_domains": list(domains),
            }  # fmt: skip
            options = {
                "linkByEmail": link, "tokenAuth": token_auth, "label": current.label if current.preset else name,
                "icon": current.icon,
            }  # fmt: skip
            before = _comparable(current)
            after = {**values, "options": options}
            changed = sorted(key for key in after if after[key] != before[key])
            if not changed:
                self._audit.ride(conn)
                return current, []
            self._check_domains_free(conn, tenant_id, connector_id, values["email_domains"])
            repo.update_connector(conn, tenant_id, connector_id, {**after, "updated_at": self._clock()})
            self._audit.write(
                conn, actor, "connector.update", target_type="connector", target_id=connector_id, tenant_id=tenant_id,
                details={"changed": changed, **_audit_details(after)},
            )  # fmt: skip
            return self._get(conn, tenant_id, connector_id), changed

    def delete(self, tenant_id: str, connector_id: str, actor: Actor) -> tuple[Connector, int]:
        """Delete a connector, its users' identities and its button on the page; returns it and how many identities
        went."""
        with self._db.transaction() as conn:
            current = self._get(conn, tenant_id, connector_id)
            identities = repo.count_identities(conn, tenant_id, connector_id)
            repo.delete_connector(conn, tenant_id, connector_id)
            button_removed = self._drop_button(conn, tenant_id, connector_id)
            self._audit.write(
                conn, actor, "connector.delete", target_type="connector", target_id=connector_id, tenant_id=tenant_id,
                details={"name": current.name, "identities_removed": identities, "button_removed": button_removed},
            )  # fmt: skip
        return current, identities

    def _drop_button(self, conn: Connection, tenant_id: str, connector_id: str) -> bool:
        """Take a deleted connector out of the sign-in experience's ``social`` list (a new version of it)."""
        row = experiences_repo.get(conn, tenant_id)
        if row is None:
            return False
        document = dict(row.document)
        sign_in = dict(document.get("signIn", {}))
        social = list(sign_in.get("social", []))
        if connector_id not in social:
            return False
        sign_in["social"] = [item for item in social if item != connector_id]
        document["signIn"] = sign_in
        if not experiences_repo.replace(conn, tenant_id, int(row.version), document, self._clock()):
            raise ConnectorConflict("The sign-in experience changed at the same time. Delete the connector again.")
        return True

    def set_secret(self, tenant_id: str, connector_id: str, secret: str, actor: Actor) -> Connector:
        """Store (or replace) the client secret, encrypted. The audit row says that it changed, never what to."""
        value = secret.strip()
        if not value or len(value) > MAX_SECRET or any(ord(char) < 32 for char in value):
            raise ValidationFailed(f"Paste the client secret: 1 to {MAX_SECRET} printable characters.")
        ciphertext = Fernet(self._key(_FERNET_KEY, fernet=True)).encrypt(value.encode()).decode()
        with self._db.transaction() as conn:
            self._get(conn, tenant_id, connector_id)
            replaced = repo.put_secret(conn, tenant_id, connector_id, ciphertext, value[-4:], self._clock())
            self._audit.write(
                conn, actor, "connector.secret.set", target_type="connector", target_id=connector_id,
                tenant_id=tenant_id, details={"replaced": replaced},
            )  # fmt: skip
            return self._get(conn, tenant_id, connector_id)

    def _check_domains_free(
        self, conn: Connection, tenant_id: str, connector_id: str, domains: builtins.list[str]
    ) -> None:
        for row in repo.list_for_tenant(conn, tenant_id):
            if row.id == connector_id:
                continue
            taken = sorted(set(domains) & {str(domain) for domain in row.email_domains or []})
            if taken:
                raise ValidationFailed(
                    f"The email domain {taken[0]} already goes to the connector '{row.name}' ({row.id}): a domain "
                    "leads to one provider. Remove it there first (updateConnector) or leave it out here."
                )

    # --- the console link for the secret ------------------------------------------------------------------------

    def secret_link(self, tenant_id: str, connector_id: str) -> tuple[int, str]:
        """An expiry (Unix time) and its signature for the console page that sets the secret."""
        expires = int((self._clock() + SECRET_LINK_TTL).timestamp())
        return expires, self._link_signature(tenant_id, connector_id, expires)

    def check_secret_link(self, tenant_id: str, connector_id: str, expires: str, signature: str) -> bool:
        """Whether the link is one this server made for this tenant and connector, and still valid."""
        if not expires.isdigit() or len(expires) > 12 or len(signature) > 128:
            return False
        expected = self._link_signature(tenant_id, connector_id, int(expires))
        return hmac.compare_digest(expected, signature) and int(expires) > self._clock().timestamp()

    def _link_signature(self, tenant_id: str, connector_id: str, expires: int) -> str:
        message = f"connector-secret\n{tenant_id}\n{connector_id}\n{expires}".encode()
        return hmac.new(self._key(_LINK_KEY), message, hashlib.sha256).hexdigest()

    def ensure_keys(self) -> None:
        """Read (or make) the server-wide keys at start-up, before any use case: see :func:`stored_or_made`."""
        self._key(_LINK_KEY)
        self._key(_FERNET_KEY, fernet=True)

    def _key(self, name: str, *, fernet: bool = False) -> bytes:
        """A server-wide key, made on first use and kept in ``server_secrets`` (replicas share it); read once per
        process (:meth:`ensure_keys`, at start-up)."""
        with self._keys_lock:
            if name in self._keys:
                return self._keys[name]
        make: Callable[[], str] = (lambda: Fernet.generate_key().decode()) if fernet else (lambda: new_secret(32))
        with apart("filling this process's cache of a server-wide key, once: not the request's use case"):
            stored = stored_or_made(self._db, self._clock, name, make).encode()
        with self._keys_lock:
            self._keys[name] = stored
        return stored

    # --- sign-in through a connector ----------------------------------------------------------------------------

    def start_login(self, tenant_id: str, connector_id: str, interaction_id: str) -> tuple[Connector, PendingLogin]:
        """Remember a new sign-in sent upstream (state, nonce, PKCE verifier) for the authorization request."""
        now = self._clock()
        login = PendingLogin(
            state=new_secret(24), nonce=new_secret(24), code_verifier=new_secret(48), interaction_id=interaction_id
        )
        with self._db.transaction() as conn:
            connector = self._get(conn, tenant_id, connector_id)
            if not connector.usable:
                raise ConnectorUnusable(f"{connector.label} sign-in is not set up yet. Use another way to sign in.")
            repo.purge_logins(conn, now)
            repo.insert_login(
                conn,
                {
                    "state_digest": digest(login.state), "tenant_id": tenant_id, "connector_id": connector_id,
                    "interaction_id": interaction_id, "nonce": login.nonce, "code_verifier": login.code_verifier,
                    "created_at": now, "expires_at": now + LOGIN_TTL,
                },
            )  # fmt: skip
        return connector, login

    def start_for_email(self, tenant_id: str, email: str, interaction_id: str) -> tuple[Connector, PendingLogin] | None:
        """Home-realm discovery: when ``email``'s domain is an enterprise connector's, start a sign-in there
        (:meth:`start_login`) in the same transaction as the look-up; None when no connector claims it."""
        with self._db.unit_of_work(writes=True):
            connector = self.for_email(tenant_id, email)
            return None if connector is None else self.start_login(tenant_id, connector.id, interaction_id)

    def finish_login(self, tenant_id: str, connector_id: str, state: str) -> PendingLogin:
        """The sign-in this ``state`` was made for, used up now: a second callback with it is refused."""
        now = self._clock()
        refused = UpstreamSignInFailed(
            "This sign-in link expired or was already used. Go back to the application and sign in again."
        )
        if not state or len(state) > 256:
            raise refused
        with self._db.transaction() as conn:
            row = repo.get_login(conn, digest(state))
            if row is None or row.tenant_id != tenant_id or row.connector_id != connector_id:
                raise refused
            if as_utc(row.expires_at) <= now or not repo.consume_login(conn, row.state_digest, now):
                raise refused
        return PendingLogin(state, row.nonce, row.code_verifier, row.interaction_id)

    def come_back(
        self, tenant_id: str, connector_id: str, state: str | None
    ) -> tuple[Connector, PendingLogin | None, str | None]:
        """A callback from the upstream, in one transaction: the connector, and, given the ``state`` (the browser's
        cookie matched it), the sign-in it was made for, used up now (:meth:`finish_login`), and the client secret for
        the token request. Given no ``state``, it only reads the connector (for the page that refuses the answer)."""
        with self._db.unit_of_work(writes=state is not None):
            connector = self.get(tenant_id, connector_id)
            if state is None:
                return connector, None, None
            return (
                connector,
                self.finish_login(tenant_id, connector_id, state),
                self.client_secret(tenant_id, connector_id),
            )

    def resolve_user(self, tenant_id: str, connector_id: str, profile: UpstreamProfile) -> SignedInUpstream:
        """The user behind an upstream identity (see :meth:`_resolve_user`). Two first sign-ins of one identity at
        the same moment: the second insert fails on the identity's key, and its retry finds the first one's user."""
        try:
            return self._resolve_user(tenant_id, connector_id, profile)
        except IntegrityError:
            return self._resolve_user(tenant_id, connector_id, profile)

    def _resolve_user(self, tenant_id: str, connector_id: str, profile: UpstreamProfile) -> SignedInUpstream:
        """The user behind an upstream identity, found, linked or created, in one transaction with its audit rows.

        1. The user who has this identity (connector, subject).
        2. Else, when the connector links by email and the upstream says the email is verified, the user with that
           email (an unverified email never links).
        3. Else a new user, when the tenant's sign-up is on. Their email is kept only when verified upstream (an
           unverified one could be someone else's: kept, it would let its owner sign in to this account later).
        4. Else :class:`NoAccount`.
        """
        if not profile.subject or len(profile.subject) > 255:
            raise UpstreamSignInFailed("The provider did not say who you are (no usable subject). Try again later.")
        sign_up = self._experiences.get(tenant_id).sign_up.enabled
        now = self._clock()
        email = _email_or_none(profile.email)
        identity_values = {
            "email": email, "email_verified": bool(profile.email_verified and email),
            "name": profile.name, "picture": profile.picture, "last_sign_in_at": now,
        }  # fmt: skip
        with self._db.transaction() as conn:
            connector = self._get(conn, tenant_id, connector_id)
            actor = Actor(tenant_id=tenant_id, sub=None)

            def known_identity() -> SignedInUpstream | None:
                found = repo.find_identity(conn, tenant_id, connector_id, profile.subject)
                if found is None:
                    return None
                user = _require_active(users_repo.get(conn, tenant_id, found.user_id))
                repo.update_identity(conn, tenant_id, connector_id, profile.subject, identity_values)
                self._signed_in(conn, user, connector)
                return SignedInUpstream(user, created=False, linked=False)

            if (signed_in := known_identity()) is not None:
                return signed_in
            verified_email = email if identity_values["email_verified"] else None
            existing = _user_by_email(conn, tenant_id, verified_email) if verified_email else None
            # On PostgreSQL each statement sees what was committed before it began: a first sign-in of this same
            # identity may have committed its user (and, in the same transaction, the identity) between the two reads
            # above. Look again before telling the person their account is not connected.
            if existing is not None and not connector.link_by_email and (signed_in := known_identity()) is not None:
                return signed_in
            if existing is not None and connector.link_by_email:
                user = _require_active(existing)
                if not user.email_verified:  # the provider proved the address the account is linked by
                    users_repo.update_user(conn, tenant_id, user.id, {"email_verified": True, "updated_at": now})
                repo.insert_identity(
                    conn, {**self._identity(tenant_id, connector_id, profile, user.id, now), **identity_values}
                )
                self._audit.write(
                    conn, actor, "user.identity.link", target_type="user", target_id=user.id, tenant_id=tenant_id,
                    details={"connector_id": connector_id, "by": "verified_email"},
                )  # fmt: skip
                self._signed_in(conn, user, connector)
                return SignedInUpstream(user, created=False, linked=True)
            if existing is not None:
                raise NoAccount(
                    f"An account with the email {verified_email} exists here, but it is not connected to "
                    f"{connector.label}. Sign in the way you usually do."
                )
            if not sign_up:
                raise NoAccount(
                    f"There is no account here for this {connector.label} account, and new accounts cannot be created. "
                    "Ask the application's owner for access, or sign in another way."
                )
            user_id = new_id()
            users_repo.insert_user(
                conn,
                {
                    "tenant_id": tenant_id, "id": user_id, "email": verified_email,
                    "email_verified": verified_email is not None, "username": None, "name": profile.name,
                    "password_hash": None, "suspended": False, "created_at": now, "updated_at": now,
                },
            )  # fmt: skip
            repo.insert_identity(
                conn, {**self._identity(tenant_id, connector_id, profile, user_id, now), **identity_values}
            )
            self._audit.write(
                conn, actor, "user.sign_up", target_type="user", target_id=user_id, tenant_id=tenant_id,
                details={"connector_id": connector_id, "email": verified_email},
            )  # fmt: skip
            created = users_repo.get(conn, tenant_id, user_id)
            assert created is not None
            self._signed_in(conn, created, connector)
            return SignedInUpstream(created, created=True, linked=False)

    def _identity(
        self, tenant_id: str, connector_id: str, profile: UpstreamProfile, user_id: str, now: datetime
    ) -> dict[str, Any]:
        return {
            "tenant_id": tenant_id,
            "connector_id": connector_id,
            "subject": profile.subject,
            "user_id": user_id,
            "created_at": now,
        }

    def _signed_in(self, conn: Connection, user: User, connector: Connector) -> None:
        users_repo.touch_sign_in(conn, user.tenant_id, user.id, self._clock())
        self._audit.write(
            conn, Actor(tenant_id=user.tenant_id, sub=user.id), "session.sign_in", target_type="user",
            target_id=user.id, details={"method": "connector", "connector_id": connector.id},
        )  # fmt: skip

    def record_failure(self, tenant_id: str, connector_id: str, reason: str) -> None:
        """An upstream sign-in that failed, for the audit log (the reason is a code, never a token or a secret)."""
        self._audit.write_failure(
            Actor(tenant_id=tenant_id, sub=None), "session.sign_in", target_type="connector", target_id=connector_id,
            details={"method": "connector", "reason": reason[:64]},
        )  # fmt: skip

    # --- identities of a user -----------------------------------------------------------------------------------

    def identities(self, tenant_id: str, user_id: str) -> builtins.list[Identity]:
        with self._db.read() as conn:
            rows = repo.identities_of_user(conn, tenant_id, user_id)
            names = {row.id: row.name for row in repo.list_for_tenant(conn, tenant_id)}
        return [_to_identity(row, names.get(row.connector_id)) for row in rows]

    def unlink(self, tenant_id: str, user_id: str, connector_id: str, actor: Actor) -> int:
        """Remove the user's identity at a connector, unless it is their last way in."""
        with self._db.transaction() as conn:
            # Read in the same transaction: whether email codes are a way in is part of the check.
            email_codes = self._experiences.get_in(conn, tenant_id).email_code
            user = users_repo.get(conn, tenant_id, user_id[:64])
            if user is None:
                raise UserNotFound(f"No user '{user_id[:64]}' in this tenant. Call listUsers to find the id.")
            identities = repo.identities_of_user(conn, tenant_id, user.id)
            if not any(row.connector_id == connector_id for row in identities):
                raise IdentityNotFound(
                    f"The user has no identity at connector '{connector_id[:64]}'. getUser lists their identities."
                )
            others = [row for row in identities if row.connector_id != connector_id]
            password = conn.execute(
                select(users_table.c.password_hash).where(
                    users_table.c.tenant_id == tenant_id, users_table.c.id == user.id
                )
            ).scalar_one_or_none()
            if not others and not password and not (user.email and email_codes):
                raise LastWayIn(
                    "This is the user's only way to sign in (no password, no other connector, no email codes), so it "
                    "was not removed. Give them another way first, or delete the user."
                )
            removed = repo.delete_identities(conn, tenant_id, user.id, connector_id)
            self._audit.write(
                conn, actor, "user.identity.unlink", target_type="user", target_id=user.id, tenant_id=tenant_id,
                details={"connector_id": connector_id},
            )  # fmt: skip
        return removed


# --- helpers ----------------------------------------------------------------------------------------------------


def _to_connector(row: Any, secret: Any) -> Connector:
    options = dict(row.options or {})
    return Connector(
        tenant_id=row.tenant_id, id=row.id, kind=row.kind, preset=row.preset, name=row.name, client_id=row.client_id,
        issuer=row.issuer, endpoints=dict(row.endpoints or {}), claims=dict(row.claims or {}),
        scopes=tuple(row.scopes or ()), email_domains=tuple(row.email_domains or ()),
        link_by_email=bool(options.get("linkByEmail")), token_auth=options.get("tokenAuth", "client_secret_basic"),
        label=options.get("label") or row.name, icon=options.get("icon"), has_secret=secret is not None,
        secret_last_four=secret.last_four if secret is not None else None,
        created_at=as_utc(row.created_at) if row.created_at else None,
        updated_at=as_utc(row.updated_at) if row.updated_at else None,
    )  # fmt: skip


def _comparable(connector: Connector) -> dict[str, Any]:
    return {
        "name": connector.name, "client_id": connector.client_id, "issuer": connector.issuer,
        "endpoints": connector.endpoints, "claims": connector.claims, "scopes": list(connector.scopes),
        "email_domains": list(connector.email_domains),
        "options": {"linkByEmail": connector.link_by_email, "tokenAuth": connector.token_auth, "label": connector.label,
                    "icon": connector.icon},
    }  # fmt: skip


def _audit_details(values: Mapping[str, Any]) -> dict[str, Any]:
    """What an audit row says of a connector: its settings, never a secret (there is none in ``values``)."""
    keep = ("kind", "preset", "name", "client_id", "issuer", "endpoints", "scopes", "email_domains", "options")
    return {key: values[key] for key in keep if key in values}


def _to_identity(row: Any, connector_name: str | None) -> Identity:
    return Identity(
        connector_id=row.connector_id, connector_name=connector_name, subject=row.subject, email=row.email,
        email_verified=bool(row.email_verified), name=row.name, picture=row.picture,
        created_at=as_utc(row.created_at), last_sign_in_at=as_utc(row.last_sign_in_at),
    )  # fmt: skip


def _email_or_none(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return normalise_email(value)
    except ValidationFailed:
        return None


def _user_by_email(conn: Connection, tenant_id: str, email: str) -> User | None:
    found = users_repo.find_by_identifier(conn, tenant_id, email)
    return found[0] if found and found[0].email == email else None


def _require_active(user: User | None) -> User:
    if user is None:  # the identity's user was deleted in between: the cascade removes the identity with it
        raise UpstreamSignInFailed("This account no longer exists. Go back to the application and sign in again.")
    if user.suspended:
        raise UserSuspended("This account is suspended. Ask an administrator to reactivate it.")
    return user
