"""The authorization interaction: start it at /authorize, finish it after sign-in and consent.

The interaction policy (what the user must still do) lives here; ``web/`` only renders pages and calls
:meth:`AuthorizationFlow.approve` or :meth:`AuthorizationFlow.deny`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError

from idp_mcp.core.sessions import Interaction
from idp_mcp.core.tenants import withheld_scopes
from idp_mcp.domain import Client, split_scope
from idp_mcp.errors import IdpError, InteractionExpired, ValidationFailed
from idp_mcp.oauth.checks import UnregisteredRedirectUri
from idp_mcp.oauth.requests import PlainOAuth2Request
from idp_mcp.oauth.server import EndpointResult, IdpAuthorizationServer
from idp_mcp.oauth.tokens import TokenSubject
from idp_mcp.oauth.verifier import decode_id_token


@dataclass(frozen=True)
class AuthorizeOutcome:
    """Either a redirect (to the interaction page or back to the client) or an error to show the user."""

    redirect_to: str | None = None
    error: str | None = None
    error_description: str | None = None
    # A known client asked to return to a URI it did not register: that URI (never redirected to) and the client.
    rejected_redirect_uri: str | None = None
    client_id: str | None = None


@dataclass(frozen=True)
class Logout:
    """Where to send the browser after logout (None: our signed-out page), or ``ask``: confirm it first."""

    target: str | None
    ask: bool = False


@dataclass(frozen=True)
class ConsentRequest:
    client: Client
    redirect_uri: str
    scopes: list[str]
    resource: str | None
    # (API name, permission, description) of the API permissions asked for (a tenant issuer's API resources).
    permissions: tuple[tuple[str, str, str], ...] = ()


class AuthorizationFlow:
    def __init__(self, server: IdpAuthorizationServer, interaction_url: str) -> None:
        self.server = server
        self._interaction_url = interaction_url

    # --- /authorize ---------------------------------------------------------------------------------

    def start(self, request: PlainOAuth2Request, *, signed_in: Callable[[], bool] = lambda: False) -> AuthorizeOutcome:
        """Validate an authorization request and say where the browser goes next, in one transaction (the checks'
        look-ups and the pending interaction).

        ``signed_in``: whether the browser already has a session at this issuer (only the MCP issuer says so; it
        decides which error ``prompt=none`` gets, OIDC Core §3.1.2.6), asked only then, in the same transaction.
        """
        with self.server.core.db.unit_of_work(writes=True):
            return self._start(request, signed_in)

    def _start(self, request: PlainOAuth2Request, signed_in: Callable[[], bool]) -> AuthorizeOutcome:
        try:
            grant = self.server.get_consent_grant(request)
        except LoginRequiredError as error:
            # authlib's OpenID hook answers prompt=none (with the openid scope) after every other check passed.
            return self._silent_outcome(request, signed_in, error.redirect_uri)
        except OAuth2Error as error:
            return self._error_outcome(request, error, checks_passed=False)
        prompts = (grant.request.payload.data.get("prompt") or "").split()
        if "none" in prompts:
            # No silent sign-in or consent here: the user must always interact, so say which interaction.
            return self._silent_outcome(request, signed_in, grant.request.payload.redirect_uri)
        params = {key: list(values) for key, values in request.payload.datalist.items()}
        interaction_id = self.server.core.sessions.begin_interaction(
            self.server.tenant_id, grant.request.client.client_id, params
        )
        return AuthorizeOutcome(redirect_to=f"{self._interaction_url}/{interaction_id}")

    # --- the consent step ---------------------------------------------------------------------------

    def describe(self, interaction: Interaction) -> ConsentRequest:
        """What the pending request asks for, validated again (one read transaction)."""
        with self.server.core.db.unit_of_work(writes=False):
            return self._describe(interaction)

    def _describe(self, interaction: Interaction) -> ConsentRequest:
        grant = self._revalidate(interaction)
        targets = self.server.targets
        return ConsentRequest(
            client=grant.request.client.client,
            redirect_uri=grant.request.payload.redirect_uri,
            scopes=split_scope(grant.request.scope),
            resource=grant.request.resource,
            permissions=tuple(targets.permissions_asked(grant.request.resource, grant.request.scope))
            if targets is not None
            else (),
        )

    def approve(
        self,
        interaction: Interaction,
        *,
        user_id: str,
        auth_time: datetime,
        scopes: list[str],
        acting_tenant_id: str | None,
        amr: tuple[str, ...] = (),
        acr: str | None = None,
    ) -> str:
        """Issue the code for what the user approved and return where to send the browser, in one transaction.
        ``acting_tenant_id`` (the MCP issuer): the tenant the user connects the client to, which they must administer
        (:class:`Forbidden` otherwise); a member who may only read cannot grant write access there. ``amr``/``acr``:
        how the session's user signed in (core.mfa), for the ID token."""
        with self.server.core.db.unit_of_work(writes=True):
            return self._approve(
                interaction, user_id=user_id, auth_time=auth_time, scopes=scopes, acting_tenant_id=acting_tenant_id,
                amr=amr, acr=acr,
            )  # fmt: skip

    def _approve(
        self, interaction: Interaction, *, user_id: str, auth_time: datetime, scopes: list[str],
        acting_tenant_id: str | None, amr: tuple[str, ...], acr: str | None,
    ) -> str:  # fmt: skip
        grant = self._revalidate(interaction)
        withheld: frozenset[str] = frozenset()
        if acting_tenant_id is not None:
            withheld = withheld_scopes(self.server.core.tenants.require_member(acting_tenant_id, user_id))
        self._consume(interaction)
        requested = split_scope(grant.request.scope)
        granted = [scope for scope in requested if scope in scopes and scope not in withheld]
        client = grant.request.client
        grant_id = self.server.core.grants.record_consent(
            tenant_id=self.server.tenant_id,
            user_id=user_id,
            client_id=client.client_id,
            client_name=client.name,
            acting_tenant_id=acting_tenant_id,
            scope=" ".join(granted),
            resource=grant.request.resource,
        )
        grant.request.extra = {
            "user_id": user_id,
            "grant_id": grant_id,
            "scope": " ".join(granted),
            "acting_tenant_id": acting_tenant_id,
            "auth_time": auth_time,
            "amr": amr,
            "acr": acr,
        }
        subject = TokenSubject(user_id, grant_id, grant.request.resource, acting_tenant_id, auth_time, amr=amr, acr=acr)
        result = self.server.create_authorization_response(grant.request, grant_user=subject, grant=grant)
        return self._location(result)

    def deny(self, interaction: Interaction) -> str:
        """Answer the client that the user refused (one transaction); returns where to send the browser."""
        with self.server.core.db.unit_of_work(writes=True):
            grant = self._revalidate(interaction)
            self._consume(interaction)
            result = self.server.create_authorization_response(grant.request, grant_user=None, grant=grant)
            return self._location(result)

    # --- RP-initiated logout -------------------------------------------------------------------------

    def end_session(
        self, session_id: str | None, *, id_token_hint: str | None, client_id: str | None, uri: str | None,
        confirmed: bool, forged: IdpError | None,
    ) -> Logout:  # fmt: skip
        """RP-initiated logout, in one transaction: end the browser's session at this issuer and say where to go
        (``uri`` only if the client registered it, else :class:`ValidationFailed`).

        A valid ``id_token_hint`` for the session's user proceeds at once. Without one anyone could sign the user
        out with a link (logout CSRF), so the user must have ``confirmed`` on our page; ``forged``: the error to
        raise when that confirmation failed its CSRF check (OpenID RP-Initiated Logout 1.0 §2, §6).
        """
        with self.server.core.db.unit_of_work(writes=True):
            target = self.post_logout_redirect(id_token_hint, client_id, uri)
            sessions = self.server.core.sessions
            session = sessions.get(session_id)
            if session is not None and session.tenant_id == self.server.tenant_id:
                named = id_token_hint is not None and self.id_token_subject(id_token_hint) == session.user_id
                if not named and not confirmed:
                    return Logout(target, ask=True)
                if not named and forged is not None:
                    raise forged
            sessions.end(session_id)
            return Logout(target)

    def post_logout_redirect(self, id_token_hint: str | None, client_id: str | None, uri: str | None) -> str | None:
        """Where to send the browser after logout: ``uri`` only if the client registered it exactly."""
        if not uri:
            return None
        if not client_id and id_token_hint:
            claims = decode_id_token(self.server.core.keys, id_token_hint, self.server.tenant_id, self.server.issuer)
            audience = claims.get("aud") if claims else None
            first = audience[0] if isinstance(audience, list) and audience else audience
            client_id = first if isinstance(first, str) else None
        if not client_id or not isinstance(client_id, str) or "\x00" in client_id:  # NUL: PostgreSQL refuses it
            raise ValidationFailed("Name the application (client_id or id_token_hint) to return to it after logout.")
        client = self.server.core.clients.get(self.server.tenant_id, client_id)
        registered = client.metadata.get("post_logout_redirect_uris", []) if client else []
        if uri not in registered:
            raise ValidationFailed("This post_logout_redirect_uri is not registered for the application.")
        return uri

    def id_token_subject(self, id_token_hint: str) -> str | None:
        """The ``sub`` of an ID token this issuer signed (expired or not), else None: a forged token, or one of
        another tenant, counts as no hint at all."""
        if len(id_token_hint) > 8192:
            return None
        claims = decode_id_token(self.server.core.keys, id_token_hint, self.server.tenant_id, self.server.issuer)
        subject = claims.get("sub") if claims else None
        return subject if isinstance(subject, str) else None

    # --- helpers ------------------------------------------------------------------------------------

    def _revalidate(self, interaction: Interaction):  # type: ignore[no-untyped-def]
        """Validate the stored request again: the client or its redirect URIs may have changed since."""
        request = PlainOAuth2Request("GET", self.server.issuer, {}, interaction.params)
        try:
            return self.server.get_consent_grant(request)
        except OAuth2Error as error:
            raise InteractionExpired(
                f"This sign-in request is no longer valid ({error.error}): start again from your app."
            ) from None

    def _consume(self, interaction: Interaction) -> None:
        if not self.server.core.sessions.finish_interaction(interaction.id):
            raise InteractionExpired("This sign-in request was already completed: start again from your app.")

    def _silent_outcome(
        self, request: PlainOAuth2Request, signed_in: Callable[[], bool], redirect_uri: str | None
    ) -> AuthorizeOutcome:
        error: OAuth2Error = (
            ConsentRequiredError(redirect_uri=redirect_uri)
            if signed_in()
            else LoginRequiredError(redirect_uri=redirect_uri)
        )
        return self._error_outcome(request, error, checks_passed=True)

    def redirect_proven(self, client_id: str | None, *, checks_passed: bool) -> bool:
        """Whether this issuer may send the browser to the (registered, matched) redirect URI of ``client_id``
        without the user having decided anything (RFC 9700 §4.11.2: the AS must not be an open redirector).

        - An application, registered by an administrator (console, tool or CLI): proven. Its redirect URIs were
          chosen by someone this issuer trusts; an error goes back to it as RFC 6749 §4.1.2.1 asks.
        - A client that registered itself (dynamic registration, client ID metadata document): anyone can
          register any redirect URI, so it is not proven for a request that failed a check (a bad response type,
          scope, PKCE or resource), and for a request that passed every check but asks for an answer without the
          user (``prompt=none``) only once an administrator of this issuer approved that client on the consent page
          (a standing consent exists). Until then the error is shown on a page of ours. After the user decided on
          the consent page (approve or deny) the answer always goes back to the client: the user saw its name
          and where it returns.
        """
        if not client_id:
            return False
        try:
            client = self.server.query_client(client_id)
        except OAuth2Error:
            return False
        if client is None:
            return False
        if client.client.origin == "application":
            return True
        return checks_passed and self.server.core.grants.client_approved(self.server.tenant_id, client_id)

    def _error_outcome(
        self, request: PlainOAuth2Request, error: OAuth2Error, *, checks_passed: bool
    ) -> AuthorizeOutcome:
        if error.redirect_uri and self.redirect_proven(request.payload.client_id, checks_passed=checks_passed):
            # The client and redirect URI are trusted: report the error to the client (with iss, RFC 9207).
            error.state = request.payload.state
            result: EndpointResult = self.server.error_result(request, error)
            location = result.location
            if location:
                return AuthorizeOutcome(redirect_to=add_params_to_uri(location, {"iss": self.server.issuer}))
        if isinstance(error, UnregisteredRedirectUri):
            return AuthorizeOutcome(
                error=error.error, error_description=error.description, rejected_redirect_uri=error.rejected,
                client_id=request.payload.client_id,
            )  # fmt: skip
        return AuthorizeOutcome(error=error.error, error_description=error.description)

    @staticmethod
    def _location(result: EndpointResult) -> str:
        location = result.location
        if not location:
            raise InteractionExpired("This sign-in request could not be completed: start again from your app.")
        return location
