"""The MCP issuer's consent step: an administrator connects an agent (the client) to one of the tenants they
administer. Its rules live here and in :meth:`AuthorizationFlow.approve`, not in the page: which tenants the user may
choose, which scopes they may leave out (:data:`OPTIONAL_SCOPES`), and which a read-only member cannot grant.

Each step is one use case, one transaction: showing the page reads, deciding writes. A client known by its metadata
document may be due for a fetch (oauth/cimd.py), which must not happen in a transaction: then a step answers with
:attr:`ConsentPage.client_due` only, and the page fetches the document and asks again.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from idp_mcp.core.sessions import BrowserSession, Interaction
from idp_mcp.domain import SCOPE_WRITE, Tenant, User
from idp_mcp.oauth.flow import AuthorizationFlow, ConsentRequest

# Scopes a user may untick on the consent page; the rest come with the connection.
OPTIONAL_SCOPES = frozenset({SCOPE_WRITE})
CHOOSE_A_TENANT = "Choose a tenant you administer."


@dataclass(frozen=True)
class ConsentPage:
    """What the consent page of a pending request shows, or why it cannot. ``interaction`` None: the request
    expired, was finished or is another issuer's. ``client_due``: fetch this client's metadata document, then ask
    again. ``session`` None: the browser signs in first (``needs_setup``: no administrator exists yet)."""

    interaction: Interaction | None = None
    client_due: str | None = None
    session: BrowserSession | None = None
    needs_setup: bool = False
    consent: ConsentRequest | None = None
    user: User | None = None
    memberships: tuple[tuple[Tenant, str], ...] = ()


@dataclass(frozen=True)
class ConsentDecision:
    """Where the browser goes (``location``), or else the page to show (again) and the error to show on it."""

    page: ConsentPage
    location: str | None = None
    error: str | None = None


class AdministratorConsent:
    def __init__(self, flow: AuthorizationFlow) -> None:
        self.flow = flow
        self._core = flow.server.core
        self._tenant_id = flow.server.tenant_id

    def page(self, interaction_id: str, session_id: str | None, *, client_fetched: bool = False) -> ConsentPage:
        """The consent page, in one read transaction. :class:`InteractionExpired` when the request is no longer
        valid. ``client_fetched``: the client's document was just fetched (do not answer ``client_due`` again)."""
        with self._core.db.unit_of_work(writes=False):
            return self._page(interaction_id, session_id, client_fetched)

    def decide(
        self, interaction_id: str, session_id: str | None, *, approve: bool, tenant_id: str | None,
        ticked: Collection[str], client_fetched: bool = False,
    ) -> ConsentDecision:  # fmt: skip
        """The user's answer, in one transaction: deny, or approve for ``tenant_id`` (the one tenant they administer
        when they chose none) with the optional scopes they ``ticked``. :class:`InteractionExpired` when the request
        is no longer valid."""
        with self._core.db.unit_of_work(writes=True):
            found = self._found(interaction_id, session_id, client_fetched)
            if found.interaction is None or found.client_due or found.session is None:
                return ConsentDecision(found)
            interaction, session = found.interaction, found.session
            if not approve:
                return ConsentDecision(found, location=self.flow.deny(interaction))
            roles = {tenant.id: role for tenant, role in self._core.tenants.memberships(session.user_id)}
            chosen = tenant_id or (next(iter(roles)) if len(roles) == 1 else "")
            if chosen not in roles:
                return ConsentDecision(self._page(interaction_id, session_id, True), error=CHOOSE_A_TENANT)
            consent = self.flow.describe(interaction)
            scopes = [scope for scope in consent.scopes if scope not in OPTIONAL_SCOPES or scope in ticked]
            location = self.flow.approve(
                interaction, user_id=session.user_id, auth_time=session.auth_time, scopes=scopes,
                acting_tenant_id=chosen,
            )  # fmt: skip
            return ConsentDecision(found, location=location)

    def _found(self, interaction_id: str, session_id: str | None, client_fetched: bool) -> ConsentPage:
        """The interaction and the browser's session, or why the step cannot go on."""
        interaction = self._core.sessions.get_interaction(interaction_id)
        if interaction is None or interaction.tenant_id != self._tenant_id:
            return ConsentPage()
        if not client_fetched and self.flow.server.client_due(interaction.client_id):
            return ConsentPage(interaction, client_due=interaction.client_id)
        session = self._core.sessions.get(session_id)
        if session is None or session.tenant_id != self._tenant_id:
            return ConsentPage(interaction, needs_setup=not self._core.users.administrators_exist())
        return ConsentPage(interaction, session=session)

    def _page(self, interaction_id: str, session_id: str | None, client_fetched: bool) -> ConsentPage:
        found = self._found(interaction_id, session_id, client_fetched)
        if found.interaction is None or found.client_due or found.session is None:
            return found
        user_id = found.session.user_id
        return ConsentPage(
            found.interaction, session=found.session, consent=self.flow.describe(found.interaction),
            user=self._core.users.get(self._tenant_id, user_id),
            memberships=tuple(self._core.tenants.memberships(user_id)),
        )  # fmt: skip
