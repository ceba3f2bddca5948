"""Multi-factor authentication: what happens after a first factor, and the second factors themselves (TOTP, backup
codes, a code sent by email).

The decision after ANY first factor (:meth:`Mfa.after_first_factor`) is one function, so every way into a session
(password, email sign-in code, sign-up, a connector, a passkey) meets the same policy:

- **complete**: a session starts now, with the first factor's ``amr`` and its ``acr``;
- **challenge**: the user has a second factor the tenant allows, and the tenant's policy is ``optional`` or
  ``required`` or the application asked for MFA (``acr_values``, :func:`asks_for_mfa`);
- **enroll**: the policy is ``required`` or the application asked for MFA, and the user has no factor yet;
- **offer**: the policy is ``optional`` and the user has no factor: enrollment is offered, and may be skipped
  (:meth:`Mfa.skip`). Only after a fresh first factor: an existing session is not held up by the offer.

Under ``off`` an application's ``acr_values`` still asks users for a factor they have, and has them enroll one of
the tenant's ``factors`` when they have none; when the tenant allows no factor at all, the sign-in completes with one
factor and the ID token's ``acr`` says so (the application decides what to do with that: OIDC Core §3.1.2.1 makes
``acr_values`` a voluntary request).

Between the two factors nothing is trusted to the browser but a random cookie value: the partial sign-in is a row
(``mfa_pending``) found by that value's digest, bound to the authorization request and short-lived, and the session
starts only in the transaction that accepts the second factor.

Hook for other factors (passkeys):

- a passkey as **first** factor: call :meth:`Mfa.after_first_factor` with its amr (e.g. ``("hwk", "user")``; put
  ``"mfa"`` in it when the ceremony itself counts as two factors, and the decision completes at once);
- a passkey as **second** factor: register :meth:`Mfa.register_factor` ``("passkey", has_passkey)`` so users who have
  one are challenged (and ``"passkey"`` appears in :attr:`PendingMfa.offered`, and in ``enrollable`` when the tenant
  allows it); read the partial sign-in with :meth:`Mfa.pending`, verify the assertion, then call
  :meth:`Mfa.finish_with` with the method's amr value (``"hwk"`` or ``"swk"``) to start the session; after enrolling
  a passkey in the enroll step give the user :meth:`Mfa.new_backup_codes` (shown once).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import pyotp
from sqlalchemy import Connection

from idp_mcp.core.audit import AuditLog
from idp_mcp.core.crypto import digest, new_id, new_secret, seal, unseal
from idp_mcp.core.mail import OutgoingEmail
from idp_mcp.core.rate_limits import Limit, RateLimits
from idp_mcp.core.server_keys import stored_or_made
from idp_mcp.core.sessions import BrowserSession, Sessions
from idp_mcp.core.sign_in_experience import MfaPolicy, SignInExperiences
from idp_mcp.core.transactions import committed
from idp_mcp.core.verification_codes import CODE_TTL, CodeRejected, VerificationCodes
from idp_mcp.domain import Actor, Clock, User, as_utc
from idp_mcp.errors import Forbidden, IdpError, UserNotFound
from idp_mcp.store.db import Database
from idp_mcp.store.repos import mfa as repo
from idp_mcp.store.repos import sessions as sessions_repo
from idp_mcp.store.repos import users as users_repo
from idp_mcp.store.transaction_tally import apart

# RFC 8176 authentication method references. "email" (a code sent by email) and "fed" (a connector's upstream) are
# not in the RFC's registry; they are what the issue asks for and what Microsoft Entra uses, respectively.
AMR_PASSWORD = "pwd"
AMR_OTP = "otp"
AMR_EMAIL = "email"
AMR_FEDERATED = "fed"
AMR_MFA = "mfa"
AMR_HARDWARE_KEY = "hwk"
AMR_SOFTWARE_KEY = "swk"
# acr: the PAPE multi-factor policy URI (what Auth0 and others use), a short alias of it, and single-factor.
ACR_MFA = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
ACR_MFA_ALIAS = "mfa"
ACR_SINGLE_FACTOR = "1fa"
ACR_VALUES_SUPPORTED = (ACR_MFA, ACR_MFA_ALIAS, ACR_SINGLE_FACTOR)

PENDING_TTL = timedelta(minutes=10)
MAX_PENDING_FAILURES = 5  # wrong codes per partial sign-in, then it starts again from the first factor
MFA_CODE = "mfa_code"  # rate-limit purpose: wrong second-factor codes per user, like wrong passwords
BACKUP_CODES = 10
TOTP_DIGITS = 6
TOTP_INTERVAL = 30
_TOTP_KEY = "mfa_totp_sealing_key"
_TOTP_PURPOSE = "mfa-totp-secret"

Outcome = Literal["complete", "challenge", "enroll", "offer"]
SecondFactor = Literal["totp", "backup_code", "email", "passkey"]
FactorCheck = Callable[[Connection, str, str], bool]  # (conn, tenant_id, user_id) -> the user has this factor


class MfaCodeRejected(IdpError):
    code = "mfa.code_rejected"


class MfaExpired(IdpError):
    code = "mfa.expired"
    status = 410


class MfaUnavailable(Forbidden):
    code = "mfa.unavailable"


class MfaThrottled(MfaCodeRejected):
    code = "mfa.throttled"
    status = 429


# --- pure rules -------------------------------------------------------------------------------------------------


def asks_for_mfa(params: Mapping[str, Any]) -> bool:
    """Whether an authorization request's ``acr_values`` ask for multi-factor authentication (step-up)."""
    raw = params.get("acr_values") or []
    values = " ".join(raw if isinstance(raw, list | tuple) else [str(raw)]).split()
    return ACR_MFA in values or ACR_MFA_ALIAS in values


