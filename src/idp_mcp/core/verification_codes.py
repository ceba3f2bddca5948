"""One-time codes sent by email: six digits, ten minutes, single use, stored as SHA-256 digests.

Limits: at most ``MAX_SENDS`` codes per address in ``SEND_WINDOW`` (whatever they are for), and ``MAX_ATTEMPTS``
wrong guesses per code; a new code replaces the earlier ones. A row is written for every send, whether or not an
email goes out, so the limits (and the time a request takes) do not depend on whether the address has an account.
The code itself is never stored, logged or audited.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from idp_mcp.core.audit import AuditLog
from idp_mcp.core.crypto import digest, digests_equal, new_id
from idp_mcp.domain import Actor, Clock, as_utc
from idp_mcp.errors import IdpError
from idp_mcp.store.db import Database
from idp_mcp.store.repos import verification_codes as repo

Purpose = Literal["sign_in", "sign_up", "mfa"]  # mfa: a second factor sent to a proven address
CODE_TTL = timedelta(minutes=10)
SEND_WINDOW = timedelta(minutes=15)
MAX_SENDS = 5
MAX_ATTEMPTS = 5
# How long a pending step (a sign-up waiting for its code) may ask for a new code.
PENDING_TTL = timedelta(hours=1)
_KEEP = timedelta(days=1)
_SIX_DIGITS = re.compile(r"^[0-9]{6}$")


class TooManyCodes(IdpError):
    code = "verification_code.rate_limited"
    status = 429


class CodeRejected(IdpError):
    code = "verification_code.invalid"


@dataclass(frozen=True)
class IssuedCode:
    code: str  # goes into the email only
    expires_at: datetime


@dataclass(frozen=True)
class VerifiedCode:
    identifier: str
    payload: dict[str, Any]


def _digest(code_id: str, code: str) -> str:
    # The row id is mixed in so two rows with the same code never share a digest.
    return digest(f"{code_id}:{code}")


class VerificationCodes:
    def __init__(self, db: Database, clock: Clock, audit: AuditLog) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit

    def issue(
        self, tenant_id: str, purpose: Purpose, identifier: str, *, payload: dict[str, Any] | None = None
    ) -> IssuedCode:
        """A new code for ``identifier`` (earlier ones stop working), or :class:`TooManyCodes`."""
        now = self._clock()
        actor = Actor(tenant_id=tenant_id, sub=None)
        with self._db.transaction() as conn:
            repo.purge_before(conn, now - _KEEP)
            limited = repo.count_sent_since(conn, tenant_id, identifier, now - SEND_WINDOW) >= MAX_SENDS
            if not limited:
                code = f"{secrets.randbelow(10**6):06d}"
                code_id = new_id(12)
                repo.retire_open(conn, tenant_id, purpose, identifier, now)
                repo.insert_code(
                    conn,
                    {
                        "id": code_id, "tenant_id": tenant_id, "purpose": purpose, "identifier": identifier,
                        "digest": _digest(code_id, code), "payload": payload or {}, "attempts": 0,
                        "created_at": now, "expires_at": now + CODE_TTL, "consumed_at": None,
                    },
                )  # fmt: skip
                self._audit.write(
                    conn, actor, "verification_code.send", target_type="email", target_id=identifier,
                    tenant_id=tenant_id, details={"purpose": purpose},
                )  # fmt: skip
        if limited:
            self._audit.write_failure(
                actor, "verification_code.send", target_type="email", target_id=identifier, tenant_id=tenant_id,
                details={"purpose": purpose, "error": TooManyCodes.code},
            )  # fmt: skip
            minutes = int(SEND_WINDOW.total_seconds() // 60)
            raise TooManyCodes(f"Too many codes were asked for this address. Wait {minutes} minutes, then ask again.")
        return IssuedCode(code, now + CODE_TTL)

    def verify(self, tenant_id: str, purpose: Purpose, identifier: str, code: str) -> VerifiedCode:
        """Use the latest code sent to ``identifier``: it works once, before it expires, within its attempts."""
        now = self._clock()
        typed = "".join(code.split())
        actor = Actor(tenant_id=tenant_id, sub=None)
        failure: tuple[str, str] | None = None
        with self._db.transaction() as conn:
            row = repo.latest(conn, tenant_id, purpose, identifier)
            if row is None or row.consumed_at is not None or as_utc(row.expires_at) <= now:
                failure = ("expired", "This code expired or was already used. Ask for a new code.")
            elif row.attempts >= MAX_ATTEMPTS:
                failure = ("too_many_attempts", "Too many wrong codes were entered. Ask for a new code.")
            elif not (_SIX_DIGITS.match(typed) and digests_equal(_digest(row.id, typed), row.digest)):
                repo.count_attempt(conn, row.id, MAX_ATTEMPTS)
                left = MAX_ATTEMPTS - row.attempts - 1
                failure = (
                    "wrong",
                    f"That code is not right. Check the latest email and try again ({left} attempts left)."
                    if left
                    else "That code is not right, and that was the last attempt. Ask for a new code.",
                )
            elif not repo.consume(conn, row.id, now):
                failure = ("expired", "This code expired or was already used. Ask for a new code.")
            else:
                self._audit.write(
                    conn, actor, "verification_code.verify", target_type="email", target_id=identifier,
                    tenant_id=tenant_id, details={"purpose": purpose},
                )  # fmt: skip
                verified = VerifiedCode(identifier, dict(row.payload or {}))
        if failure is not None:
            # The wrong attempt was counted in the transaction above, which committed.
            self._audit.write_failure(
                actor, "verification_code.verify", target_type="email", target_id=identifier, tenant_id=tenant_id,
                details={"purpose": purpose, "reason": failure[0]},
            )  # fmt: skip
            raise CodeRejected(failure[1])
        return verified

    def pending_payload(self, tenant_id: str, purpose: Purpose, identifier: str) -> dict[str, Any] | None:
        """What the latest code for ``identifier`` was confirming, while a new code may still be asked for it."""
        with self._db.read() as conn:
            row = repo.latest(conn, tenant_id, purpose, identifier)
        if row is None or as_utc(row.created_at) <= self._clock() - PENDING_TTL:
            return None
        return dict(row.payload or {})
