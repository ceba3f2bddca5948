"""Password changes outside sign-in: an administrator sets a user's password, or a user who forgot theirs resets
it with a code sent to their email address.

Either way the change ends everything the old password could have led to, in the same transaction: the user's
browser sessions, grants, refresh and access tokens (see :func:`idp_mcp.core.users.end_access`). It also clears
the failed sign-in counts of the user's identifiers, so a lock-out someone else caused does not keep the owner out
of the account they just recovered. Nobody is signed in by a reset: the next sign-in goes through every step the
tenant asks for.

Like the sign-in codes, a reset request answers the same whether or not the address has an account: a code row is
written either way (the limits then count the same), and an email goes out only to an account that can use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote, urlencode

from sqlalchemy import Connection

from idp_mcp.core import passwords
from idp_mcp.core.audit import AuditLog
from idp_mcp.core.mail import OutgoingEmail
from idp_mcp.core.rate_limits import PASSWORD_SIGN_IN, Limit, RateLimits, address_key, normalise_identifier
from idp_mcp.core.sign_in_experience import SignInExperience, SignInExperiences
from idp_mcp.core.tenants import Tenants
from idp_mcp.core.transactions import committed
from idp_mcp.core.users import end_access, normalise_email
from idp_mcp.core.verification_codes import (
    CODE_TTL,
    EXPIRED_OR_USED,
    CodeRejected,
    Purpose,
    RefusedCode,
    TooManyCodes,
    VerificationCodes,
)
from idp_mcp.domain import Actor, Clock, User
from idp_mcp.errors import Forbidden, IdpError, TooManyAttempts, UserNotFound, UserSuspended, ValidationFailed
from idp_mcp.store.db import Database
from idp_mcp.store.repos import rate_limits as rate_limits_repo
from idp_mcp.store.repos import users as users_repo

PURPOSE: Purpose = "password_reset"  # of the codes, and of the request counters
NO_EMAIL_CONNECTOR = (
    "Password reset emails need an email (SMTP) connector, and this server has none. Ask the server's operator to "
    "set IDP_MCP_SMTP_HOST and IDP_MCP_SMTP_FROM (and restart it), or use setUserPassword instead."
)
NOT_OFFERED = "Resetting a password is not available here. Ask the application's owner for help."


class ResetNotOffered(Forbidden):
    code = "password_reset.not_offered"


class ResetNotPossible(IdpError):
    """An administrator asked for a reset email the server cannot send (no email connector, no address, ...)."""

    code = "password_reset.not_possible"
    status = 409


@dataclass(frozen=True)
class ResetLimits:
    """How many reset emails may be asked for per address typed and per client address in a window (on top of the
    limit every emailed code has, see :mod:`idp_mcp.core.verification_codes`)."""

    per_identifier: int = 5
    per_address: int = 20
    window_seconds: int = 900


@dataclass(frozen=True)
class PasswordChanged:
    user: User
    revoked_grants: int  # token families (grants with their refresh and access tokens) revoked


@dataclass(frozen=True)
class ResetSent:
    """A reset code an administrator had sent: the email to deliver, and when the code expires."""

    email: OutgoingEmail
    expires_at: datetime


@dataclass(frozen=True)
class ResetRequest:
    """A reset that passed the checks needing no account (:meth:`PasswordRecovery.check_reset`)."""

    tenant_id: str
    address: str
    new_password: str = field(repr=False)

    def hash_password(self) -> str:
        """The new password's Argon2id hash (tens of ms: call it outside any transaction)."""
        return passwords.hash_password_sync(self.new_password)


