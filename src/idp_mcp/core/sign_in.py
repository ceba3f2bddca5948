"""What a person can do on a tenant's hosted page, as the tenant's sign-in experience allows: sign in with a
password or with a code sent by email, and create an account (with the email verified by a code when asked).

Nothing here says whether an address has an account: a code is "sent" either way (an email goes out only when there
is someone to receive it), and a sign-up for an address that has an account already gets a notice by email instead
of a code. Emails are returned to the caller to deliver after the response, so its timing does not tell either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

import anyio.to_thread
from sqlalchemy import Connection

from idp_mcp.core import passwords
from idp_mcp.core.audit import AuditLog
from idp_mcp.core.connectors import Connector, Connectors
from idp_mcp.core.mail import OutgoingEmail
from idp_mcp.core.sessions import BrowserSession, Interaction, Sessions
from idp_mcp.core.sign_in_experience import SignInExperience, SignInExperiences
from idp_mcp.core.tenants import Tenants
from idp_mcp.core.transactions import committed
from idp_mcp.core.users import USERNAME, PasswordAttempt, TenantUsers, Users, normalise_email
from idp_mcp.core.verification_codes import CODE_TTL, CodeRejected, Purpose, VerificationCodes
from idp_mcp.domain import ADMIN_TENANT_ID, Actor, Clock, Tenant, User
from idp_mcp.errors import (
    Forbidden,
    InvalidCredentials,
    TenantNotFound,
    UserAlreadyExists,
    UserSuspended,
    ValidationFailed,
)
from idp_mcp.store.db import Database
from idp_mcp.store.repos import clients as clients_repo
from idp_mcp.store.repos import tenants as tenants_repo
from idp_mcp.store.repos import users as users_repo

_LABELS = {"email": "email", "username": "username"}
T = TypeVar("T")


class SignUpDisabled(Forbidden):
    code = "sign_up.disabled"


class MethodNotOffered(Forbidden):
    code = "sign_in.method_not_offered"


@dataclass(frozen=True)
class SignUpForm:
    email: str | None = None
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class SignUpStarted:
    """What a sign-up form led to, in one of three shapes:

    - ``user``: the account exists now and its owner may be signed in (a sign-up without an email address);
    - ``pending_email``: a code went to the address to confirm it first (or a notice, when it has an account);
    - ``sign_in_email``: a sign-up with an unverified address. The account was created unless the address had one
      already; the page answers the same either way (sign in to continue) and never signs anyone in, so the form
      does not tell who has an account. The owner of an existing address gets a notice by email.
    """

    user: User | None
    pending_email: str | None
    email: OutgoingEmail | None  # to deliver after responding
    sign_in_email: str | None = None


@dataclass(frozen=True)
class SignUpRequest:
    """A sign-up form that passed its checks (:meth:`HostedSignIn.check_sign_up`), with what the tenant keeps."""

    tenant_id: str
    email: str | None
    username: str | None
    password: str | None = field(repr=False)
    verify_email: bool

    def hash_password(self) -> str | None:
        """The password's Argon2id hash (tens of ms: call it outside any transaction), None without a password."""
        return passwords.hash_password_sync(self.password) if self.password is not None else None


@dataclass(frozen=True)
class HostedPage:
    """What every hosted page of a tenant shows: the tenant, its sign-in experience, the usable connectors of its
    'Continue with …' buttons (in order), and whether email codes can be offered now."""

    tenant: Tenant
    experience: SignInExperience
    social: tuple[Connector, ...]
    email_codes: bool

    @property
    def brand_name(self) -> str:
        return self.experience.branding.display_name or self.tenant.name


@dataclass(frozen=True)
class InteractionPage:
    """What the hosted page of a pending authorization request needs. ``interaction`` is None when the request
    expired, was finished, or belongs to another tenant (then nothing else about it is read)."""

    page: HostedPage
    interaction: Interaction | None
    application: str | None  # the client's name
    session: BrowserSession | None  # the browser's session with this tenant, if any


