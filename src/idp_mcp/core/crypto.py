"""Random secrets, their digests, and sealing a value for one reader. Thin wrappers over the standard library and
``cryptography`` (HKDF, AES-GCM), not new cryptography."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


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


def _sealing_key(key_material: str, purpose: str) -> bytes:
    # The key material is a random session id (32 bytes of entropy): HKDF turns it into an AES key for one purpose.
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=purpose.encode()).derive(key_material.encode())


def seal(key_material: str, purpose: str, plaintext: str, bound_to: str) -> str:
    """``plaintext`` encrypted (AES-256-GCM) under a key derived from ``key_material``, authenticated together with
    ``bound_to`` (so a sealed value cannot be moved to another record). URL-safe base64 of nonce + ciphertext."""
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_sealing_key(key_material, purpose)).encrypt(nonce, plaintext.encode(), bound_to.encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(key_material: str, purpose: str, sealed: str, bound_to: str) -> str | None:
    """The plaintext of :func:`seal`, or None when the key, the binding or the data is not the one sealed."""
    try:
        raw = base64.urlsafe_b64decode(sealed.encode())
        plain = AESGCM(_sealing_key(key_material, purpose)).decrypt(raw[:12], raw[12:], bound_to.encode())
    except (InvalidTag, ValueError):
        return None
    return plain.decode()