def with_second_factor(first: tuple[str, ...], method: str) -> tuple[str, ...]:
    """The amr after ``method`` was proven on top of ``first``: both, and ``mfa`` when they are distinct."""
    methods = tuple(dict.fromkeys([*first, method]))
    distinct = method not in first and AMR_MFA not in methods
    return (*methods, AMR_MFA) if distinct else methods


def acr_of(amr: tuple[str, ...]) -> str:
    return ACR_MFA if AMR_MFA in amr else ACR_SINGLE_FACTOR


def acr_for_request(acr: str | None, params: Mapping[str, Any]) -> str | None:
    """The acr to put in the ID token: the alias when the application asked for MFA by its alias."""
    if acr == ACR_MFA:
        raw = params.get("acr_values") or []
        values = " ".join(raw if isinstance(raw, list | tuple) else [str(raw)]).split()
        if ACR_MFA_ALIAS in values and ACR_MFA not in values:
            return ACR_MFA_ALIAS
    return acr


@dataclass(frozen=True)
class Options:
    """The second factors a user may prove now (``offered``) and may set up (``enrollable``)."""

    offered: tuple[SecondFactor, ...]
    enrollable: tuple[str, ...]


def options(
    policy: MfaPolicy, enrolled: set[str], *, backup_codes: int, email_usable: bool, first_amr: tuple[str, ...]
) -> Options:
    """What a user may prove and enroll, given the tenant's policy and what the user has. ``email_usable``: the
    server can send email and the user has a proven address."""
    offered: list[SecondFactor] = []
    if "totp" in policy.factors and "totp" in enrolled:
        offered.append("totp")
    if "passkey" in policy.factors and "passkey" in enrolled:
        offered.append("passkey")
    if offered and backup_codes:
        offered.append("backup_code")  # backup codes stand in for a TOTP app or a passkey that is lost
    if "email" in policy.factors and email_usable and AMR_EMAIL not in first_amr:
        offered.append("email")
    enrollable = tuple(kind for kind in ("totp", "passkey") if kind in policy.factors and kind not in enrolled)
    return Options(tuple(offered), enrollable)


def decide(policy: MfaPolicy, choices: Options, *, first_amr: tuple[str, ...], step_up: bool) -> Outcome:
    """complete, challenge, enroll or offer (see the module docstring)."""
    if AMR_MFA in first_amr:
        return "complete"
    if policy.policy == "off" and not step_up:
        return "complete"
    if choices.offered:
        return "challenge"
    needed = policy.policy == "required" or step_up
    if needed and choices.enrollable:
        return "enroll"
    if policy.policy == "optional" and choices.enrollable and not step_up:
        return "offer"
    if policy.policy == "required":
        raise MfaUnavailable(
            "This account needs a second factor, and none can be set up here. Ask an administrator for help."
        )
    return "complete"  # optional without a factor, or a step-up the tenant cannot satisfy: acr says single-factor


