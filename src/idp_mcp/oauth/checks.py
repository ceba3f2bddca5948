"""Small, separately tested checks that authlib does not make: PKCE S256 only, resource indicators, and the
redirect URI error that remembers the URI it refused."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import CODE_CHALLENGE_PATTERN


class InvalidTargetError(OAuth2Error):  # type: ignore[misc]
    """RFC 8707 §2: the requested resource is invalid, unknown or malformed."""

    error = "invalid_target"


class UnregisteredRedirectUri(InvalidRequestError):  # type: ignore[misc]
    """The authorization request names a redirect URI its (known) client did not register. Never redirected to;
    ``rejected`` is kept so the error page can show it (escaped: anyone can put anything there) and say how to
    register it."""

    def __init__(self, rejected: str) -> None:
        super().__init__("The redirect_uri is not one registered for this client.")
        self.rejected = rejected


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 only (OAuth 2.1 §4.1.1). Required on every request, or, with
    ``optional_for_confidential``, only for public clients (confidential ones may still use it)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def __init__(self, *, optional_for_confidential: bool = False) -> None:
        super().__init__(required=True)
        self._optional_for_confidential = optional_for_confidential

    def validate_code_challenge(self, grant: object, redirect_uri: str) -> None:
        request = grant.request  # type: ignore[attr-defined]
        datalist = request.payload.datalist
        challenge = request.payload.data.get("code_challenge")
        method = request.payload.data.get("code_challenge_method")
        if len(datalist.get("code_challenge", [])) > 1 or len(datalist.get("code_challenge_method", [])) > 1:
            raise InvalidRequestError("Repeated 'code_challenge' or 'code_challenge_method'.")
        if not challenge and not method and self._optional_for_confidential and not request.client.client.is_public:
            return
        if not challenge:
            raise InvalidRequestError("PKCE is required: send 'code_challenge' with 'code_challenge_method=S256'.")
        if method != "S256":
            raise InvalidRequestError(
                "Only 'code_challenge_method=S256' is supported; 'plain' and a missing method are refused."
            )
        if not CODE_CHALLENGE_PATTERN.match(challenge):
            raise InvalidRequestError("Invalid 'code_challenge'.")


def choose_resource(requested: list[str], allowed: tuple[str, ...], default: str | None) -> str | None:
    """The one resource a request is for (RFC 8707). Unknown or several resources → ``invalid_target``."""
    values = [value for value in requested if value]
    if not values:
        return default
    if len(set(values)) > 1:
        raise InvalidTargetError(description="Request one resource at a time.")
    resource = values[0]
    if resource not in allowed:
        raise InvalidTargetError(
            description=f"Unknown resource '{resource[:200]}'. This server issues tokens for: {', '.join(allowed)}."
        )
    return resource
