"""The schema. Every tenant-owned table carries ``tenant_id`` and every query filters on it.

Secrets never live here in clear: refresh tokens, authorization codes, session ids and client secrets are
stored as SHA-256 digests; user passwords as Argon2id hashes.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

# Stable constraint names so Alembic migrations are identical on SQLite and PostgreSQL.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TS = DateTime(timezone=True)

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("created_at", TS, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("username", String(128)),
    Column("email", String(320)),
    Column("name", String(128)),
    Column("password_hash", String(255)),
    Column("suspended", Boolean, nullable=False, default=False),
    # True only once the address was proven (a code sent to it came back), or an administrator said so.
    Column("email_verified", Boolean, nullable=False, default=False, server_default=false()),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("last_sign_in_at", TS),
    UniqueConstraint("tenant_id", "email", name="uq_users_tenant_email"),
    UniqueConstraint("tenant_id", "username", name="uq_users_tenant_username"),
)

# Which administrators (users of the admin tenant) may act on which tenant.
tenant_members = Table(
    "tenant_members",
    metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    Column("admin_user_id", String(64), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("created_at", TS, nullable=False),
)

clients = Table(
    "clients",
    metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    Column("client_id", String(512), primary_key=True),
    # "dcr" (registered by a client), "cimd" (a fetched metadata document), "application" (made by an admin).
    Column("origin", String(16), nullable=False),
    Column("name", String(256), nullable=False),
    Column("client_uri", String(2048)),
    Column("logo_uri", String(2048)),
    Column("redirect_uris", JSON, nullable=False),
    Column("grant_types", JSON, nullable=False),
    Column("response_types", JSON, nullable=False),
    Column("token_endpoint_auth_method", String(32), nullable=False),
    Column("scope", Text),
    Column("secret_digest", String(64)),
    Column("secret_expires_at", TS),
    Column("metadata", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)

# Secrets of applications: temporary ones (handed to agents, expire within the hour) and production ones
# (created in the console, shown once). Only SHA-256 digests and the last four characters are kept.
client_secrets = Table(
    "client_secrets",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("client_id", String(512), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("last_four", String(4), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS),
    Column("revoked_at", TS),
    ForeignKeyConstraint(["tenant_id", "client_id"], ["clients.tenant_id", "clients.client_id"], ondelete="CASCADE"),
    Index("ix_client_secrets_client", "tenant_id", "client_id"),
)

# A production secret just created in the console, waiting to be shown once (POST-redirect-GET): its value sealed
# (AES-GCM) with a key derived from the creating browser's session id, which only that browser holds (the database
# keeps the session id's digest). Deleted when shown, and worthless after ``expires_at``.
secret_reveals = Table(
    "secret_reveals",
    metadata,
    Column("secret_id", String(32), ForeignKey("client_secrets.id", ondelete="CASCADE"), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("client_id", String(512), nullable=False),
    Column("session_digest", String(64), nullable=False),
    Column("sealed", Text, nullable=False),
    Column("expires_at", TS, nullable=False),
)

# A user's standing consent for a client: what it may do and on which tenant it acts.
grants = Table(
    "grants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("client_id", String(512), nullable=False),
    Column("acting_tenant_id", String(64)),
    Column("scope", Text, nullable=False),
    Column("resource", String(2048)),
    Column("created_at", TS, nullable=False),
    Column("revoked_at", TS),
    Index("ix_grants_user_client", "tenant_id", "user_id", "client_id"),
)

# An authorization request waiting for the user to sign in and consent.
interactions = Table(
    "interactions",
    metadata,
    Column("id_digest", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("client_id", String(512), nullable=False),
    Column("params", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
)

authorization_codes = Table(
    "authorization_codes",
    metadata,
    Column("code_digest", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("client_id", String(512), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("grant_id", String(64), nullable=False),
    Column("redirect_uri", String(2048), nullable=False),
    Column("scope", Text, nullable=False),
    Column("resource", String(2048)),
    Column("acting_tenant_id", String(64)),
    Column("code_challenge", String(128), nullable=False),
    Column("code_challenge_method", String(8), nullable=False),
    Column("nonce", String(512)),
    Column("auth_time", TS, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("consumed_at", TS),
    # How the user authenticated (RFC 8176 values) and the resulting acr, for the ID token.
    Column("amr", JSON),
    Column("acr", String(128)),
)

# Refresh tokens by digest. A family is every token rotated from one authorization code; reuse of a
# rotated token revokes the family.
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_digest", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("family_id", String(64), nullable=False),
    Column("client_id", String(512), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("scope", Text, nullable=False),
    Column("resource", String(2048)),
    Column("acting_tenant_id", String(64)),
    Column("auth_time", TS),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("rotated_at", TS),
    Column("revoked_at", TS),
    Column("amr", JSON),
    Column("acr", String(128)),
    Index("ix_refresh_tokens_family", "family_id"),
)

# Families (code grants) whose access tokens must no longer be accepted.
revoked_families = Table(
    "revoked_families",
    metadata,
    Column("family_id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("revoked_at", TS, nullable=False),
    Column("reason", String(64), nullable=False),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("alg", String(16), nullable=False),
    Column("private_pem", Text, nullable=False),
    Column("public_jwk", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("retired_at", TS),
    # Keys are loaded per tenant: the cost of a load must not grow with the number of tenants.
    Index("ix_signing_keys_tenant", "tenant_id"),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_digest", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("auth_time", TS, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    # The methods the session's sign-in used (RFC 8176: ["pwd"], ["pwd", "otp", "mfa"], ...) and its acr.
    Column("amr", JSON),
    Column("acr", String(128)),
    ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"], ondelete="CASCADE"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", TS, nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target_type", String(32)),
    Column("target_id", String(512)),
    Column("actor_sub", String(64)),
    Column("actor_client_id", String(512)),
    Column("actor_client_name", String(256)),
    Column("outcome", String(16), nullable=False),
    Column("details", JSON, nullable=False),
    Index("ix_audit_log_tenant_at", "tenant_id", "at"),
)

# Failed-attempt counters behind rate limits (password sign-in), one row per limited key and window. The key is the
# SHA-256 digest of purpose, tenant, kind and value: no identifier or address is kept in clear.
rate_limit_counters = Table(
    "rate_limit_counters",
    metadata,
    Column("key_digest", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("hits", Integer, nullable=False),
    Column("window_start", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Index("ix_rate_limit_counters_expires_at", "expires_at"),
)

# Browsers a user signed in from (a long-lived random cookie), by the SHA-256 digest of tenant, user and cookie value.
# A password sign-in from one of them is not held up by failures that others caused on the same identifier.
known_devices = Table(
    "known_devices",
    metadata,
    Column("key_digest", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("last_seen_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"], ondelete="CASCADE"),
    Index("ix_known_devices_expires_at", "expires_at"),
)

# Server-wide secrets generated on first start (e.g. the key that signs CSRF for signed-out forms).
server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_at", TS, nullable=False),
)

# Each tenant's sign-in experience (branding, sign-in methods, sign-up) as one validated JSON document, with a
# version that moves on every change. A tenant without a row has the default experience.
sign_in_experiences = Table(
    "sign_in_experiences",
    metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("document", JSON, nullable=False),
    Column("updated_at", TS, nullable=False),
)

# One-time codes sent by email (sign-in, sign-up verification), stored as SHA-256 digests. A row is written for
# every send, delivered or not, so the sends per address can be counted for the rate limit.
verification_codes = Table(
    "verification_codes",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("identifier", String(320), nullable=False),
    Column("digest", String(64), nullable=False),
    # What the code confirms, e.g. a pending sign-up (identifiers and an Argon2id password hash, never a password).
    Column("payload", JSON, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("consumed_at", TS),
    Index("ix_verification_codes_identifier", "tenant_id", "identifier", "created_at"),
)

# Upstream identity providers of a tenant ("Continue with Google", an enterprise's OpenID provider). ``kind`` is
# "oidc" (endpoints from the issuer's discovery document) or "oauth2" (endpoints given, claims mapped). The client
# secret is not here: it lives encrypted in ``connector_secrets``, so no query of this table can return it.
connectors = Table(
    "connectors",
    metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("preset", String(32)),
    Column("name", String(128), nullable=False),
    Column("client_id", String(512), nullable=False),
    Column("issuer", String(2048)),
    Column("endpoints", JSON, nullable=False),
    Column("claims", JSON, nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("email_domains", JSON, nullable=False),
    Column("options", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)

# A connector's client secret, encrypted (Fernet) because it must be sent to the upstream token endpoint: a digest
# would not do. Only the last four characters are kept in clear, to tell secrets apart.
connector_secrets = Table(
    "connector_secrets",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("connector_id", String(64), primary_key=True),
    Column("ciphertext", Text, nullable=False),
    Column("last_four", String(4), nullable=False),
    Column("updated_at", TS, nullable=False),
    ForeignKeyConstraint(["tenant_id", "connector_id"], ["connectors.tenant_id", "connectors.id"], ondelete="CASCADE"),
)

# Who a user is at an upstream provider: (connector, subject) belongs to exactly one user of the tenant. The profile
# is the upstream's, as of the last sign-in; ``email_verified`` is true only when the upstream said so.
user_identities = Table(
    "user_identities",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("connector_id", String(64), primary_key=True),
    Column("subject", String(255), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("email", String(320)),
    Column("email_verified", Boolean, nullable=False),
    Column("name", String(128)),
    Column("picture", String(2048)),
    Column("created_at", TS, nullable=False),
    Column("last_sign_in_at", TS, nullable=False),
    ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"], ondelete="CASCADE"),
    ForeignKeyConstraint(["tenant_id", "connector_id"], ["connectors.tenant_id", "connectors.id"], ondelete="CASCADE"),
    Index("ix_user_identities_user", "tenant_id", "user_id"),
)

# A sign-in sent to an upstream provider and not back yet, found by the digest of its ``state``. Used once: the
# callback marks it consumed in the same transaction that reads it, so a replayed callback is refused.
upstream_logins = Table(
    "upstream_logins",
    metadata,
    Column("state_digest", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("connector_id", String(64), nullable=False),
    Column("interaction_id", String(128), nullable=False),
    Column("nonce", String(128), nullable=False),
    Column("code_verifier", String(128), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("consumed_at", TS),
    Index("ix_upstream_logins_expires_at", "expires_at"),
)

# An API a tenant protects with its access tokens (RFC 8707 resource indicator = ``identifier``, the tokens' ``aud``)
# and the permissions (scopes) it defines.
api_resources = Table(
    "api_resources",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("identifier", String(512), nullable=False),
    Column("access_token_ttl", Integer),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    UniqueConstraint("tenant_id", "identifier", name="uq_api_resources_tenant_identifier"),
)

api_permissions = Table(
    "api_permissions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("resource_id", String(32), ForeignKey("api_resources.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("description", String(256), nullable=False),
    Column("created_at", TS, nullable=False),
    UniqueConstraint("resource_id", "name", name="uq_api_permissions_resource_name"),
)

# Roles grant permissions; user roles go to users, m2m roles to machine-to-machine applications.
roles = Table(
    "roles",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("description", String(1000), nullable=False),
    Column("type", String(8), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    UniqueConstraint("tenant_id", "name", name="uq_roles_tenant_name"),
)

role_permissions = Table(
    "role_permissions",
    metadata,
    Column("role_id", String(32), ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    Column("permission_id", String(32), ForeignKey("api_permissions.id", ondelete="CASCADE"), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Index("ix_role_permissions_permission", "permission_id"),
)

user_roles = Table(
    "user_roles",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("user_id", String(64), primary_key=True),
    Column("role_id", String(32), ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    Column("created_at", TS, nullable=False),
    ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"], ondelete="CASCADE"),
    Index("ix_user_roles_role", "role_id"),
)

application_roles = Table(
    "application_roles",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("client_id", String(512), primary_key=True),
    Column("role_id", String(32), ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    Column("created_at", TS, nullable=False),
    ForeignKeyConstraint(["tenant_id", "client_id"], ["clients.tenant_id", "clients.client_id"], ondelete="CASCADE"),
    Index("ix_application_roles_role", "role_id"),
)

# A user's second factors. A TOTP secret must be read back to check codes, so a digest would not do: it is sealed
# (AES-256-GCM, core/crypto.py) under a server-wide key and bound to its row. ``confirmed_at`` is None while the
# enrollment waits for its first code; ``last_step`` is the last accepted TOTP time step (a code works once).
mfa_factors = Table(
    "mfa_factors",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("secret", Text),
    Column("last_step", Integer),
    Column("created_at", TS, nullable=False),
    Column("confirmed_at", TS),
    Column("last_used_at", TS),
    ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"], ondelete="CASCADE"),
    Index("ix_mfa_factors_user", "tenant_id", "user_id"),
)

# Single-use backup codes, by SHA-256 digest only; shown once when a factor is enrolled.
mfa_backup_codes = Table(
    "mfa_backup_codes",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("user_id", String(64), primary_key=True),
    Column("digest", String(64), primary_key=True),
    Column("created_at", TS, nullable=False),
    Column("used_at", TS),
    ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"], ondelete="CASCADE"),
)

# A sign-in between its first factor and its second: bound to the browser (found by the digest of a cookie value)
# and to the authorization request (digest of the interaction id). Short-lived; removed when the session starts.
mfa_pending = Table(
    "mfa_pending",
    metadata,
    Column("id_digest", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("interaction_digest", String(64), nullable=False),
    Column("amr", JSON, nullable=False),
    Column("step_up", Boolean, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"], ondelete="CASCADE"),
    Index("ix_mfa_pending_expires_at", "expires_at"),
)

# WebAuthn credentials (passkeys) of a tenant's users. The credential id and the COSE public key are kept as
# base64url text (no secret: a public key proves nothing without the authenticator's private key). ``sign_count``
# only moves forward, so a cloned authenticator shows itself; ``backed_up`` tells a synced passkey (amr "swk") from
# a device-bound one ("hwk").
passkeys = Table(
    "passkeys",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("id", String(32), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("credential_id", String(1400), nullable=False),
    Column("public_key", Text, nullable=False),
    Column("sign_count", Integer, nullable=False),
    Column("transports", JSON, nullable=False),
    Column("device_type", String(16), nullable=False),
    Column("backed_up", Boolean, nullable=False),
    Column("aaguid", String(36), nullable=False),
    Column("name", String(64), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("last_used_at", TS),
    ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"], ondelete="CASCADE"),
    UniqueConstraint("tenant_id", "credential_id", name="uq_passkeys_tenant_credential"),
    Index("ix_passkeys_user", "tenant_id", "user_id"),
)

# WebAuthn challenges waiting for the browser's answer: single use (deleted when answered, right or wrong), short
# lived, and bound to the tenant, the purpose and the browser's pending interaction (by its digest). Stored here,
# not in memory, so the answer may reach another replica than the one that issued the options.
webauthn_challenges = Table(
    "webauthn_challenges",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("interaction_digest", String(64), nullable=False),
    Column("user_id", String(64)),  # who registers, or who must answer (second factor); None: anyone (passwordless)
    Column("challenge", String(128), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Index("ix_webauthn_challenges_interaction", "tenant_id", "purpose", "interaction_digest"),
    Index("ix_webauthn_challenges_expires_at", "expires_at"),
)