# --- results ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MfaDecision:
    """What follows a first factor. ``session``: the new session's cookie value (complete); ``pending``: the
    cookie value of the partial sign-in (challenge, enroll)."""

    outcome: Outcome
    amr: tuple[str, ...]
    session: str | None = None
    pending: str | None = None
    offered: tuple[SecondFactor, ...] = ()
    enrollable: tuple[str, ...] = ()


@dataclass(frozen=True)
class PendingMfa:
    """A partial sign-in as its pages need it."""

    tenant_id: str
    user_id: str
    amr: tuple[str, ...]
    offered: tuple[SecondFactor, ...]
    enrollable: tuple[str, ...]
    email: str | None  # where an email code would go (shown masked)
    failures: int
    outcome: Outcome = "enroll"  # challenge, enroll, or offer (enrollment that may be skipped)


@dataclass(frozen=True)
class TotpEnrollment:
    secret: str  # base32, shown for manual entry
    uri: str  # otpauth:// provisioning URI, shown as a QR code


@dataclass(frozen=True)
class Enrolled:
    decision: MfaDecision
    backup_codes: tuple[str, ...]  # shown once, never stored in clear


@dataclass(frozen=True)
class FactorInfo:
    """An enrolled factor as administrators see it (never its secret)."""

    kind: str
    created_at: datetime
    last_used_at: datetime | None
    remaining: int | None = None  # backup codes left


FactorList = Callable[[Connection, str, str], list[FactorInfo]]  # (conn, tenant_id, user_id) -> for getUser
FactorRemoval = Callable[[Connection, str, str], int]  # (conn, tenant_id, user_id) -> how many were removed


@dataclass
class _Read:
    """The rows a decision reads in its transaction."""

    user: User
    factors: list[Any] = field(default_factory=list)
    backup_codes: int = 0


# --- the service ------------------------------------------------------------------------------------------------


