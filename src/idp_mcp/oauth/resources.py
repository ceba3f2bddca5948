"""RFC 8707 resource indicators for a tenant's issuer: its API resources.

An authorization request may name several of the tenant's API resources; they are bound to the code and its refresh
tokens (as one space-separated value: identifiers hold no spaces). Each token request then gets a token for one of
them (``resource`` at the token endpoint), or, when it names none, for the only one bound, else for the issuer
itself (``aud`` = issuer, OpenID scopes: the userinfo token, as before API resources existed). The permissions a
token carries are evaluated by core/permissions.py when the token is issued, so a change of roles shows in the next
token, refreshes included.
"""

from __future__ import annotations

from collections.abc import Sequence

from authlib.oauth2.rfc6749 import InvalidScopeError

from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.permissions import ResourceAccess, Subject
from idp_mcp.domain import split_scope
from idp_mcp.oauth.checks import InvalidTargetError

#: How many API resources one authorization request may name (they are stored together with the code).
MAX_RESOURCES_PER_REQUEST = 3


def quoted(value: str, limit: int = 100) -> str:
    """``value`` cut to ``limit`` and stripped of what an OAuth error description may not hold (RFC 6749 §5.2)."""
    return "".join(char for char in value[:limit] if 0x20 <= ord(char) <= 0x7E and char not in '"\\')


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))


class ApiTargets:
    def __init__(self, core: IdentityCore, tenant_id: str, issuer: str, openid_scopes: Sequence[str]) -> None:
        self._core = core
        self._tenant_id = tenant_id
        self._issuer = issuer
        self._openid_scopes = frozenset(openid_scopes)

    # --- the authorization request -------------------------------------------------------------------

    def authorization(self, requested: Sequence[str], scope: str | None) -> str:
        """Check the resources and scopes an authorization request names; the value to bind to its code."""
        apis = [value for value in _unique(requested) if value != self._issuer]
        if len(apis) > MAX_RESOURCES_PER_REQUEST:
            raise InvalidTargetError(description=f"Name at most {MAX_RESOURCES_PER_REQUEST} resources per request.")
        defined = self._core.permissions.defined(self._tenant_id, apis) if apis else {}
        for identifier in apis:
            if identifier not in defined:
                raise InvalidTargetError(description=self._unknown(identifier))
        for item in split_scope(scope):
            if item in self._openid_scopes or any(item in names for names in defined.values()):
                continue
            raise InvalidScopeError(description=self._not_a_scope(item, apis))
        return " ".join(apis) or self._issuer

    def bound(self, value: str | None) -> list[str]:
        """The API resources a code or refresh token was authorized for."""
        return [item for item in (value or "").split() if item != self._issuer]

    def permissions_asked(self, bound: str | None, scope: str | None) -> list[tuple[str, str, str]]:
        """(API name, permission, description) of each permission an authorization request asks for, for consent."""
        identifiers = self.bound(bound)
        if not identifiers:
            return []
        requested = split_scope(scope)
        asked = []
        for resource in self._core.api_resources.find(self._tenant_id, identifiers):
            for permission in resource.permissions:
                if permission.name in requested:
                    asked.append((resource.name, permission.name, permission.description))
        return asked

    # --- token requests ------------------------------------------------------------------------------

    def token(self, bound: str | None, requested: Sequence[str], subject: Subject) -> tuple[str, ResourceAccess | None]:
        """The audience of a code exchange's or a refresh's access token, with what the subject holds on it now."""
        values = _unique(requested)
        if len(values) > 1:
            raise InvalidTargetError(description="Request one resource at a time.")
        authorized = self.bound(bound)
        if values:
            target = values[0]
            if target != self._issuer and target not in authorized:
                raise InvalidTargetError(
                    description=f"The resource {quoted(target)} was not part of the authorization request; start a "
                    "new authorization naming it."
                )
        else:
            target = authorized[0] if len(authorized) == 1 else self._issuer
        if target == self._issuer:
            return self._issuer, None
        access = self._core.permissions.evaluate(self._tenant_id, subject, target)
        if access is None:
            raise InvalidTargetError(description=self._unknown(target))
        return target, access

    def client_credentials(
        self,
        requested: Sequence[str],
        scope: str | None,
        client_id: str,
        *,
        prefetched: tuple[str, str, ResourceAccess | None] | None = None,
    ) -> tuple[str, ResourceAccess | None]:
        """The audience of a client-credentials token and what the application holds on it; scopes checked.
        ``prefetched``: (client id, identifier, access) read with the client's secrets in one transaction."""
        values = _unique(requested)
        if len(values) > 1:
            raise InvalidTargetError(description="Request one resource at a time.")
        target = values[0] if values else self._issuer
        if target == self._issuer:
            for item in split_scope(scope):
                if item not in self._openid_scopes:
                    raise InvalidScopeError(description=self._not_a_scope(item, []))
            return self._issuer, None
        if prefetched is not None and prefetched[:2] == (client_id, target):
            access = prefetched[2]
        else:
            access = self._core.permissions.evaluate(self._tenant_id, Subject("application", client_id), target)
        if access is None:
            raise InvalidTargetError(description=self._unknown(target))
        for item in split_scope(scope):
            if item not in access.defined:
                raise InvalidScopeError(description=self._not_a_scope(item, [target]))
        return target, access

    # --- messages ------------------------------------------------------------------------------------

    def _unknown(self, identifier: str) -> str:
        return (
            f"Unknown resource {quoted(identifier)}: no API resource of this tenant has this identifier (compared "
            "exactly)."
        )

    def _not_a_scope(self, item: str, apis: Sequence[str]) -> str:
        if not apis:
            return (
                f"The scope {quoted(item, 70)} is not an OpenID scope of this issuer; to ask for an API permission, "
                "also send resource=<the API identifier>."
            )
        return f"The scope {quoted(item, 70)} is not a permission of {quoted(' '.join(apis), 300)}."
