"""Adapters from our domain records to the model interfaces authlib's grants expect."""

from __future__ import annotations

from collections.abc import Callable

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin

from idp_mcp.core.crypto import digest, digests_equal
from idp_mcp.core.grants import CodeRecord, RefreshRecord
from idp_mcp.core.redirect_uris import redirect_uri_matches
from idp_mcp.domain import Client, Clock, User, as_utc, join_scope, split_scope

SecretVerifier = Callable[[Client, str], bool]


class OAuthClient(ClientMixin):  # type: ignore[misc]
    def __init__(
        self,
        client: Client,
        clock: Clock,
        default_scopes: tuple[str, ...],
        verify_application_secret: SecretVerifier | None = None,
    ) -> None:
        self.client = client
        self._clock = clock
        self._default_scopes = default_scopes
        self._verify_application_secret = verify_application_secret

    @property
    def client_id(self) -> str:
        return self.client.client_id

    @property
    def name(self) -> str:
        return self.client.name

    def get_client_id(self) -> str:
        return self.client.client_id

    def get_default_redirect_uri(self) -> None:
        # OAuth 2.1: the client always names its redirect URI; no silent default.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        requested = split_scope(scope) or list(self._default_scopes)
        if self.client.scope:
            allowed = set(split_scope(self.client.scope))
            requested = [item for item in requested if item in allowed]
        return join_scope(requested)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri_matches(self.client.redirect_uris, redirect_uri)

    @property
    def id_token_signed_response_alg(self) -> str:
        return str(self.client.metadata.get("id_token_signed_response_alg", "ES256"))

    def check_client_secret(self, client_secret: str) -> bool:
        if self.client.origin == "application":
            # Applications may hold several secrets (temporary and production), kept in their own table.
            verify = self._verify_application_secret
            return verify is not None and verify(self.client, client_secret)
        stored = self.client.secret_digest
        if not stored or not client_secret:
            return False
        expires = self.client.secret_expires_at
        if expires is not None and as_utc(expires) <= self._clock():
            return False
        return digests_equal(digest(client_secret), stored)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        registered = self.client.token_endpoint_auth_method
        if self.client.origin == "application" and registered != "none":
            # Confidential applications may send their secret either way (client libraries differ).
            return method in ("client_secret_basic", "client_secret_post")
        return method == registered

    def check_response_type(self, response_type: str) -> bool:
        return response_type in self.client.response_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.client.grant_types


class AuthorizationCode(AuthorizationCodeMixin):  # type: ignore[misc]
    def __init__(self, record: CodeRecord, user: User | None = None) -> None:
        self.record = record
        self.user = user  # read with the code, for the ID token's claims

    @property
    def code_challenge(self) -> str:  # read by authlib's PKCE extension
        return self.record.code_challenge

    @property
    def code_challenge_method(self) -> str:
        return self.record.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.record.redirect_uri

    def get_scope(self) -> str:
        return self.record.scope

    def get_nonce(self) -> str | None:
        return self.record.nonce

    def get_auth_time(self) -> int:
        return int(self.record.auth_time.timestamp())

    def get_acr(self) -> str | None:
        return self.record.acr

    def get_amr(self) -> list[str] | None:
        return list(self.record.amr) or None


class RefreshToken:
    """The refresh token a refresh request presented (found valid, rotated out once the request is accepted)."""

    def __init__(self, record: RefreshRecord, user: User | None = None) -> None:
        self.record = record
        self.user = user  # read with the token

    def check_client(self, client: OAuthClient) -> bool:
        return client.client_id == self.record.client_id

    def get_scope(self) -> str:
        return self.record.scope

    def is_expired(self) -> bool:
        return False  # checked when found

    def is_revoked(self) -> bool:
        return False  # checked when found, and again (atomically) when rotated