class Mfa:
    def __init__(
        self, db: Database, clock: Clock, audit: AuditLog, *, sessions: Sessions, experiences: SignInExperiences,
        codes: VerificationCodes, rate_limits: RateLimits, max_failures_per_user: int = 5,
        failure_window_seconds: int = 900,
    ) -> None:  # fmt: skip
        self._db = db
        self._clock = clock
        self._audit = audit
        self._sessions = sessions
        self._experiences = experiences
        self._codes = codes
        self._rate_limits = rate_limits
        self._max_failures = max_failures_per_user
        self._window = failure_window_seconds
        self._factor_checks: dict[str, FactorCheck] = {}
        self._factor_lists: dict[str, FactorList] = {}
        self._factor_removals: dict[str, FactorRemoval] = {}
        self._sealing_key: str | None = None

    def register_factor(
        self, kind: Literal["passkey"], check: FactorCheck, *, listing: FactorList | None = None,
        removal: FactorRemoval | None = None,
    ) -> None:  # fmt: skip
        """Let another module's factor count as enrolled (see the module docstring: passkeys); ``listing`` adds its
        entries to :meth:`factors` (getUser), ``removal`` deletes them in :meth:`reset` (resetUserMfa)."""
        self._factor_checks[kind] = check
        if listing is not None:
            self._factor_lists[kind] = listing
        if removal is not None:
            self._factor_removals[kind] = removal

    # --- after the first factor ---------------------------------------------------------------------------------

    def after_first_factor(
        self, tenant_id: str, interaction_id: str, user_id: str, amr: tuple[str, ...], *, device: str | None = None,
        previous_pending: str | None = None,
    ) -> MfaDecision:  # fmt: skip
        """Decide what follows a first factor, in one transaction: start the session (complete), or record the
        partial sign-in bound to ``interaction_id`` (challenge, enroll). ``previous_pending``: the browser's earlier
        partial sign-in cookie, replaced."""
        now = self._clock()
        with self._db.transaction() as conn:
            repo.purge_pending(conn, now)
            if previous_pending:
                repo.delete_pending(conn, digest(previous_pending))
            interaction = sessions_repo.get_interaction(conn, digest(interaction_id), now)
            params = dict(interaction.params) if interaction is not None else {}
            experience = self._experiences.get_in(conn, tenant_id)
            read = self._read(conn, tenant_id, user_id)
            choices = self._options(conn, experience.mfa, read, amr)
            outcome = decide(experience.mfa, choices, first_amr=amr, step_up=asks_for_mfa(params))
            if outcome == "complete":
                raw = self._sessions.start_in(conn, tenant_id, user_id, device=device, amr=amr, acr=acr_of(amr))
                return MfaDecision("complete", amr, session=raw)
            pending = new_secret(32)
            repo.insert_pending(
                conn,
                {
                    "id_digest": digest(pending), "tenant_id": tenant_id, "user_id": user_id,
                    "interaction_digest": digest(interaction_id), "amr": list(amr),
                    "step_up": asks_for_mfa(params), "failures": 0, "created_at": now, "expires_at": now + PENDING_TTL,
                },
            )  # fmt: skip
        return MfaDecision(outcome, amr, pending=pending, offered=choices.offered, enrollable=choices.enrollable)

    def for_session(self, tenant_id: str, interaction_id: str, session: BrowserSession) -> MfaDecision:
        """Whether an existing session is enough for this authorization request (policy changed since, or the
        application asks for MFA now): its amr is taken as the first factor. ``complete`` starts no new session."""
        now = self._clock()
        with self._db.read() as conn:
            interaction = sessions_repo.get_interaction(conn, digest(interaction_id), now)
            params = dict(interaction.params) if interaction is not None else {}
            experience = self._experiences.get_in(conn, tenant_id)
            read = self._read(conn, tenant_id, session.user_id)
            choices = self._options(conn, experience.mfa, read, session.amr)
            outcome = decide(experience.mfa, choices, first_amr=session.amr, step_up=asks_for_mfa(params))
        if outcome in ("complete", "offer"):  # the optional offer comes after a fresh sign-in, not on every visit
            return MfaDecision("complete", session.amr)
        return self.after_first_factor(tenant_id, interaction_id, session.user_id, session.amr)

    def pending(self, raw: str | None, interaction_id: str) -> PendingMfa | None:
        """The partial sign-in of this browser for this authorization request, or None (expired, another request)."""
        with self._db.read() as conn:
            found = self._pending_in(conn, raw, interaction_id)
            if found is None:
                return None
            row, read = found
            experience = self._experiences.get_in(conn, row.tenant_id)
            amr = tuple(row.amr)
            choices = self._options(conn, experience.mfa, read, amr)
        try:  # decided again: the policy or the user's factors may have changed since the first factor
            outcome = decide(experience.mfa, choices, first_amr=amr, step_up=row.step_up)
        except MfaUnavailable:
            outcome = "enroll"
        if outcome == "complete":  # the policy was relaxed meanwhile: the user may go on without a second factor
            outcome = "offer" if choices.enrollable else "challenge"
        return PendingMfa(
            row.tenant_id, row.user_id, amr, choices.offered, choices.enrollable,
            read.user.email if "email" in choices.offered else None, row.failures, outcome,
        )  # fmt: skip

    # --- second factors -----------------------------------------------------------------------------------------

    def verify(
        self, raw: str | None, interaction_id: str, factor: SecondFactor, code: str, *, device: str | None = None
    ) -> MfaDecision:
        """Check a TOTP, backup or email code for the partial sign-in, then start its session (one transaction for
        the code and the session). Wrong codes count against the user (like wrong passwords) and the partial
        sign-in; a code or time step is accepted once. One transaction, which keeps a wrong code counted (see
        :func:`committed`)."""
        return committed(self._db, lambda: self._verify(raw, interaction_id, factor, code, device=device))

    def _verify(
        self, raw: str | None, interaction_id: str, factor: SecondFactor, code: str, *, device: str | None
    ) -> MfaDecision:
        pending = self._require(raw, interaction_id)
        if factor not in pending.offered or factor == "passkey":
            raise MfaCodeRejected("This way to confirm it is you is not available here. Choose another one.")
        self._count_attempt(pending)
        typed = "".join(code.split())
        if factor == "email":
            assert pending.email is not None
            try:
                self._codes.verify(pending.tenant_id, "mfa", pending.email, typed)
            except CodeRejected as exc:
                self._failed(raw, pending, factor)
                raise MfaCodeRejected(exc.message) from None
            decision = self._finish(raw, interaction_id, pending, AMR_EMAIL, device=device, factor=factor)
            self._rate_limits.give_back(MFA_CODE, pending.tenant_id, "identifier", pending.user_id)
            return decision
        now = self._clock()
        with self._db.transaction() as conn:
            accepted = (
                self._use_totp(conn, pending, typed, now)
                if factor == "totp"
                else repo.use_backup_code(conn, pending.tenant_id, pending.user_id, _backup_digest(typed), now)
            )
            if accepted:
                decision = self._start(conn, raw, interaction_id, pending, AMR_OTP, device=device, factor=factor)
        if not accepted:
            self._failed(raw, pending, factor)
            raise MfaCodeRejected(
                "That code is not right, or it was used already. Enter the current code from your authenticator app."
                if factor == "totp"
                else "That backup code is not right, or it was used already. Each backup code works once."
            )
        self._rate_limits.give_back(MFA_CODE, pending.tenant_id, "identifier", pending.user_id)
        return decision

    def finish_with(
        self, raw: str | None, interaction_id: str, method: str, *, device: str | None = None
    ) -> MfaDecision:
        """Start the session of a partial sign-in whose second factor another module verified (a passkey: ``method``
        is its amr value, ``hwk`` or ``swk``). One transaction."""
        with self._db.unit_of_work(writes=True):
            pending = self._require(raw, interaction_id)
            return self._finish(raw, interaction_id, pending, method, device=device, factor=method)

    def skip(self, raw: str | None, interaction_id: str, *, device: str | None = None) -> MfaDecision:
        """Decline the offered enrollment (policy ``optional``): the session starts with the first factor only; one
        transaction."""
        with self._db.unit_of_work(writes=True):
            return self._skip(raw, interaction_id, device=device)

    def _skip(self, raw: str | None, interaction_id: str, *, device: str | None) -> MfaDecision:
        pending = self._require(raw, interaction_id)
        if pending.outcome != "offer":
            raise MfaUnavailable("This sign-in needs a second factor: set one up to continue.")
        with self._db.transaction() as conn:
            if not repo.delete_pending(conn, digest(raw or "")):
                raise MfaExpired("This sign-in was completed already. Start again from your app.")
            session = self._sessions.start_in(
                conn, pending.tenant_id, pending.user_id, device=device, amr=pending.amr, acr=acr_of(pending.amr)
            )
            self._audit.write(
                conn, Actor(tenant_id=pending.tenant_id, sub=pending.user_id), "mfa.skip_enrollment",
                target_type="user", target_id=pending.user_id, tenant_id=pending.tenant_id,
            )  # fmt: skip
        return MfaDecision("complete", pending.amr, session=session)

    def send_email_code(self, raw: str | None, interaction_id: str) -> OutgoingEmail:
        """A code for the user's proven address, as the second factor of the partial sign-in: stored in one
        transaction (a refusal's audit row too, see :func:`committed`); the email is for the caller to send after
        it, outside any transaction."""
        return committed(self._db, lambda: self._send_email_code(raw, interaction_id))

    def _send_email_code(self, raw: str | None, interaction_id: str) -> OutgoingEmail:
        pending = self._require(raw, interaction_id)
        if "email" not in pending.offered or pending.email is None:
            raise MfaUnavailable("A code by email is not available for this sign-in. Choose another way.")
        issued = self._codes.issue(pending.tenant_id, "mfa", pending.email)
        minutes = int(CODE_TTL.total_seconds() // 60)
        return OutgoingEmail(
            to=pending.email,
            subject="Your sign-in confirmation code",
            body=(
                f"Your code to confirm your sign-in is:\n\n    {issued.code}\n\nIt works once, for {minutes} minutes. "
                "If you did not just sign in, someone knows your password: change it.\n"
            ),
        )

    # --- enrollment ---------------------------------------------------------------------------------------------

    def begin_totp(self, raw: str | None, interaction_id: str, issuer: str) -> TotpEnrollment:
        """A new TOTP secret for the partial sign-in's user, stored (sealed) unconfirmed until a code proves the
        authenticator app has it. Asking again replaces the unconfirmed one. One transaction."""
        with self._db.unit_of_work(writes=True):
            return self._begin_totp(raw, interaction_id, issuer)

    def _begin_totp(self, raw: str | None, interaction_id: str, issuer: str) -> TotpEnrollment:
        pending = self._require(raw, interaction_id)
        if "totp" not in pending.enrollable:
            raise MfaUnavailable("An authenticator app cannot be set up for this sign-in.")
        secret = pyotp.random_base32()
        factor_id = new_id(12)
        key = self._key()
        now = self._clock()
        with self._db.transaction() as conn:
            user = users_repo.get(conn, pending.tenant_id, pending.user_id)
            if user is None:
                raise MfaExpired("This sign-in expired. Start again from your app.")
            repo.delete_unconfirmed(conn, pending.tenant_id, pending.user_id, "totp")
            repo.insert_factor(
                conn,
                {
                    "id": factor_id, "tenant_id": pending.tenant_id, "user_id": pending.user_id, "kind": "totp",
                    "secret": seal(key, _TOTP_PURPOSE, secret, _binding(pending.tenant_id, pending.user_id, factor_id)),
                    "last_step": None, "created_at": now, "confirmed_at": None, "last_used_at": None,
                },
            )  # fmt: skip
        name = user.email or user.username or user.id
        uri = _totp(secret).provisioning_uri(name=name, issuer_name=issuer)
        return TotpEnrollment(secret, uri)

    def confirm_totp(self, raw: str | None, interaction_id: str, code: str, *, device: str | None = None) -> Enrolled:
        """Confirm the TOTP being enrolled with a first code, give the user 10 backup codes (shown once) and start
        the session, in one transaction (which keeps a wrong code counted, see :func:`committed`)."""
        return committed(self._db, lambda: self._confirm_totp(raw, interaction_id, code, device=device))

    def _confirm_totp(self, raw: str | None, interaction_id: str, code: str, *, device: str | None) -> Enrolled:
        pending = self._require(raw, interaction_id)
        if "totp" not in pending.enrollable:
            raise MfaUnavailable("An authenticator app cannot be set up for this sign-in.")
        self._count_attempt(pending)
        typed = "".join(code.split())
        now = self._clock()
        codes: tuple[str, ...] = ()
        with self._db.transaction() as conn:
            factor = next(
                (row for row in repo.factors(conn, pending.tenant_id, pending.user_id)
                 if row.kind == "totp" and row.confirmed_at is None),
                None,
            )  # fmt: skip
            if factor is None:
                raise MfaExpired("This setup expired. Reload the page to get a new key.")
            step = self._matching_step(factor, typed, now)
            accepted = step is not None and repo.use_step(conn, pending.tenant_id, factor.id, step, now, confirm=True)
            if accepted:
                codes = self._replace_backup_codes(conn, pending.tenant_id, pending.user_id, now)
                self._audit.write(
                    conn, Actor(tenant_id=pending.tenant_id, sub=pending.user_id), "mfa.enroll", target_type="user",
                    target_id=pending.user_id, tenant_id=pending.tenant_id, details={"factor": "totp"},
                )  # fmt: skip
                decision = self._start(conn, raw, interaction_id, pending, AMR_OTP, device=device, factor="totp")
        if not accepted:
            self._failed(raw, pending, "totp")
            raise MfaCodeRejected(
                "That code is not right. Enter the 6-digit code your authenticator app shows now for this account."
            )
        self._rate_limits.give_back(MFA_CODE, pending.tenant_id, "identifier", pending.user_id)
        return Enrolled(decision, codes)

    def new_backup_codes(self, tenant_id: str, user_id: str) -> tuple[str, ...]:
        """Ten new backup codes for the user (earlier ones stop working); shown once, stored as digests."""
        with self._db.transaction() as conn:
            return self._replace_backup_codes(conn, tenant_id, user_id, self._clock())

    # --- administration -----------------------------------------------------------------------------------------

    def factors(self, tenant_id: str, user_id: str) -> list[FactorInfo]:
        """The user's confirmed factors and backup codes (kinds and dates, never secrets)."""
        with self._db.read() as conn:
            return self.factors_in(conn, tenant_id, user_id)

    def factors_in(self, conn: Connection, tenant_id: str, user_id: str) -> list[FactorInfo]:
        infos = [
            FactorInfo(row.kind, as_utc(row.confirmed_at), as_utc(row.last_used_at) if row.last_used_at else None)
            for row in repo.factors(conn, tenant_id, user_id)
            if row.confirmed_at is not None
        ]
        for listing in self._factor_lists.values():
            infos.extend(listing(conn, tenant_id, user_id))
        codes = repo.backup_codes(conn, tenant_id, user_id)
        if codes:
            used = [as_utc(row.used_at) for row in codes if row.used_at is not None]
            infos.append(
                FactorInfo(
                    "backup_codes", min(as_utc(row.created_at) for row in codes), max(used) if used else None,
                    remaining=sum(1 for row in codes if row.used_at is None),
                )
            )  # fmt: skip
        return infos

    def reset(self, tenant_id: str, user_id: str, actor: Actor) -> int:
        """Remove every TOTP factor, passkey and backup code of the user (they enroll again at their next sign-in
        when the policy asks); returns how many factors were removed. Audited without secrets."""
        with self._db.transaction() as conn:
            if users_repo.get(conn, tenant_id, user_id) is None:
                raise UserNotFound(f"No user '{user_id[:64]}' in this tenant. Call listUsers to find the id.")
            removed = repo.delete_factors(conn, tenant_id, user_id)
            removed += sum(removal(conn, tenant_id, user_id) for removal in self._factor_removals.values())
            codes = repo.delete_backup_codes(conn, tenant_id, user_id)
            repo.delete_user_pending(conn, tenant_id, user_id)
            self._audit.write(
                conn, actor, "user.reset_mfa", target_type="user", target_id=user_id, tenant_id=tenant_id,
                details={"factors_removed": removed, "backup_codes_removed": codes},
            )  # fmt: skip
        return removed

    # --- helpers ------------------------------------------------------------------------------------------------

    def _read(self, conn: Connection, tenant_id: str, user_id: str) -> _Read:
        user = users_repo.get(conn, tenant_id, user_id)
        if user is None:
            raise MfaExpired("This account no longer exists.")
        factors = [row for row in repo.factors(conn, tenant_id, user_id) if row.confirmed_at is not None]
        unused = sum(1 for row in repo.backup_codes(conn, tenant_id, user_id) if row.used_at is None)
        return _Read(user, factors, unused)

    def _options(self, conn: Connection, policy: MfaPolicy, read: _Read, amr: tuple[str, ...]) -> Options:
        enrolled = {row.kind for row in read.factors}
        for kind, check in self._factor_checks.items():
            if check(conn, read.user.tenant_id, read.user.id):
                enrolled.add(kind)
        email_usable = self._experiences.email_connector and bool(read.user.email) and read.user.email_verified
        return options(policy, enrolled, backup_codes=read.backup_codes, email_usable=email_usable, first_amr=amr)

    def _pending_in(self, conn: Connection, raw: str | None, interaction_id: str) -> tuple[Any, _Read] | None:
        if not raw or len(raw) > 128 or not interaction_id or len(interaction_id) > 128:
            return None
        row = repo.get_pending(conn, digest(raw), self._clock())
        if row is None or not hmac.compare_digest(row.interaction_digest, digest(interaction_id)):
            return None
        if row.failures >= MAX_PENDING_FAILURES:
            return None
        user = users_repo.get(conn, row.tenant_id, row.user_id)
        if user is None or user.suspended:
            return None
        return row, self._read(conn, row.tenant_id, row.user_id)

    def _require(self, raw: str | None, interaction_id: str) -> PendingMfa:
        pending = self.pending(raw, interaction_id)
        if pending is None:
            raise MfaExpired("This sign-in expired or had too many wrong codes. Sign in again.")
        return pending

    def _count_attempt(self, pending: PendingMfa) -> None:
        exceeded = self._rate_limits.hit(
            MFA_CODE, pending.tenant_id, [Limit("identifier", pending.user_id, self._max_failures)], self._window
        )
        if exceeded is not None:
            self._audit.write_failure(
                Actor(tenant_id=pending.tenant_id, sub=pending.user_id), "mfa.verify", target_type="user",
                target_id=pending.user_id, tenant_id=pending.tenant_id, details={"error": "rate_limited"},
            )  # fmt: skip
            raise MfaThrottled(exceeded.message)

    def _failed(self, raw: str | None, pending: PendingMfa, factor: str) -> None:
        with self._db.transaction() as conn:
            if raw:
                repo.count_pending_failure(conn, digest(raw))
        self._audit.write_failure(
            Actor(tenant_id=pending.tenant_id, sub=pending.user_id), "mfa.verify", target_type="user",
            target_id=pending.user_id, tenant_id=pending.tenant_id, details={"factor": factor},
        )  # fmt: skip

    def _finish(
        self, raw: str | None, interaction_id: str, pending: PendingMfa, method: str, *, device: str | None,
        factor: str,
    ) -> MfaDecision:  # fmt: skip
        with self._db.transaction() as conn:
            return self._start(conn, raw, interaction_id, pending, method, device=device, factor=factor)

    def _start(
        self, conn: Connection, raw: str | None, interaction_id: str, pending: PendingMfa, method: str, *,
        device: str | None, factor: str,
    ) -> MfaDecision:  # fmt: skip
        """End the partial sign-in and start its session, in the caller's transaction."""
        assert raw is not None
        if not repo.delete_pending(conn, digest(raw)):  # used by a concurrent request: only one session from it
            raise MfaExpired("This sign-in was completed already. Start again from your app.")
        amr = with_second_factor(pending.amr, method)
        session = self._sessions.start_in(
            conn, pending.tenant_id, pending.user_id, device=device, amr=amr, acr=acr_of(amr)
        )
        self._audit.write(
            conn, Actor(tenant_id=pending.tenant_id, sub=pending.user_id), "mfa.verify", target_type="user",
            target_id=pending.user_id, tenant_id=pending.tenant_id, details={"factor": factor, "amr": list(amr)},
        )  # fmt: skip
        return MfaDecision("complete", amr, session=session)

    def _use_totp(self, conn: Connection, pending: PendingMfa, typed: str, now: datetime) -> bool:
        for row in repo.factors(conn, pending.tenant_id, pending.user_id):
            if row.kind != "totp" or row.confirmed_at is None:
                continue
            step = self._matching_step(row, typed, now)
            if step is not None and repo.use_step(conn, pending.tenant_id, row.id, step, now):
                return True
        return False

    def _matching_step(self, row: Any, typed: str, now: datetime) -> int | None:
        """The time step (now, one before or one after: valid_window=1) whose code is ``typed``, and which is later
        than the last accepted one; None otherwise."""
        if len(typed) != TOTP_DIGITS or not typed.isdigit():
            return None
        secret = unseal(self._key(), _TOTP_PURPOSE, row.secret or "", _binding(row.tenant_id, row.user_id, row.id))
        if secret is None:
            return None
        totp = _totp(secret)
        current = totp.timecode(now)
        for step in (current - 1, current, current + 1):
            # pyotp's own comparison: constant time, and the step is known so a used one can be refused.
            if pyotp.utils.strings_equal(typed, totp.generate_otp(step)):
                return step if row.last_step is None or step > row.last_step else None
        return None

    def _replace_backup_codes(self, conn: Connection, tenant_id: str, user_id: str, now: datetime) -> tuple[str, ...]:
        codes = tuple(_new_backup_code() for _ in range(BACKUP_CODES))
        repo.replace_backup_codes(conn, tenant_id, user_id, [_backup_digest(code) for code in codes], now)
        return codes

    def ensure_sealing_key(self) -> None:
        """Read (or make) the key TOTP secrets are sealed with, at start-up: see :meth:`_key`."""
        self._key()

    def _key(self) -> str:
        """The server-wide key TOTP secrets are sealed with, made on first use (replicas share it). Read once per
        process at start-up (:meth:`ensure_sealing_key`), before any use case: a key made inside a use case's
        transaction would be lost if it rolled back, while this process kept sealing with it."""
        if self._sealing_key is not None:
            return self._sealing_key
        with apart("the server's TOTP sealing key, read (or made) once per process"):
            stored = self._stored_key()
        self._sealing_key = stored
        return stored

    def _stored_key(self) -> str:
        return stored_or_made(self._db, self._clock, _TOTP_KEY, lambda: new_secret(32))


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_INTERVAL)


def _binding(tenant_id: str, user_id: str, factor_id: str) -> str:
    return f"{tenant_id}\n{user_id}\n{factor_id}"


def _new_backup_code() -> str:
    raw = secrets.token_hex(5)  # 40 bits: single use, and wrong guesses are rate limited
    return f"{raw[:5]}-{raw[5:]}"


def _backup_digest(code: str) -> str:
    return digest("".join(code.split()).replace("-", "").lower())


def masked(email: str) -> str:
    """An address as a page may show it to someone who only proved a password: 'a***@example.com'."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"
