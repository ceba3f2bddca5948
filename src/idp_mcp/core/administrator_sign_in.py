"""How an administrator gets in at the MCP issuer's own pages: the home page's view of the browser, password
sign-in, and the first-administrator setup. Each is one use case: one read, or, around an Argon2id password
check or hash (~50 ms, which must not hold the write lock), a transaction before it and one after.
"""

from __future__ import annotations

from dataclasses import dataclass

from idp_mcp.core.sessions import BrowserSession, Sessions
from idp_mcp.core.setup_codes import SetupCodes
from idp_mcp.core.users import Users
from idp_mcp.domain import ADMIN_TENANT_ID, User
from idp_mcp.errors import Forbidden, SetupAlreadyDone, ValidationFailed
from idp_mcp.store.db import Database


class SetupCodeRejected(Forbidden):
    code = "setup.code_rejected"


@dataclass(frozen=True)
class Visitor:
    """Who the browser is at the MCP issuer: its administrator (None when not signed in), and whether the server
    still waits for its first administrator."""

    user: User | None
    needs_setup: bool


@dataclass(frozen=True)
class SignedIn:
    """An administrator who just proved who they are, and their new session's cookie value."""

    user: User
    session: str


class AdministratorSignIn:
    def __init__(self, db: Database, *, users: Users, sessions: Sessions, setup_codes: SetupCodes) -> None:
        self._db = db
        self._users = users
        self._sessions = sessions
        self._setup_codes = setup_codes

    def session(self, session_id: str | None) -> BrowserSession | None:
        """The browser's administrator session (a session of a tenant's users is none)."""
        session = self._sessions.get(session_id)
        return session if session is not None and session.tenant_id == ADMIN_TENANT_ID else None

    def visitor(self, session_id: str | None) -> Visitor:
        """The home page's view of the browser, in one read transaction."""
        with self._db.unit_of_work(writes=False):
            session = self.session(session_id)
            user = self._users.get(ADMIN_TENANT_ID, session.user_id) if session else None
            return Visitor(user, not self._users.administrators_exist())

    def sign_in(
        self, identifier: str, password: str, *, client_address: str | None, device: str | None, session_device: str
    ) -> SignedIn:
        """Sign an administrator in with a password and start their session (rate limits and audit as
        :meth:`Users.authenticate`); the session commits with the sign-in's record. ``device``: the browser's
        device cookie as sent; ``session_device``: the one it keeps (a new one for a browser that had none)."""
        return self._users.sign_in_sync(
            ADMIN_TENANT_ID, identifier, password,
            lambda user: SignedIn(user, self._sessions.start(ADMIN_TENANT_ID, user.id, device=session_device)),
            client_address=client_address, device=device,
        )  # fmt: skip

    def set_up(
        self, email: str, password: str, password_confirm: str, *, setup_code: str | None, session_device: str
    ) -> SignedIn:
        """Create the first administrator and sign them in. ``setup_code``: the code the server printed, when the
        page must ask for it (None when it need not). A read checks that no administrator exists and the code; after
        the password is hashed, one transaction creates the administrator (checking again, so two browsers racing
        cannot both succeed), deletes the setup codes and starts the session."""
        with self._db.unit_of_work(writes=False):
            if self._users.administrators_exist():
                raise SetupAlreadyDone("An administrator exists already: sign in instead.")
            if setup_code is not None and (not setup_code or not self._setup_codes.verify(setup_code)):
                raise SetupCodeRejected(
                    "Enter the one-time setup code printed on the server's console when it started."
                )
        if password != password_confirm:
            raise ValidationFailed("The passwords do not match.")

        def signed_in(user: User) -> SignedIn:
            self._setup_codes.forget()
            return SignedIn(user, self._sessions.start(ADMIN_TENANT_ID, user.id, device=session_device))

        return self._users.create_administrator_sync(email, password, signed_in, first_only=True)
