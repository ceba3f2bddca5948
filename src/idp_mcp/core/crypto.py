"""Random secrets and their digests. Thin wrappers over the standard library, not new cryptography."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random string with ``nbytes`` of entropy."""
    return secrets.token_urlsafe(nbytes)


def new_id(nbytes: int = 12) -> str:
    """A short random identifier (not a secret, but unguessable)."""
    return secrets.token_hex(nbytes)


def digest(value: str) -> str:
    """SHA-256 hex digest: how codes, tokens, session ids and client secrets are stored."""
    return hashlib.sha256(value.encode()).hexdigest()


def digests_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