class PasswordRecovery:
    def __init__(
        self, db: Database, clock: Clock, audit: AuditLog, *, tenants: Tenants, experiences: SignInExperiences,
        codes: VerificationCodes, rate_limits: RateLimits, public_url: str, limits: ResetLimits | None = None,
    ) -> None:  # fmt: skip
        self._db = db
        self._clock = clock
        self._audit = audit
        self._tenants = tenants
        self._experiences = experiences
        self._codes = codes
        self._rate_limits = rate_limits
        self._public_url = public_url.rstrip("/")
        self._limits = limits or ResetLimits()

    def offered(self, experience: SignInExperience) -> bool:
        """Users may reset a password while the tenant signs in with passwords and the server can send email."""
        return bool(experience.password_identifiers) and self._experiences.email_connector

    def reset_url(self, tenant_id: str, email: str | None = None) -> str:
        """The hosted page where a code and a new password are entered."""
        query = f"?{urlencode({'email': email})}" if email else ""
        return f"{self._public_url}/t/{quote(tenant_id, safe='')}/forgot-password/reset{query}"

    # --- the hosted page: ask for a code, then use it -------------------------------------------------------

    def request(self, tenant_id: str, email: str, *, client_address: str | None) -> OutgoingEmail | None:
        """Issue a reset code for ``email``: the email to deliver, or None when nobody can use it (no account, or
        a suspended one). Limited per address typed and per ``client_address``, whether or not it has an account.
        One transaction, which keeps a refused request counted (see :func:`committed`); the email is for the caller
        to send after it, outside any transaction."""
        return committed(self._db, lambda: self._request(tenant_id, email, client_address=client_address))

    def _request(self, tenant_id: str, email: str, *, client_address: str | None) -> OutgoingEmail | None:
        experience = self._experiences.get(tenant_id)
        if not self.offered(experience):
            raise ResetNotOffered(NOT_OFFERED)
        address = normalise_email(email)
        self._count_request(tenant_id, address, client_address)
        issued = self._codes.issue(tenant_id, PURPOSE, address)  # its own limit per address: TooManyCodes
        with self._db.read() as conn:
            user = _by_email(conn, tenant_id, address)
        if user is None or user.suspended:
            return None
        return self._email(tenant_id, experience, address, issued.code)

    def reset(self, tenant_id: str, email: str, code: str, new_password: str) -> PasswordChanged:
        """Set a new password with the latest code sent to ``email``, in one transaction that spends the code.

        The password must meet the sign-up rules; a weak one is refused before the code is spent (so it can be
        tried again). Runs Argon2id (outside any transaction): call it from a worker thread."""
        with self._db.unit_of_work(writes=False):
            checked = self.check_reset(tenant_id, email, new_password)
        return self.apply_reset(checked, code, checked.hash_password())

    def check_reset(self, tenant_id: str, email: str, new_password: str) -> ResetRequest:
        """The first half of :meth:`reset` (it reads only, in the caller's unit of work when there is one): the
        tenant offers resets, and the rules that need no account, so a weak password is refused alike for every
        address. Then hash ``new_password`` outside any transaction, and :meth:`apply_reset`."""
        if not self.offered(self._experiences.get(tenant_id)):
            raise ResetNotOffered(NOT_OFFERED)
        try:
            address = normalise_email(email)
        except ValidationFailed:
            raise CodeRejected(EXPIRED_OR_USED) from None
        passwords.check_policy(new_password, identifiers=(address, address.split("@")[0]))
        return ResetRequest(tenant_id, address, new_password)

    def apply_reset(self, checked: ResetRequest, code: str, password_hash: str) -> PasswordChanged:
        """The second half of :meth:`reset`: spend the code and set the password (``password_hash``, of
        ``checked.new_password``) in one transaction; a refused code stays counted and audited (see
        :func:`committed`)."""
        return committed(self._db, lambda: self._apply_reset(checked, code, password_hash))

    def _apply_reset(self, checked: ResetRequest, code: str, password_hash: str) -> PasswordChanged:
        tenant_id, address, new_password = checked.tenant_id, checked.address, checked.new_password
        changed: PasswordChanged | None = None
        with self._db.transaction() as conn:
            outcome = self._codes.use_in(conn, tenant_id, PURPOSE, address, code)
            if not isinstance(outcome, RefusedCode):
                user = _by_email(conn, tenant_id, address, for_update=True)
                if user is None:  # nobody received that code (or the account is gone): only a lucky guess gets here
                    outcome = RefusedCode("no_account", EXPIRED_OR_USED)
                else:
                    if user.suspended:  # raising rolls back: the code stays unspent
                        raise UserSuspended("This account is suspended. Ask an administrator to reactivate it.")
                    # Raising here also rolls back, so the user can choose another password with the same code.
                    passwords.check_policy(new_password, identifiers=(user.username,))
                    actor = Actor(tenant_id=tenant_id, sub=user.id)
                    changed = self._change(
                        conn, user, password_hash, actor, "user.password_reset", "password_reset",
                        verified_email=True, details={"method": "email_code"},
                    )  # fmt: skip
        if changed is None:
            assert isinstance(outcome, RefusedCode)
            self._codes.settle(tenant_id, PURPOSE, address, outcome)  # audits the refusal and raises
        assert changed is not None
        return changed

    # --- administrators -------------------------------------------------------------------------------------

    def set_by_admin(self, tenant_id: str, user_id: str, password: str, actor: Actor) -> PasswordChanged:
        """Set a user's password for them (a test user, or support), with the sign-up rules; signs them out
        everywhere and revokes their applications' tokens. The password is never audited. Runs Argon2id: call it
        from a worker thread."""
        # The rules that need no account first; the hash outside the transaction (it takes a while); then the user
        # is read, checked against the rest of the rules and changed in one transaction.
        passwords.check_policy(password)
        return self._set_hashed(tenant_id, user_id, password, passwords.hash_password_sync(password), actor)

    def set_for_user_by_admin(self, current: User, password: str, actor: Actor) -> PasswordChanged:
        """:meth:`set_by_admin` for a user the caller has read already (the console, in its page's read): every
        rule and Argon2id outside any transaction, then one write. Call it from a worker thread."""
        local = current.email.split("@")[0] if current.email else None
        passwords.check_policy(password, identifiers=(current.email, current.username, local))
        password_hash = passwords.hash_password_sync(password)
        return self._set_hashed(current.tenant_id, current.id, password, password_hash, actor)

    def _set_hashed(
        self, tenant_id: str, user_id: str, password: str, password_hash: str, actor: Actor
    ) -> PasswordChanged:
        with self._db.transaction() as conn:
            user = users_repo.get(conn, tenant_id, user_id, for_update=True)
            if user is None:
                raise UserNotFound(f"No user '{user_id[:64]}' in this tenant. Call listUsers to find the id.")
            local = user.email.split("@")[0] if user.email else None
            passwords.check_policy(password, identifiers=(user.email, user.username, local))
            return self._change(conn, user, password_hash, actor, "user.set_password", "password_set_by_admin")

    def send_by_admin(self, tenant_id: str, user_id: str, actor: Actor) -> ResetSent:
        """Issue a reset code for a user's email address on an administrator's request: the email to deliver (it
        links to the tenant's hosted reset page). Refused with what to do when the server cannot send email, the
        tenant does not sign in with passwords, or the user has no address or is suspended."""
        if not self._experiences.email_connector:
            raise ResetNotPossible(NO_EMAIL_CONNECTOR)
        refused: TooManyCodes | None = None
        with self._db.unit_of_work(writes=True):
            experience = self._experiences.get(tenant_id)
            if not experience.password_identifiers:
                raise ResetNotPossible(
                    "This tenant's users do not sign in with passwords, so there is nothing to reset: they sign in "
                    "with codes sent by email. Add password: true to a sign-in method first (updateSignInMethods)."
                )
            with self._db.read() as conn:
                user = users_repo.get(conn, tenant_id, user_id)
            if user is None:
                raise UserNotFound(f"No user '{user_id[:64]}' in this tenant. Call listUsers to find the id.")
            if not user.email:
                raise ResetNotPossible(
                    "This user has no email address to send a reset code to. Use setUserPassword instead, and give "
                    "them the password over a channel you trust."
                )
            if user.suspended:
                raise ResetNotPossible(
                    "This user is suspended. Reactivate them first (updateUser with suspended: false)."
                )
            try:
                issued = self._codes.issue(tenant_id, PURPOSE, user.email, actor=actor)
            except TooManyCodes as exc:
                refused = exc  # raised once the unit has committed the refusal's audit row
            else:
                sent = ResetSent(self._email(tenant_id, experience, user.email, issued.code), issued.expires_at)
        if refused is not None:
            raise refused
        return sent

    # --- helpers --------------------------------------------------------------------------------------------

    def _change(
        self, conn: Connection, user: User, password_hash: str, actor: Actor, action: str, reason: str, *,
        verified_email: bool = False, details: dict[str, object] | None = None,
    ) -> PasswordChanged:  # fmt: skip
        """Store the new hash and end what the old password led to, inside the caller's transaction."""
        now = self._clock()
        values: dict[str, object] = {"password_hash": password_hash, "updated_at": now}
        if verified_email and not user.email_verified:  # the code came back from the inbox: the address is proven
            values["email_verified"] = True
        users_repo.update_user(conn, user.tenant_id, user.id, values)
        revoked = end_access(conn, user.tenant_id, user.id, now, reason)
        for identifier in (user.email, user.username):  # the owner is back in: others' failures no longer count
            if identifier:
                key = RateLimits.key(PASSWORD_SIGN_IN, user.tenant_id, "identifier", normalise_identifier(identifier))
                rate_limits_repo.forget(conn, key)
        self._audit.write(
            conn, actor, action, target_type="user", target_id=user.id, tenant_id=user.tenant_id,
            details={**(details or {}), "revoked_grants": revoked},
        )  # fmt: skip
        updated = users_repo.get(conn, user.tenant_id, user.id)
        assert updated is not None
        return PasswordChanged(updated, revoked)

    def _count_request(self, tenant_id: str, address: str, client_address: str | None) -> None:
        limits = [Limit("identifier", address, self._limits.per_identifier)]
        if client_address:
            limits.append(Limit("address", address_key(client_address), self._limits.per_address))
        exceeded = self._rate_limits.hit(PURPOSE, tenant_id, limits, self._limits.window_seconds)
        if exceeded is None:
            return
        self._audit.write_failure(
            Actor(tenant_id=tenant_id, sub=None), "user.password_reset_throttled", target_type="email",
            target_id=address, tenant_id=tenant_id,
            details={"limit": exceeded.kind, "client_address": client_address, "retry_after": exceeded.retry_after},
        )  # fmt: skip
        raise TooManyAttempts(exceeded.message.replace("attempts", "reset requests"), exceeded.retry_after)

    def _email(self, tenant_id: str, experience: SignInExperience, address: str, code: str) -> OutgoingEmail:
        brand = experience.branding.display_name or self._tenants.get(tenant_id).name
        minutes = int(CODE_TTL.total_seconds() // 60)
        body = (
            f"Someone, perhaps you, asked to reset the password of your {brand} account. Your code is:\n\n"
            f"    {code}\n\nEnter it with your new password on the page you came from, or here:\n"
            f"{self.reset_url(tenant_id, address)}\n\nIt works once, for {minutes} minutes. If you did not ask for "
            "it, ignore this email: your password stays as it is, and nobody can use the code without your inbox.\n"
        )
        return OutgoingEmail(address, f"Reset your {brand} password", body)


def _by_email(conn: Connection, tenant_id: str, address: str, *, for_update: bool = False) -> User | None:
    found = users_repo.find_by_identifier(conn, tenant_id, address)
    if not found or found[0].email != address:
        return None
    return users_repo.get(conn, tenant_id, found[0].id, for_update=True) if for_update else found[0]
