"""One error type per failure kind, each with a stable code.

The same code reaches the OAuth endpoints (mapped to an RFC 6749 error), the pages and the MCP tool result,
so an operator can grep one string across all of them. Messages are written for the person or agent that
must act on them and never contain a secret.
"""

from __future__ import annotations


class IdpError(Exception):
    """Base of every expected failure. ``message`` is safe to show to the caller."""

    code: str = "internal"
    #: The closest RFC 6749 / RFC 7591 error code, for OAuth endpoints.
    oauth_error: str = "invalid_request"
    status: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationFailed(IdpError):
    code = "request.invalid"


class NotFound(IdpError):
    code = "entity.not_found"
    status = 404


class TenantNotFound(NotFound):
    code = "tenant.not_found"


class UserNotFound(NotFound):
    code = "user.not_found"


class ClientNotFound(NotFound):
    code = "client.not_found"
    oauth_error = "invalid_client"


class AlreadyExists(IdpError):
    code = "entity.already_exists"
    status = 409


class UserAlreadyExists(AlreadyExists):
    code = "user.already_exists"


class WeakPassword(IdpError):
    code = "user.weak_password"


class InvalidCredentials(IdpError):
    code = "session.invalid_credentials"
    status = 401


class TooManyAttempts(IdpError):
    """Too many failed attempts for an identifier or from an address; nothing was checked."""

    code = "session.sign_in_throttled"
    oauth_error = "temporarily_unavailable"
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RegistrationThrottled(IdpError):
    """Too many dynamic client registrations from one address; nothing was registered."""

    code = "client.registration_throttled"
    oauth_error = "temporarily_unavailable"
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UserSuspended(IdpError):
    code = "user.suspended"
    status = 403


class Forbidden(IdpError):
    code = "auth.forbidden"
    oauth_error = "access_denied"
    status = 403


class SetupAlreadyDone(IdpError):
    code = "setup.already_done"
    status = 409


class InvalidClientMetadata(IdpError):
    code = "client.invalid_metadata"
    oauth_error = "invalid_client_metadata"


class InvalidRedirectUri(InvalidClientMetadata):
    code = "client.invalid_redirect_uri"
    oauth_error = "invalid_redirect_uri"


class ClientMetadataDocumentError(IdpError):
    """A client ID metadata document could not be fetched or is not acceptable."""

    code = "client.metadata_document_invalid"
    oauth_error = "invalid_client"
    status = 401


class InvalidTarget(IdpError):
    code = "oauth.invalid_target"
    oauth_error = "invalid_target"


class InteractionExpired(IdpError):
    code = "interaction.expired"
    status = 410


class CsrfFailed(IdpError):
    code = "session.csrf_failed"
    status = 403


class KeyNotFound(NotFound):
    code = "key.not_found"


class KeyInUse(IdpError):
    """The signing key still signs, or tokens it signed may still be valid."""

    code = "key.in_use"
    status = 409
