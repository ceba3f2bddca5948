"""The client side of sign-in through a connector: the authorization request sent upstream (state, nonce, PKCE
S256 always), the code exchange, the ID token check and the profile.

The ID token is checked with joserfc (signature with a key of the upstream's JWKS, algorithm from an allow-list
that excludes ``none`` and HMAC; then ``iss``, ``aud``, ``azp`` when several audiences, ``nonce``, ``exp`` and
``iat``), never by hand. Discovery documents and JWKS are public metadata, reused for a few minutes; an unknown
``kid`` refetches the JWKS once (the upstream rotated its keys).

Who the user then is (found, linked by verified email, created) is the core's decision
(:meth:`idp_mcp.core.connectors.Connectors.resolve_user`); this module only proves what the upstream says.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from idp_mcp.core.connectors import Connector, PendingLogin, UpstreamProfile, UpstreamSignInFailed, check_url
from idp_mcp.errors import ValidationFailed
from idp_mcp.oauth.upstream_http import UpstreamHttp, UpstreamUnreachable
from idp_mcp.settings import Settings

METADATA_TTL = 300.0
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY = 60
_TENANT_TEMPLATE = "{tenantid}"  # Microsoft's multi-tenant issuer: https://login.microsoftonline.com/{tenantid}/v2.0


def connector_callback_url(settings: Settings, tenant_id: str, connector_id: str) -> str:
    """Where the upstream sends the browser back: the URL to register at the provider."""
    return f"{settings.public_url}/t/{tenant_id}/oidc/connectors/{connector_id}/callback"


@dataclass(frozen=True)
class Endpoints:
    authorization: str
    token: str
    userinfo: str | None
    jwks_uri: str | None
    issuer: str | None  # the issuer ID tokens must name (may hold {tenantid} for Microsoft's common endpoint)


@dataclass(frozen=True)
class TestReport:
    ok: bool
    problems: list[str]
    endpoints: Endpoints | None
    keys: int


class UpstreamSignIn:
    def __init__(self, http: UpstreamHttp, *, allow_http_loopback: bool, cache: bool = True) -> None:
        self._http = http
        self._allow_http_loopback = allow_http_loopback
        self._cache = cache
        self._discovery: dict[str, tuple[float, Endpoints]] = {}
        self._jwks: dict[str, tuple[float, KeySet]] = {}

    # --- endpoints ----------------------------------------------------------------------------------------------

    async def endpoints(self, connector: Connector) -> Endpoints:
        """The connector's endpoints: given (oauth2) or from its issuer's discovery document (oidc)."""
        if connector.kind == "oauth2":
            return Endpoints(
                authorization=connector.endpoints["authorization"], token=connector.endpoints["token"],
                userinfo=connector.endpoints.get("userinfo"), jwks_uri=None, issuer=None,
            )  # fmt: skip
        assert connector.issuer is not None
        cached = self._discovery.get(connector.issuer)
        if self._cache and cached and time.monotonic() - cached[0] < METADATA_TTL:
            return cached[1]
        document = await self._http.get_json(f"{connector.issuer}/.well-known/openid-configuration")
        issuer = document.get("issuer")
        if not isinstance(issuer, str) or not _issuer_matches(issuer, connector.issuer):
            raise UpstreamUnreachable(
                f"Issuer mismatch: the discovery document of {connector.issuer} names the issuer "
                f"'{str(issuer)[:200]}'. Set issuer to exactly the provider's issuer."
            )
        found = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
            value = document.get(name)
            if value is None and name == "userinfo_endpoint":
                continue
            if not isinstance(value, str):
                raise UpstreamUnreachable(f"The discovery document of {connector.issuer} has no {name}.")
            try:
                found[name] = check_url(value, name, allow_http_loopback=self._allow_http_loopback)
            except ValidationFailed as exc:
                raise UpstreamUnreachable(f"The discovery document of {connector.issuer}: {exc.message}") from exc
        endpoints = Endpoints(
            authorization=found["authorization_endpoint"], token=found["token_endpoint"],
            userinfo=found.get("userinfo_endpoint"), jwks_uri=found["jwks_uri"], issuer=issuer,
        )  # fmt: skip
        self._discovery[connector.issuer] = (time.monotonic(), endpoints)
        return endpoints

    # --- the authorization request ------------------------------------------------------------------------------

    def authorization_url(
        self, connector: Connector, endpoints: Endpoints, login: PendingLogin, redirect_uri: str
    ) -> str:
        params = [
            ("response_type", "code"),
            ("client_id", connector.client_id),
            ("redirect_uri", redirect_uri),
            ("scope", " ".join(connector.scopes)),
            ("state", login.state),
            ("code_challenge", create_s256_code_challenge(login.code_verifier)),
            ("code_challenge_method", "S256"),
        ]
        if connector.kind == "oidc":
            params.append(("nonce", login.nonce))
        return str(add_params_to_uri(endpoints.authorization, params))

    # --- the callback -------------------------------------------------------------------------------------------

    async def profile(
        self, connector: Connector, endpoints: Endpoints, *, code: str, login: PendingLogin, redirect_uri: str,
        client_secret: str | None,
    ) -> UpstreamProfile:  # fmt: skip
        """Exchange the code and prove who the user is: the checked ID token (oidc), else userinfo (oauth2)."""
        token = await self._exchange(connector, endpoints, code, login, redirect_uri, client_secret)
        access_token = token.get("access_token")
        if connector.kind == "oidc":
            id_token = token.get("id_token")
            if not isinstance(id_token, str):
                raise UpstreamSignInFailed("The provider sent no ID token. Check that the openid scope is allowed.")
            claims = await self._check_id_token(connector, endpoints, id_token, login.nonce)
            if endpoints.userinfo and isinstance(access_token, str):
                # Many providers put only ``sub`` in the ID token; the profile is at userinfo, for the same subject.
                try:
                    extra = await self._http.get_json(endpoints.userinfo, bearer=access_token)
                except UpstreamUnreachable:
                    extra = {}
                if extra.get("sub") == claims.get("sub"):
                    claims = {**extra, **claims}
            return _map(claims, {**connector.claims, "id": "sub"})
        if not isinstance(access_token, str) or not endpoints.userinfo:
            raise UpstreamSignInFailed("The provider sent no access token, so the profile could not be read.")
        return _map(await self._http.get_json(endpoints.userinfo, bearer=access_token), connector.claims)

    async def _exchange(
        self, connector: Connector, endpoints: Endpoints, code: str, login: PendingLogin, redirect_uri: str,
        client_secret: str | None,
    ) -> dict[str, Any]:  # fmt: skip
        data = {
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": login.code_verifier,
        }  # fmt: skip
        auth = None
        if connector.token_auth == "client_secret_basic" and client_secret:
            auth = (connector.client_id, client_secret)
        else:
            data["client_id"] = connector.client_id
            if connector.token_auth == "client_secret_post" and client_secret:
                data["client_secret"] = client_secret
        status, answer = await self._http.post_form(endpoints.token, data, auth)
        if status != 200 or "error" in answer:
            error = str(answer.get("error") or f"HTTP {status}")[:64]
            raise UpstreamSignInFailed(
                f"The provider refused to complete the sign-in ({error}). Try again; if it keeps failing, the "
                "connector's client id, secret or callback URL may be wrong."
            )
        return answer

    async def _keys(self, jwks_uri: str, *, fresh: bool = False) -> KeySet:
        cached = self._jwks.get(jwks_uri)
        if self._cache and not fresh and cached and time.monotonic() - cached[0] < METADATA_TTL:
            return cached[1]
        document = await self._http.get_json(jwks_uri)
        try:
            keys = KeySet.import_key_set(
                {"keys": [key for key in document.get("keys", []) if isinstance(key, dict) and key.get("kty") != "oct"]}
            )
        except (JoseError, ValueError, TypeError) as exc:
            raise UpstreamUnreachable(f"The provider's JWKS at {jwks_uri[:200]} holds no usable key.") from exc
        self._jwks[jwks_uri] = (time.monotonic(), keys)
        return keys

    async def _check_id_token(
        self, connector: Connector, endpoints: Endpoints, id_token: str, nonce: str
    ) -> dict[str, Any]:
        assert endpoints.jwks_uri is not None and endpoints.issuer is not None
        bad = UpstreamSignInFailed("The provider's ID token did not pass the checks, so nobody was signed in.")
        keys = await self._keys(endpoints.jwks_uri)
        try:
            token = jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGORITHMS)
        except JoseError:
            # A key the cached JWKS lacks: the upstream may have rotated. Fetch once more, then give up.
            try:
                token = jwt.decode(
                    id_token, await self._keys(endpoints.jwks_uri, fresh=True), algorithms=ID_TOKEN_ALGORITHMS
                )
            except JoseError:
                raise bad from None
        claims = dict(token.claims)
        issuer = endpoints.issuer
        if _TENANT_TEMPLATE in issuer:
            issuer = issuer.replace(_TENANT_TEMPLATE, str(claims.get("tid", "")))
        registry = jwt.JWTClaimsRegistry(
            leeway=LEEWAY,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": connector.client_id},
            nonce={"essential": True, "value": nonce},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError:
            raise bad from None
        audience = claims.get("aud")
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != connector.client_id:
            raise bad
        return claims

    # --- testConnector ------------------------------------------------------------------------------------------

    async def test(self, connector: Connector) -> TestReport:
        """Fetch what the connector needs before anyone signs in, and say what is wrong."""
        problems: list[str] = []
        try:
            endpoints = await self.endpoints(connector)
        except UpstreamUnreachable as exc:
            return TestReport(False, [exc.message], None, 0)
        keys = 0
        if endpoints.jwks_uri:
            try:
                keys = len((await self._keys(endpoints.jwks_uri, fresh=True)).keys)
            except UpstreamUnreachable as exc:
                problems.append(exc.message)
            else:
                if keys == 0:
                    problems.append("The provider's JWKS holds no signing key.")
        if connector.kind == "oauth2" and not endpoints.userinfo:
            problems.append("The connector has no userinfo endpoint, so the profile cannot be read.")
        if connector.waiting_for_secret:
            problems.append("The client secret is not set yet: open secretUrl in a browser to set it.")
        return TestReport(not problems, problems, endpoints, keys)


def _issuer_matches(found: str, configured: str) -> bool:
    if found.rstrip("/") == configured.rstrip("/"):
        return True
    # Microsoft's common (multi-tenant) endpoints publish a templated issuer; each token names its directory.
    return _TENANT_TEMPLATE in found and configured.startswith("https://login.microsoftonline.com/")


def _claim(claims: dict[str, Any], name: str | None) -> Any:
    return claims.get(name) if name else None


def _map(claims: dict[str, Any], mapping: dict[str, str]) -> UpstreamProfile:
    """The profile by the connector's claim mapping; values of the wrong type or size are dropped."""
    subject = _claim(claims, mapping.get("id", "sub"))
    if isinstance(subject, int) and not isinstance(subject, bool):
        subject = str(subject)  # GitHub's numeric user id
    if not isinstance(subject, str) or not 0 < len(subject) <= 255:
        raise UpstreamSignInFailed("The provider did not say who you are (no usable subject). Try again later.")
    email = _claim(claims, mapping.get("email"))
    verified = _claim(claims, mapping.get("emailVerified"))
    name = _claim(claims, mapping.get("name"))
    picture = _claim(claims, mapping.get("picture"))
    return UpstreamProfile(
        subject=subject,
        email=email if isinstance(email, str) and len(email) <= 320 else None,
        # Only an explicit true counts (some providers send the string "true").
        email_verified=verified is True or verified == "true",
        name=" ".join(name.split())[:128] or None if isinstance(name, str) else None,
        picture=picture
        if isinstance(picture, str) and picture.startswith("https://") and len(picture) <= 2048
        else None,
    )
