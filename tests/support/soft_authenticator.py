"""A software WebAuthn authenticator for tests: a real P-256 key (``cryptography``) that answers registration and
authentication options the way a browser and an authenticator would, with knobs to answer wrongly (another origin,
RP id, challenge, or a sign count that goes backwards). CBOR through py_webauthn's own encoder."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.encode_cbor import encode_cbor

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def _b64(data: bytes) -> str:
    return bytes_to_base64url(data)


@dataclass
class SoftAuthenticator:
    rp_id: str
    origin: str
    credential_id: bytes = field(default_factory=lambda: os.urandom(16))
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    sign_count: int = 0
    user_handle: bytes | None = None
    backed_up: bool = False
    user_verified: bool = True

    def _flags(self, extra: int = 0) -> int:
        flags = UP | extra
        if self.user_verified:
            flags |= UV
        if self.backed_up:
            flags |= BE | BS
        return flags

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return encode_cbor({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin or self.origin, "crossOrigin": False}
        ).encode()

    def register(
        self, options_json: str, *, origin: str | None = None, rp_id: str | None = None,
        challenge: str | None = None,
    ) -> str:  # fmt: skip
        """The browser's JSON answer to ``navigator.credentials.create(options)``."""
        options = json.loads(options_json)
        self.user_handle = base64url_to_bytes(options["user"]["id"])
        rp_hash = hashlib.sha256((rp_id or self.rp_id).encode()).digest()
        attested = bytes(16) + struct.pack(">H", len(self.credential_id)) + self.credential_id + self._cose_key()
        auth_data = rp_hash + bytes([self._flags(AT)]) + struct.pack(">I", self.sign_count) + attested
        attestation = encode_cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", challenge or options["challenge"], origin)
        return json.dumps(
            {
                "id": _b64(self.credential_id), "rawId": _b64(self.credential_id), "type": "public-key",
                "response": {
                    "clientDataJSON": _b64(client_data), "attestationObject": _b64(attestation),
                    "transports": ["internal"],
                },
                "clientExtensionResults": {},
            }
        )  # fmt: skip

    def authenticate(
        self, options_json: str, *, origin: str | None = None, rp_id: str | None = None,
        challenge: str | None = None, sign_count: int | None = None,
    ) -> str:  # fmt: skip
        """The browser's JSON answer to ``navigator.credentials.get(options)``; each use moves the count on by one
        unless ``sign_count`` says what to report."""
        options = json.loads(options_json)
        if sign_count is None:
            self.sign_count += 1
            sign_count = self.sign_count
        rp_hash = hashlib.sha256((rp_id or self.rp_id).encode()).digest()
        auth_data = rp_hash + bytes([self._flags()]) + struct.pack(">I", sign_count)
        client_data = self._client_data("webauthn.get", challenge or options["challenge"], origin)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        response: dict[str, Any] = {
            "clientDataJSON": _b64(client_data), "authenticatorData": _b64(auth_data), "signature": _b64(signature),
        }  # fmt: skip
        if self.user_handle is not None:
            response["userHandle"] = _b64(self.user_handle)
        return json.dumps(
            {
                "id": _b64(self.credential_id), "rawId": _b64(self.credential_id), "type": "public-key",
                "response": response, "clientExtensionResults": {},
            }
        )  # fmt: skip
