"""Argon2id password hashing (OWASP parameters) and the password policy."""

from __future__ import annotations

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from idp_mcp.errors import WeakPassword

# OWASP password storage cheat sheet: Argon2id, m=19 MiB, t=2, p=1.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

MIN_LENGTH = 8
MAX_LENGTH = 256
# A small list of the most common passwords; long enough to stop the obvious, short enough to ship.
_COMMON = frozenset(
    {
        "password", "password1", "password123", "12345678", "123456789", "1234567890", "qwerty123",
        "qwertyuiop", "iloveyou", "11111111", "00000000", "abc12345", "letmein1", "welcome1",
        "admin123", "administrator", "passw0rd", "changeme", "sunshine", "football", "baseball",
    }
)  # fmt: skip


def check_policy(password: str, *, identifiers: tuple[str | None, ...] = ()) -> None:
    """Raise :class:`WeakPassword` with a sentence that says what to change."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"The password is too weak: use at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"The password is too long: use at most {MAX_LENGTH} characters.")
    lowered = password.lower()
    if lowered in _COMMON or len(set(password)) < 3:
        raise WeakPassword("The password is too weak: it is a common password; choose another.")
    for identifier in identifiers:
        # Very short identifiers (an email like o@x.io) would forbid ordinary letters; only check real words.
        if identifier and len(identifier) >= 4 and identifier.lower() in lowered:
            raise WeakPassword("The password is too weak: it must not contain your email or username.")


def hash_password_sync(password: str) -> str:
    return _hasher.hash(password)


def verify_password_sync(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        # Spend the same time as a real check so a missing account is not revealed by timing.
        _hasher.hash(password)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def hash_password(password: str) -> str:
    """Argon2id costs tens of milliseconds: run it in a worker thread, never on the event loop."""
    return await anyio.to_thread.run_sync(hash_password_sync, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    return await anyio.to_thread.run_sync(verify_password_sync, password_hash, password)
