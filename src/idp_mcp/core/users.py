"""Users of a tenant, and administrators (the users of the admin tenant)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TypeVar

import anyio.to_thread
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from idp_mcp.core import devices, passwords
from idp_mcp.core.audit import AuditLog
from idp_mcp.core.crypto import new_id
from idp_mcp.core.rate_limits import (
    PASSWORD_SIGN_IN,
    Exceeded,
    RateLimits,
    SignInLimits,
    address_key,
    normalise_identifier,
)
from idp_mcp.core.tenants import ADMIN, OWNER, check_role
from idp_mcp.domain import ADMIN_TENANT_ID, DEFAULT_TENANT_ID, Actor, Clock, User
from idp_mcp.errors import (
    InvalidCredentials,
    SetupAlreadyDone,
    TenantNotFound,
    TooManyAttempts,
    UserAlreadyExists,
    UserNotFound,
    UserSuspended,
    ValidationFailed,
)
from idp_mcp.store.db import Database
from idp_mcp.store.repos import grants as grants_repo
from idp_mcp.store.repos import known_devices as devices_repo
from idp_mcp.store.repos import sessions as sessions_repo
from idp_mcp.store.repos import tenants as tenants_repo
from idp_mcp.store.repos import users as repo
from idp_mcp.store.transaction_tally import apart

MAX_EMAIL = 254
T = TypeVar("T")


def _itself(user: User) -> User:
    return user


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    local, _, domain = value.partition("@")
    if not local or "." not in domain or len(value) > MAX_EMAIL or " " in value or domain.startswith("."):
        raise ValidationFailed(f"'{email.strip()[:80]}' is not a valid email address.")
    return value


@dataclass(frozen=True)
class SignInResult:
    user: User


@dataclass(frozen=True)
class PasswordAttempt:
    """A password sign-in attempt, counted (:meth:`Users.begin_password_sign_in`): what the second half needs."""

    tenant_id: str
    identifier: str
    client_address: str | None
    known_device: str | None  # the key of the browser's device, when it is a known device of the account
    user: User | None
    password_hash: str | None
    exceeded: Exceeded | None  # a limit reached: the attempt was refused, and not counted
    invalid: bool = False  # an empty or oversized field: nothing was read or counted


class Users:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        audit: AuditLog,
        rate_limits: RateLimits | None = None,
        sign_in_limits: SignInLimits | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit
        self._rate_limits = rate_limits
        self._sign_in_limits = sign_in_limits or SignInLimits()

    def administrators_exist(self) -> bool:
        with self._db.read() as conn:
            return repo.count(conn, ADMIN_TENANT_ID) > 0

    async def create_administrator(
        self, email: str, password: str, *, tenant_id: str | None = None, role: str | None = None,
        actor_sub: str | None = None, first_only: bool = False,
    ) -> User:  # fmt: skip
        """Create an administrator, a member of ``tenant_id`` with ``role`` (default admin) when one is given.

        The first administrator, given no tenant, becomes the owner of the default tenant. Any later one is a member
        of nothing but the tenant given (none at all without one) until added elsewhere (:meth:`Tenants.set_member`).
        With ``first_only`` (the welcome page), refuse when any administrator exists already, checked in the
        same transaction as the insert so two browsers racing cannot both become the first administrator.
        """
        # Argon2id and the transaction in one worker thread: both block, and one hop costs less than two.
        insert = partial(
            self.create_administrator_sync, email, password, _itself, tenant_id=tenant_id, role=role,
            actor_sub=actor_sub, first_only=first_only,
        )  # fmt: skip
        return await anyio.to_thread.run_sync(insert)

    def create_administrator_sync(
        self, email: str, password: str, then: Callable[[User], T], *, tenant_id: str | None = None,
        role: str | None = None, actor_sub: str | None = None, first_only: bool = False,
    ) -> T:  # fmt: skip
        """:meth:`create_administrator` in the calling worker thread, and ``then(user)`` in the transaction that
        creates the administrator (a session started there commits with it). The password is hashed (Argon2id,
        ~50 ms) before the transaction begins."""
        address = normalise_email(email)
        if role is not None and tenant_id is None:
            raise ValidationFailed("A role is given in a tenant: name the tenant too.")
        membership_role = check_role(role or ADMIN) if tenant_id is not None else None
        passwords.check_policy(password, identifiers=(address, address.split("@")[0]))
        password_hash = passwords.hash_password_sync(password)
        with self._db.unit_of_work(writes=True):
            user = self._insert_administrator(
                address, password_hash, tenant_id=tenant_id, membership_role=membership_role, actor_sub=actor_sub,
                first_only=first_only,
            )  # fmt: skip
            return then(user)

    def _insert_administrator(
        self, address: str, password_hash: str, *, tenant_id: str | None, membership_role: str | None,
        actor_sub: str | None, first_only: bool,
    ) -> User:  # fmt: skip
        now = self._clock()
        user_id = new_id()
        try:
            with self._db.transaction() as conn:
                first = repo.count(conn, ADMIN_TENANT_ID) == 0
                if first_only and not first:
                    raise SetupAlreadyDone("An administrator exists already: sign in instead.")
                membership = (tenant_id, membership_role) if tenant_id is not None else None
                if membership is None and first:
                    membership = (DEFAULT_TENANT_ID, OWNER)
                if membership is not None and (
                    membership[0] == ADMIN_TENANT_ID or tenants_repo.get(conn, membership[0]) is None
                ):
                    raise TenantNotFound(f"Tenant '{membership[0][:64]}' does not exist.")
                if repo.find_by_identifier(conn, ADMIN_TENANT_ID, address):
                    raise UserAlreadyExists(f"An administrator with the email {address} exists already.")
                repo.insert_user(
                    conn,
                    {
                        "tenant_id": ADMIN_TENANT_ID,
                        "id": user_id,
                        "email": address,
                        "password_hash": password_hash,
                        "suspended": False,
                        "created_at": now,
                        "updated_at": now,
                    },
                )
                if membership is not None:
                    tenants_repo.add_member(conn, membership[0], user_id, str(membership[1]), now)
                self._audit.write(
                    conn,
                    Actor(tenant_id=ADMIN_TENANT_ID, sub=actor_sub or user_id),
                    "admin.create",
                    target_type="user",
                    target_id=user_id,
                    details={"email": address, "tenants": {membership[0]: membership[1]} if membership else {}},
                )
                user = repo.get(conn, ADMIN_TENANT_ID, user_id)
        except IntegrityError as exc:
            raise UserAlreadyExists(f"An administrator with the email {address} exists already.") from exc
        assert user is not None
        return user

    async def authenticate(
        self, tenant_id: str, identifier: str, password: str, *, client_address: str | None = None,
        device: str | None = None,
    ) -> User:  # fmt: skip
        """The user with this identifier and password, or :class:`InvalidCredentials`.

        The error does not say whether the identifier exists, and a missing account costs the same time. Failures
        are limited per ``client_address`` and per identifier (known or not); past a limit the password is not even
        checked and :class:`TooManyAttempts` says how long to wait. When ``device`` (the browser's device cookie) is
        a known device of the account, its own allowance replaces the identifier's, which others may have used up
        (see :mod:`idp_mcp.core.rate_limits`). A success clears the count it was made against.
        """
        return await anyio.to_thread.run_sync(
            partial(
                self.authenticate_sync, tenant_id, identifier, password, client_address=client_address, device=device
            )
        )

    def authenticate_sync(
        self, tenant_id: str, identifier: str, password: str, *, client_address: str | None = None,
        device: str | None = None,
    ) -> User:  # fmt: skip
        """:meth:`authenticate` in the calling thread, which must be a worker thread (the database and Argon2id
        block): the whole sign-in is one thread hop."""
        return self.sign_in_sync(tenant_id, identifier, password, _itself, client_address=client_address, device=device)

    def sign_in_sync(
        self, tenant_id: str, identifier: str, password: str, then: Callable[[User], T], *,
        client_address: str | None = None, device: str | None = None,
    ) -> T:  # fmt: skip
        """:meth:`authenticate_sync`, and ``then(user)`` in the transaction that records the success (a session
        started there commits with it): :meth:`begin_password_sign_in`, then :meth:`finish_password_sign_in`."""
        attempt = self.begin_password_sign_in(
            tenant_id, identifier, password, client_address=client_address, device=device
        )
        return self.finish_password_sign_in(attempt, password, then)

    def begin_password_sign_in(
        self, tenant_id: str, identifier: str, password: str, *, client_address: str | None = None,
        device: str | None = None,
    ) -> PasswordAttempt:  # fmt: skip
        """The first half of a password sign-in (see :meth:`authenticate`), in one transaction (the caller's unit
        of work, when there is one): read the account the identifier names and count the attempt against the
        limits (a throttled attempt's audit row is written here too). The password is not checked yet, only its
        length: the caller leaves the transaction and then calls :meth:`finish_password_sign_in` with it."""
        identifier = identifier.strip()
        if not identifier or not password or len(identifier) > 320 or len(password) > passwords.MAX_LENGTH:
            return PasswordAttempt(tenant_id, identifier, client_address, None, None, None, None, invalid=True)
        with self._db.unit_of_work(writes=True):
            found, known_device = self._find_for_sign_in(tenant_id, identifier, device)
            exceeded = self._count_sign_in_attempt(tenant_id, identifier, client_address, known_device)
        user, password_hash = found if found else (None, None)
        return PasswordAttempt(tenant_id, identifier, client_address, known_device, user, password_hash, exceeded)

    def finish_password_sign_in(self, attempt: PasswordAttempt, password: str, then: Callable[[User], T]) -> T:
        """The second half: check the password with Argon2id outside any transaction (it takes tens of ms and must
        not hold a write lock), then, in one transaction, record the sign-in (its audit row), give the attempt back
        and run ``then(user)``: the caller's next step (starting the session) commits with it. Raises
        :class:`TooManyAttempts`, :class:`InvalidCredentials` or :class:`UserSuspended`."""
        if attempt.exceeded is not None:
            raise TooManyAttempts(attempt.exceeded.message, attempt.exceeded.retry_after)
        if attempt.invalid:  # an empty or oversized field: refused before anything was read or counted
            raise InvalidCredentials("The email or password is incorrect.")
        ok = passwords.verify_password_sync(attempt.password_hash, password)
        user, tenant_id = attempt.user, attempt.tenant_id
        actor = Actor(tenant_id=tenant_id, sub=user.id if user else None)
        if not ok or user is None or user.suspended:
            with apart("the audit row of a refused sign-in, once the use case has failed"):
                self._audit.write_failure(
                    actor, "session.sign_in", target_type="user", target_id=user.id if user else None
                )
            if not ok or user is None:
                raise InvalidCredentials("The email or password is incorrect.")
            raise UserSuspended("This account is suspended. Ask an administrator to reactivate it.")
        with self._db.unit_of_work(writes=True):
            with self._db.transaction() as conn:
                repo.touch_sign_in(conn, tenant_id, user.id, self._clock())
                self._audit.write(conn, actor, "session.sign_in", target_type="user", target_id=user.id)
            self._forgive_sign_in_attempt(tenant_id, attempt.identifier, attempt.client_address, attempt.known_device)
            return then(user)

    def _find_for_sign_in(
        self, tenant_id: str, identifier: str, device: str | None
    ) -> tuple[tuple[User, str | None] | None, str | None]:
        """The account (and its password hash) an identifier names, and the key of ``device`` if it is one of the
        account's known devices."""
        token = devices.usable(device)
        with self._db.read() as conn:
            found = repo.find_by_identifier(conn, tenant_id, identifier)
            if token is None:
                return found, None
            # Looked up for unknown identifiers too, so the time taken does not tell whether the account exists.
            user_id = found[0].id if found else ""
            key = devices.device_key(tenant_id, user_id, token)
            known = devices_repo.is_known(conn, key, tenant_id, user_id, self._clock())
            return found, key if known and found else None

    def _count_sign_in_attempt(
        self, tenant_id: str, identifier: str, client_address: str | None, known_device: str | None
    ) -> Exceeded | None:
        """Count the attempt; a limit reached already counts nothing and is returned, its audit row written in the
        same transaction (the caller raises once that committed)."""
        if self._rate_limits is None:
            return None
        policy = self._sign_in_limits
        exceeded = self._rate_limits.hit(
            PASSWORD_SIGN_IN,
            tenant_id,
            policy.limits(identifier, client_address, known_device),
            policy.window_seconds,
        )
        if exceeded is None:
            return None
        with self._db.transaction() as conn:
            self._audit.write(
                conn,
                Actor(tenant_id=tenant_id, sub=None),
                "session.sign_in_throttled",
                outcome="failure",
                details={
                    "limit": exceeded.kind,
                    "known_device": known_device is not None,
                    "identifier": normalise_identifier(identifier),
                    "client_address": client_address,
                    "retry_after": exceeded.retry_after,
                },
            )
        return exceeded

    def _forgive_sign_in_attempt(
        self, tenant_id: str, identifier: str, client_address: str | None, known_device: str | None
    ) -> None:
        """A success is no failure: the count it was made against starts afresh (the known device's own, or the
        identifier's shared one: a success from a known device leaves others' failures counted), and the address
        gets its attempt back."""
        limiter = self._rate_limits
        if limiter is None:
            return
        if known_device is not None:
            limiter.forget(PASSWORD_SIGN_IN, tenant_id, "device", known_device)
        else:
            limiter.forget(PASSWORD_SIGN_IN, tenant_id, "identifier", normalise_identifier(identifier))
        if client_address:
            limiter.give_back(PASSWORD_SIGN_IN, tenant_id, "address", address_key(client_address))

    def administrator_may_act(self, user_id: str, tenant_id: str) -> bool:
        """Whether the administrator exists, is not suspended and still administers ``tenant_id`` (checked on every
        MCP request, behind a short cache, so a removed or suspended administrator's agents stop)."""
        return self.administrator_role(user_id, tenant_id) is not None

    def administrator_role(self, user_id: str, tenant_id: str) -> str | None:
        """The administrator's role in ``tenant_id``; None when they do not exist, are suspended or are no member."""
        with self._db.read() as conn:
            user = repo.get(conn, ADMIN_TENANT_ID, user_id)
            if user is None or user.suspended:
                return None
            return tenants_repo.member_role(conn, tenant_id, user_id)

    def find_administrator(self, email: str) -> User | None:
        with self._db.read() as conn:
            found = repo.find_by_identifier(conn, ADMIN_TENANT_ID, normalise_email(email))
        return found[0] if found else None

    def get(self, tenant_id: str, user_id: str) -> User | None:
        with self._db.read() as conn:
            return repo.get(conn, tenant_id, user_id)


USERNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{2,63}$")
MAX_NAME = 128


@dataclass(frozen=True)
class UserUpdate:
    """What :meth:`TenantUsers.revise` did: the user before and after, and the fields that changed."""

    before: User
    after: User
    changed: tuple[str, ...]


@dataclass(frozen=True)
class UserChanges:
    name: str | None = None
    suspended: bool | None = None
    email_verified: bool | None = None


class TenantUsers:
    """The end users of a tenant (the people who sign in to the developer's apps)."""

    def __init__(self, db: Database, clock: Clock, audit: AuditLog) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit

    async def create(
        self,
        tenant_id: str,
        *,
        password: str,
        actor: Actor,
        email: str | None = None,
        username: str | None = None,
        name: str | None = None,
        email_verified: bool = False,
    ) -> User:
        """Create a user with an email and/or a username and a password (Argon2id, hashed off the loop).

        ``email_verified`` is the administrator's word that the address belongs to the user; without it the address
        stays unproven until the user enters a code sent to it."""
        address = normalise_email(email) if email else None
        if username is not None and not USERNAME.match(username):
            raise ValidationFailed("A username is 3 to 64 letters, digits, '_', '.' or '-', starting with a letter.")
        if not address and not username:
            raise ValidationFailed("Give the user an email, a username, or both.")
        clean_name = " ".join(name.split()) if name else None
        if clean_name is not None and len(clean_name) > MAX_NAME:
            raise ValidationFailed(f"The name is too long: at most {MAX_NAME} characters.")
        passwords.check_policy(password, identifiers=(address, username, address.split("@")[0] if address else None))
        if email_verified and not address:
            raise ValidationFailed("emailVerified needs an email address.")

        def hash_and_insert() -> User:  # one worker thread for Argon2id and the transaction, both blocking
            password_hash = passwords.hash_password_sync(password)
            return self._insert(
                tenant_id, address, username, clean_name, password_hash, actor, "user.create",
                email_verified=email_verified, name_holder=True,
            )  # fmt: skip

        return await anyio.to_thread.run_sync(hash_and_insert)

    def register(
        self, tenant_id: str, *, email: str | None, username: str | None, password_hash: str | None, actor: Actor,
        email_verified: bool = False,
    ) -> User:  # fmt: skip
        """Create a user who signed up on the hosted page, with exactly the identifiers the tenant asks for.

        The password was checked and hashed when the form was sent (it may have waited for an email code since);
        without one, the user signs in with email codes. ``email_verified`` when a code sent to the address came back.
        """
        address = normalise_email(email) if email else None
        if username is not None and not USERNAME.match(username):
            raise ValidationFailed("A username is 3 to 64 letters, digits, '_', '.' or '-', starting with a letter.")
        if not address and not username:
            raise ValidationFailed("Give an email, a username, or both.")
        return self._insert(
            tenant_id, address, username, None, password_hash, actor, "user.sign_up",
            email_verified=email_verified and address is not None,
        )  # fmt: skip

    def _insert(
        self, tenant_id: str, address: str | None, username: str | None, name: str | None, password_hash: str | None,
        actor: Actor, action: str, *, email_verified: bool = False, name_holder: bool = False,
    ) -> User:  # fmt: skip
        """Insert a user. ``name_holder``: an administrator's request, whose refusal names the user who has the
        email or username already (never for sign-up, which must not tell who has an account)."""
        now = self._clock()
        user_id = new_id()
        try:
            with self._db.transaction() as conn:
                holder = repo.holder_of(conn, tenant_id, email=address, username=username)
                if holder is not None:
                    raise UserAlreadyExists(
                        f"The user {holder} has this email or username already (getUser shows them)."
                        if name_holder
                        else "A user with this email or username exists already in this tenant."
                    )
                repo.insert_user(
                    conn,
                    {
                        "tenant_id": tenant_id, "id": user_id, "email": address, "username": username,
                        "name": name, "password_hash": password_hash, "suspended": False,
                        "email_verified": email_verified, "created_at": now, "updated_at": now,
                    },
                )  # fmt: skip
                self._audit.write(
                    conn, actor, action, target_type="user", target_id=user_id, tenant_id=tenant_id,
                    details={"email": address, "username": username, "email_verified": email_verified},
                )  # fmt: skip
                user = repo.get(conn, tenant_id, user_id)
        except IntegrityError as exc:
            raise UserAlreadyExists("A user with this email or username exists already in this tenant.") from exc
        assert user is not None
        return user

    def get(self, tenant_id: str, user_id: str) -> User:
        with self._db.read() as conn:
            user = repo.get(conn, tenant_id, user_id)
        if user is None:
            raise UserNotFound(f"No user '{user_id[:64]}' in this tenant. Call listUsers to find the id.")
        return user

    def list(self, tenant_id: str, *, query: str | None, page: int, page_size: int) -> tuple[list[User], int]:
        if page < 1 or not 1 <= page_size <= 100:
            raise ValidationFailed("page starts at 1 and page_size is 1 to 100.")
        with self._db.read() as conn:
            return repo.search(conn, tenant_id, (query or "").strip()[:100] or None, (page - 1) * page_size, page_size)

    def update(self, tenant_id: str, user_id: str, changes: UserChanges, actor: Actor) -> User:
        """Rename, suspend or reactivate a user; see :meth:`change`."""
        return self.change(tenant_id, user_id, changes, actor)[1]

    def change(self, tenant_id: str, user_id: str, changes: UserChanges, actor: Actor) -> tuple[User, User]:
        """:meth:`revise`, returning the user (before, after) as this change saw and left them."""
        update = self.revise(tenant_id, user_id, changes, actor)
        return update.before, update.after

    def revise(self, tenant_id: str, user_id: str, changes: UserChanges, actor: Actor) -> UserUpdate:
        """Rename, suspend or reactivate a user, or mark their email verified, read and written in one transaction
        holding the user's row; returns the user as this change saw and left them, and the fields it changed.

        Suspending ends all the user's access in the same transaction: browser sessions, and every grant with its
        refresh and access tokens (see :func:`end_access`). Reactivating does not bring those back: the user signs
        in again and the applications get new tokens.
        """
        clean_name: str | None = None
        if changes.name is not None:
            clean_name = " ".join(changes.name.split())
            if len(clean_name) > MAX_NAME:
                raise ValidationFailed(f"The name is too long: at most {MAX_NAME} characters.")
        with self._db.transaction() as conn:
            current = self._locked(conn, tenant_id, user_id)
            values: dict[str, object] = {}
            if clean_name is not None and clean_name != (current.name or ""):
                values["name"] = clean_name or None
            if changes.suspended is not None and changes.suspended != current.suspended:
                values["suspended"] = changes.suspended
            if changes.email_verified is not None and changes.email_verified != current.email_verified:
                if changes.email_verified and not current.email:
                    raise ValidationFailed("This user has no email address to mark as verified.")
                values["email_verified"] = changes.email_verified
            if not values:
                self._audit.ride(conn)
                return UserUpdate(current, current, ())
            now = self._clock()
            repo.update_user(conn, tenant_id, user_id, {**values, "updated_at": now})
            details: dict[str, object] = {"changed": sorted(values)}
            if values.get("suspended"):
                details["revoked_grants"] = end_access(conn, tenant_id, user_id, now, "user_suspended")
            self._audit.write(
                conn, actor, "user.update", target_type="user", target_id=user_id, tenant_id=tenant_id,
                details=details,
            )  # fmt: skip
            updated = repo.get(conn, tenant_id, user_id)
        assert updated is not None
        return UserUpdate(
            current, updated, tuple(field for field in ("name", "suspended", "email_verified") if field in values)
        )

    def delete(self, tenant_id: str, user_id: str, actor: Actor) -> User:
        """Delete a user and, in the same transaction, end their sessions, grants and tokens."""
        with self._db.transaction() as conn:
            current = self._locked(conn, tenant_id, user_id)
            revoked = end_access(conn, tenant_id, user_id, self._clock(), "user_deleted")
            repo.delete_user(conn, tenant_id, user_id)
            self._audit.write(
                conn, actor, "user.delete", target_type="user", target_id=user_id, tenant_id=tenant_id,
                details={"email": current.email, "username": current.username, "revoked_grants": revoked},
            )  # fmt: skip
        return current

    @staticmethod
    def _locked(conn: Connection, tenant_id: str, user_id: str) -> User:
        # FOR UPDATE on PostgreSQL: a concurrent update of the same user waits and then sees this one's result.
        user = repo.get(conn, tenant_id, user_id, for_update=True)
        if user is None:
            raise UserNotFound(f"No user '{user_id[:64]}' in this tenant. Call listUsers to find the id.")
        return user


def end_access(conn: Connection, tenant_id: str, user_id: str, now: datetime, reason: str) -> int:
    """Sign a suspended or deleted user out everywhere, inside the caller's transaction: their browser sessions end,
    and every grant (consent), token family, refresh token, pending code and access token they hold at this
    tenant's issuer is revoked (access tokens through their family, which verifiers and introspection check).
    For an administrator (the admin tenant) that is every MCP grant. Returns how many token families were revoked."""
    sessions_repo.delete_user_sessions(conn, tenant_id, user_id)
    return len(grants_repo.revoke_user_grants(conn, tenant_id, user_id, now, reason))