class HostedSignIn:
    def __init__(
        self, db: Database, clock: Clock, audit: AuditLog, *, tenants: Tenants, users: Users,
        tenant_users: TenantUsers, experiences: SignInExperiences, codes: VerificationCodes, sessions: Sessions,
        connectors: Connectors,
    ) -> None:  # fmt: skip
        self._db = db
        self._clock = clock
        self._audit = audit
        self._tenants = tenants
        self._users = users
        self._tenant_users = tenant_users
        self._experiences = experiences
        self._codes = codes
        self._sessions = sessions
        self._connectors = connectors

    def experience(self, tenant_id: str) -> SignInExperience:
        return self._experiences.get(tenant_id)

    # --- the pages ------------------------------------------------------------------------------------------

    def page(self, tenant_id: str) -> HostedPage:
        """Everything a hosted page of ``tenant_id`` shows, in one read transaction; :class:`TenantNotFound` for
        an unknown tenant (or the admin tenant, which has no hosted pages)."""
        with self._db.read() as conn:
            return self._page(conn, tenant_id)

    def interaction_page(self, tenant_id: str, interaction_id: str, session_id: str | None) -> InteractionPage:
        """The hosted sign-in page of a pending authorization request, in one read transaction: the tenant and its
        experience (:meth:`page`), the interaction, its application's name and the browser's tenant session."""
        with self._db.read() as conn:
            page = self._page(conn, tenant_id)
            interaction = self._sessions.interaction_in(conn, interaction_id)
            if interaction is None or interaction.tenant_id != tenant_id:
                return InteractionPage(page, None, None, None)
            client = clients_repo.get(conn, tenant_id, interaction.client_id)
            session = self._sessions.session_in(conn, session_id)
        return InteractionPage(
            page,
            interaction,
            client.name if client else None,
            session if session is not None and session.tenant_id == tenant_id else None,
        )

    def application_page(self, tenant_id: str, client_id: str) -> tuple[HostedPage, str | None]:
        """A hosted page of ``tenant_id`` about one of its applications (an error page naming it): the page data
        (:meth:`page`) and the application's name, None when it has no such application; one read transaction."""
        with self._db.read() as conn:
            page = self._page(conn, tenant_id)
            client = clients_repo.get(conn, tenant_id, client_id) if len(client_id) <= 255 else None
        return page, client.name if client else None

    def _page(self, conn: Connection, tenant_id: str) -> HostedPage:
        # NUL: PostgreSQL refuses it in a string; ids are at most 64 characters.
        tenant = None
        if tenant_id != ADMIN_TENANT_ID and len(tenant_id) <= 64 and "\x00" not in tenant_id:
            tenant = tenants_repo.get(conn, tenant_id)
        if tenant is None:
            raise TenantNotFound(f"Tenant '{tenant_id[:64]}' does not exist.")
        experience = self._experiences.get_in(conn, tenant_id)
        social = self._connectors.social_in(conn, tenant_id, experience.social)
        return HostedPage(tenant, experience, tuple(social), self.email_codes_offered(experience))

    def email_codes_offered(self, experience: SignInExperience) -> bool:
        """Email codes are shown only while the server can send them (the connector may have been removed since)."""
        return experience.email_code and self._experiences.email_connector

    # --- password ---------------------------------------------------------------------------------------------

    def begin_password(
        self, tenant_id: str, identifier: str, password: str, *, client_address: str | None = None,
        device: str | None = None,
    ) -> PasswordAttempt:  # fmt: skip
        """The first half of a password sign-in, in one transaction (the caller's unit of work, when there is one):
        only the identifiers the experience allows with a password, then the account is read and the attempt
        counted (failures are rate-limited per identifier or known ``device`` and per ``client_address``, see
        :meth:`Users.authenticate`). Then :meth:`finish_password`, outside this transaction."""
        with self._db.unit_of_work(writes=True):
            allowed = self.experience(tenant_id).password_identifiers
            kind = "email" if "@" in identifier else "username"
            if kind not in allowed:
                if not allowed:
                    raise MethodNotOffered("Passwords are not used here: sign in with a code sent to your email.")
                raise InvalidCredentials(f"Sign in with your {' or '.join(_LABELS[i] for i in allowed)} and password.")
            return self._users.begin_password_sign_in(
                tenant_id, identifier, password, client_address=client_address, device=device
            )

    def finish_password(self, attempt: PasswordAttempt, password: str, then: Callable[[User], T]) -> T:
        """The second half: Argon2id outside any transaction, then one transaction that records the sign-in and
        runs ``then(user)`` (the caller's next step: the session), see :meth:`Users.finish_password_sign_in`."""
        return self._users.finish_password_sign_in(attempt, password, then)

    # --- email codes ------------------------------------------------------------------------------------------

    def request_sign_in_code(self, tenant_id: str, email: str) -> OutgoingEmail | None:
        """Issue a sign-in code for ``email``; the email to deliver (after the transaction, outside it: sending may
        be slow), or None when nobody can receive it. One transaction (see :func:`committed`)."""
        return committed(self._db, lambda: self._request_sign_in_code(tenant_id, email))

    def _request_sign_in_code(self, tenant_id: str, email: str) -> OutgoingEmail | None:
        experience = self.experience(tenant_id)
        if not self.email_codes_offered(experience):
            raise MethodNotOffered("Signing in with an email code is not offered here.")
        address = normalise_email(email)
        issued = self._codes.issue(tenant_id, "sign_in", address)
        user = self._find_by_email(tenant_id, address)
        if user is None or user.suspended:
            return None
        brand = self._brand(tenant_id, experience)
        return OutgoingEmail(
            to=address,
            subject=f"Your sign-in code for {brand}",
            body=_code_body(f"Your code to sign in to {brand} is:", issued.code),
        )

    def with_email_code(self, tenant_id: str, email: str, code: str) -> User:
        """The user the latest code sent to ``email`` belongs to, once the code is checked (and used up); one
        transaction (see :func:`committed`)."""
        return committed(self._db, lambda: self._with_email_code(tenant_id, email, code))

    def _with_email_code(self, tenant_id: str, email: str, code: str) -> User:
        if not self.email_codes_offered(self.experience(tenant_id)):
            raise MethodNotOffered("Signing in with an email code is not offered here.")
        address = _address_or_reject(email)
        self._codes.verify(tenant_id, "sign_in", address, code)
        user = self._find_by_email(tenant_id, address)
        actor = Actor(tenant_id=tenant_id, sub=user.id if user else None)
        if user is None:  # nobody received that code: only a lucky guess gets here
            raise CodeRejected("This code expired or was already used. Ask for a new code.")
        if user.suspended:
            self._audit.write_failure(actor, "session.sign_in", target_type="user", target_id=user.id)
            raise UserSuspended("This account is suspended. Ask an administrator to reactivate it.")
        with self._db.transaction() as conn:
            users_repo.touch_sign_in(conn, tenant_id, user.id, self._clock())
            if not user.email_verified:  # the code came back from the inbox: the address is proven now
                users_repo.update_user(conn, tenant_id, user.id, {"email_verified": True})
            self._audit.write(
                conn, actor, "session.sign_in", target_type="user", target_id=user.id, details={"method": "email_code"}
            )
        return replace(user, email_verified=True)

    # --- sign-up ----------------------------------------------------------------------------------------------

    async def start_sign_up(self, tenant_id: str, form: SignUpForm) -> SignUpStarted:
        """Create the account now, or send a code to confirm the email first when the experience asks for it.

        Only the identifiers the tenant asks for are kept, and a password only when sign-up sets one.
        """
        return await anyio.to_thread.run_sync(self._start_sign_up, tenant_id, form)

    def _start_sign_up(self, tenant_id: str, form: SignUpForm) -> SignUpStarted:
        # Two transactions at most: the checks read, Argon2id runs outside any transaction, then the writes.
        with self._db.unit_of_work(writes=False):
            request = self.check_sign_up(tenant_id, form)
        password_hash = request.hash_password()
        with self._db.unit_of_work(writes=True):
            return self.create_sign_up(request, password_hash)

    def check_sign_up(self, tenant_id: str, form: SignUpForm) -> SignUpRequest:
        """The first half of :meth:`start_sign_up` (reads only, in the caller's unit of work when there is one): the
        experience allows it, the fields are valid, the username is free. Only the identifiers the tenant asks for
        are kept, and a password only when sign-up sets one."""
        experience = self.experience(tenant_id)
        sign_up = experience.sign_up
        if not sign_up.enabled:
            raise SignUpDisabled("Creating an account is not available here. Ask the application's owner for one.")
        email = username = password = None
        if "email" in sign_up.identifiers:
            if not (form.email or "").strip():
                raise ValidationFailed("Enter your email address.")
            email = normalise_email(form.email or "")
        if "username" in sign_up.identifiers:
            username = (form.username or "").strip()
            if not USERNAME.match(username):
                raise ValidationFailed(
                    "A username is 3 to 64 letters, digits, '_', '.' or '-', starting with a letter."
                )
        if sign_up.password:
            password = form.password or ""
            passwords.check_policy(password, identifiers=(email, username, email.split("@")[0] if email else None))
        if username and self._taken(tenant_id, None, username):
            raise UserAlreadyExists("This username is taken: choose another.")
        return SignUpRequest(tenant_id, email, username, password, sign_up.verify_email)

    def create_sign_up(self, request: SignUpRequest, password_hash: str | None) -> SignUpStarted:
        """The second half of :meth:`start_sign_up` (its writes, in the caller's unit of work when there is one):
        create the account, or issue the code that confirms the email first. ``password_hash``: of
        ``request.password``, hashed outside any transaction (:meth:`SignUpRequest.hash_password`)."""
        tenant_id, email, username = request.tenant_id, request.email, request.username
        actor = Actor(tenant_id=tenant_id, sub=None)
        if not request.verify_email:
            if email is None:  # a username only: nothing to enumerate that the username check did not tell
                user = self._tenant_users.register(
                    tenant_id, email=None, username=username, password_hash=password_hash, actor=actor
                )
                return SignUpStarted(user=user, pending_email=None, email=None)
            notice: OutgoingEmail | None = None
            try:
                if self._taken(tenant_id, email, None):
                    raise UserAlreadyExists("exists")
                # Unproven: apps that link accounts by email see email_verified false until a code proves it.
                self._tenant_users.register(
                    tenant_id, email=email, username=username, password_hash=password_hash, actor=actor
                )
            except UserAlreadyExists:
                # Nothing is created and nothing is said here; the owner of the address hears of it by email.
                self._audit.write_failure(actor, "user.sign_up", details={"error": "user.exists"})
                notice = self._exists_notice(tenant_id, email) if self._experiences.email_connector else None
            return SignUpStarted(user=None, pending_email=None, email=notice, sign_in_email=email)
        assert email is not None  # the experience's validation ties verifyEmail to an email identifier
        issued = self._codes.issue(
            tenant_id, "sign_up", email, payload={"username": username, "password_hash": password_hash}
        )
        return SignUpStarted(user=None, pending_email=email, email=self._sign_up_email(tenant_id, email, issued.code))

    def finish_sign_up(self, tenant_id: str, email: str, code: str) -> User:
        """Create the account that waited for the code sent to ``email``; one transaction (see :func:`committed`)."""
        return committed(self._db, lambda: self._finish_sign_up(tenant_id, email, code))

    def _finish_sign_up(self, tenant_id: str, email: str, code: str) -> User:
        if not self.experience(tenant_id).sign_up.enabled:
            raise SignUpDisabled("Creating an account is not available here. Ask the application's owner for one.")
        address = _address_or_reject(email)
        verified = self._codes.verify(tenant_id, "sign_up", address, code)
        username = verified.payload.get("username")
        password_hash = verified.payload.get("password_hash")
        return self._tenant_users.register(
            tenant_id, email=address, username=username if isinstance(username, str) else None,
            password_hash=password_hash if isinstance(password_hash, str) else None,
            actor=Actor(tenant_id=tenant_id, sub=None), email_verified=True,
        )  # fmt: skip

    def resend_code(self, tenant_id: str, purpose: Purpose, email: str) -> OutgoingEmail | None:
        """A new code for the same step; a pending sign-up keeps what was typed (the password only as a hash). The
        email to deliver after the transaction; one transaction (see :func:`committed`)."""
        return committed(self._db, lambda: self._resend_code(tenant_id, purpose, email))

    def _resend_code(self, tenant_id: str, purpose: Purpose, email: str) -> OutgoingEmail | None:
        if purpose == "sign_in":
            return self._request_sign_in_code(tenant_id, email)
        if not self.experience(tenant_id).sign_up.enabled:
            raise SignUpDisabled("Creating an account is not available here. Ask the application's owner for one.")
        address = normalise_email(email)
        payload = self._codes.pending_payload(tenant_id, "sign_up", address)
        if payload is None:
            raise CodeRejected("This sign-up expired. Fill in the form again.")
        issued = self._codes.issue(tenant_id, "sign_up", address, payload=payload)
        return self._sign_up_email(tenant_id, address, issued.code)

    # --- helpers ----------------------------------------------------------------------------------------------

    def _sign_up_email(self, tenant_id: str, address: str, code: str) -> OutgoingEmail:
        if self._taken(tenant_id, address, None):
            return self._exists_notice(tenant_id, address)
        brand = self._brand(tenant_id, self.experience(tenant_id))
        return OutgoingEmail(
            to=address,
            subject=f"Confirm your email for {brand}",
            body=_code_body(f"Your code to confirm your email and create your account at {brand} is:", code),
        )

    def _exists_notice(self, tenant_id: str, address: str) -> OutgoingEmail:
        """What the owner of an address that has an account hears when someone signs up with it."""
        brand = self._brand(tenant_id, self.experience(tenant_id))
        return OutgoingEmail(
            to=address,
            subject=f"You already have an account at {brand}",
            body=(
                f"Someone, perhaps you, tried to create an account at {brand} with this email address, but it "
                "has one already. Sign in instead. If it was not you, you can ignore this email: nothing changed.\n"
            ),
        )

    def _brand(self, tenant_id: str, experience: SignInExperience) -> str:
        return experience.branding.display_name or self._tenants.get(tenant_id).name

    def _find_by_email(self, tenant_id: str, address: str) -> User | None:
        with self._db.read() as conn:
            found = users_repo.find_by_identifier(conn, tenant_id, address)
        return found[0] if found and found[0].email == address else None

    def _taken(self, tenant_id: str, email: str | None, username: str | None) -> bool:
        with self._db.read() as conn:
            return users_repo.exists_identifier(conn, tenant_id, email=email, username=username)


def _address_or_reject(email: str) -> str:
    try:
        return normalise_email(email)
    except ValidationFailed:
        raise CodeRejected("This code expired or was already used. Ask for a new code.") from None


def _code_body(intro: str, code: str) -> str:
    minutes = int(CODE_TTL.total_seconds() // 60)
    return (
        f"{intro}\n\n    {code}\n\nIt works once, for {minutes} minutes. If you did not ask for it, you can ignore "
        "this email: nobody can use it without access to your inbox.\n"
    )
