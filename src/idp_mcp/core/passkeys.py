"""Passkeys (WebAuthn): registering one for a signed-in user, and signing in with one, as the only factor
(passwordless, a discoverable credential) or after a password (second factor).

The ceremonies are py_webauthn's (``webauthn``): it parses the browser's answer and checks the signature, the
challenge, the origin, the RP id and the sign count. Before calling it, the answer's client data and authenticator
data are read with the same library's parsers so that each refusal can say in a sentence what was wrong.

Challenges are single use and stored server-side (``webauthn_challenges``), bound to the tenant, the purpose and the
browser's pending interaction, so any replica can check an answer and none can be answered twice. The RP id is the
host of ``PUBLIC_URL`` and the expected origin is its origin: a passkey made for another site does not work here.

amr (RFC 8176) of a passkey sign-in: ``hwk`` for a device-bound credential, ``swk`` for a synced (backed-up) one,
``user`` (the authenticator tested the user's presence, always required) and, when the authenticator verified the
user (PIN, biometrics), ``mfa``: something the user has and something they know or are.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    parse_attestation_object,
    parse_authentication_credential_json,
    parse_authenticator_data,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    ClientDataType,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from idp_mcp.core.audit import AuditLog
from idp_mcp.core.crypto import digest, new_id
from idp_mcp.core.mfa import FactorInfo
from idp_mcp.core.sign_in_experience import SignInExperiences
from idp_mcp.domain import Actor, Clock, User, as_utc
from idp_mcp.errors import Forbidden, IdpError, UserNotFound, UserSuspended
from idp_mcp.store.db import Database
from idp_mcp.store.repos import passkeys as repo
from idp_mcp.store.repos import users as users_repo

Purpose = Literal["register", "authenticate"]
CHALLENGE_TTL = timedelta(minutes=5)
CEREMONY_TIMEOUT_MS = 120_000
MAX_RESPONSE = 16_384  # a browser's answer is a few kB; anything bigger is not one
MAX_NAME = 64
# Errors the library's parsers raise on input that is not a WebAuthn answer (bad base64, CBOR, JSON, shapes).
_MALFORMED = (WebAuthnException, ValueError, TypeError, KeyError, IndexError, AttributeError)


class PasskeyRejected(IdpError):
    """The browser's answer was refused; nothing was stored."""

    code = "passkey.rejected"


class PasskeyExpired(PasskeyRejected):
    code = "passkey.expired"


class PasskeyMalformed(PasskeyRejected):
    code = "passkey.malformed"


class PasskeyUnknown(PasskeyRejected):
    code = "passkey.unknown_credential"


class PasskeyCloned(PasskeyRejected):
    code = "passkey.sign_count"


class PasskeyNotOffered(Forbidden):
    """Passwordless sign-in while the tenant does not let a passkey be the first factor."""

    code = "sign_in.method_not_offered"


class PasskeyAlreadyRegistered(PasskeyRejected):
    code = "passkey.already_registered"
    status = 409


EXPIRED = "This passkey request expired or was already used. Try again."
MALFORMED = "The browser's passkey answer could not be read. Try again."
NOT_OFFERED = "Signing in with a passkey is not offered here. Use another way to sign in."
NOT_VERIFIED = "The passkey's answer could not be verified. Try again, or sign in another way."


@dataclass(frozen=True)
class Passkey:
    """A registered passkey, as the user and the administrator see it (no key material)."""

    id: str
    user_id: str
    name: str
    device_type: str  # "single_device" or "multi_device"
    backed_up: bool
    aaguid: str
    transports: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True)
class PasskeySignIn:
    """A user who proved who they are with a passkey, and how (amr values for the session and ID token)."""

    user: User
    passkey: Passkey
    amr: tuple[str, ...]
    user_verified: bool


def passkey_first(experience: object) -> bool:
    """Whether the tenant lets a passkey be the first factor (``mfa.passkeyFirst`` of its sign-in experience).
    Read defensively: the MFA policy is a separate part of the experience, absent on older documents."""
    return bool(getattr(getattr(experience, "mfa", None), "passkey_first", False))


def amr_for(*, backed_up: bool, user_verified: bool) -> tuple[str, ...]:
    """RFC 8176 values of one passkey use (see the module's docstring)."""
    return ("swk" if backed_up else "hwk", "user", *(("mfa",) if user_verified else ()))


class Passkeys:
    def __init__(
        self, db: Database, clock: Clock, audit: AuditLog, experiences: SignInExperiences, *, public_url: str,
        rp_name: str = "idp-mcp",
    ) -> None:  # fmt: skip
        self._db = db
        self._experiences = experiences
        self._clock = clock
        self._audit = audit
        parts = urlsplit(public_url)
        self.rp_id = parts.hostname or "localhost"
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._rp_name = rp_name

    # --- reads ----------------------------------------------------------------------------------------------

    def of_user(self, tenant_id: str, user_id: str) -> list[Passkey]:
        """The user's passkeys, oldest first."""
        with self._db.read() as conn:
            return self.list_in(conn, tenant_id, user_id)

    def list_in(self, conn: Connection, tenant_id: str, user_id: str) -> list[Passkey]:
        return [_passkey(row) for row in repo.for_user(conn, tenant_id, user_id)]

    def offer_after_sign_in(self, tenant_id: str, user_id: str) -> bool:
        """Whether to offer a passkey to a user who just signed in: the tenant lets passkeys be the first factor and
        the user has none yet. Only under the MFA policy ``off``: under ``optional`` and ``required`` the MFA
        enrollment page offers passkeys already (core.mfa), and one offer is enough. One read transaction."""
        with self._db.read() as conn:
            experience = self._experiences.get_in(conn, tenant_id)
            if not passkey_first(experience) or experience.mfa.policy != "off":
                return False
            return not repo.for_user(conn, tenant_id, user_id)

    def has_any_in(self, conn: Connection, tenant_id: str, user_id: str) -> bool:
        """Whether the user has a passkey (so it counts as an enrolled second factor), in the caller's transaction."""
        return bool(repo.for_user(conn, tenant_id, user_id))

    def factors_in(self, conn: Connection, tenant_id: str, user_id: str) -> list[FactorInfo]:
        """The user's passkeys as enrolled factors (for getUser), in the caller's transaction."""
        return [FactorInfo("passkey", as_utc(p.created_at), as_utc(p.last_used_at) if p.last_used_at else None)
                for p in self.list_in(conn, tenant_id, user_id)]  # fmt: skip

    def remove_all_in(self, conn: Connection, tenant_id: str, user_id: str) -> int:
        """Delete the user's passkeys in the caller's transaction (resetting a user's factors); how many."""
        return repo.delete_for_user(conn, tenant_id, user_id)

    # --- registration ---------------------------------------------------------------------------------------

    def registration_options(self, tenant_id: str, user_id: str, interaction_id: str) -> str:
        """The JSON options for ``navigator.credentials.create()`` for a signed-in user: a discoverable credential
        (so it can sign in without a password), the user's existing passkeys excluded (one per authenticator)."""
        now = self._clock()
        with self._db.transaction() as conn:
            user = users_repo.get(conn, tenant_id, user_id)
            if user is None:
                raise UserNotFound("This account no longer exists.")
            existing = repo.for_user(conn, tenant_id, user_id)
            options = generate_registration_options(
                rp_id=self.rp_id,
                rp_name=self._rp_name,
                user_id=user.id.encode(),  # the user handle: an opaque id, no personal data
                user_name=user.email or user.username or user.id,
                user_display_name=user.name or user.email or user.username or "",
                timeout=CEREMONY_TIMEOUT_MS,
                authenticator_selection=AuthenticatorSelectionCriteria(
                    resident_key=ResidentKeyRequirement.REQUIRED,
                    # Preferred, not required: a security key without a PIN still makes a good second factor;
                    # passwordless sign-in requires verification when it is used (see authentication_options).
                    user_verification=UserVerificationRequirement.PREFERRED,
                ),
                exclude_credentials=[_descriptor(row) for row in existing],
            )
            self._store_challenge(conn, tenant_id, "register", interaction_id, user_id, options.challenge, now)
        return options_to_json(options)

    def register(
        self, tenant_id: str, user_id: str, interaction_id: str, response: str, name: str | None = None
    ) -> Passkey:
        """Verify the browser's answer to the registration options and store the passkey. The challenge is used up
        whether or not the answer is good; a refused answer stores nothing."""
        now = self._clock()
        actor = Actor(tenant_id=tenant_id, sub=user_id)
        failure: PasskeyRejected | None = None
        with self._db.transaction() as conn:
            challenge = repo.take_challenge(conn, tenant_id, "register", digest(interaction_id), now)
            try:
                if challenge is None or challenge.user_id != user_id:
                    raise PasskeyExpired(EXPIRED)
                credential = _parse_registration(response)
                try:
                    auth_data = parse_attestation_object(credential.response.attestation_object).auth_data
                except _MALFORMED:
                    raise PasskeyMalformed(MALFORMED) from None
                self._precheck(
                    credential.response.client_data_json, ClientDataType.WEBAUTHN_CREATE, challenge.challenge, auth_data
                )
                try:
                    verified = verify_registration_response(
                        credential=credential,
                        expected_challenge=base64url_to_bytes(challenge.challenge),
                        expected_rp_id=self.rp_id,
                        expected_origin=self.origin,
                    )
                except _MALFORMED:
                    raise PasskeyRejected(NOT_VERIFIED) from None
                credential_id = bytes_to_base64url(verified.credential_id)
                if users_repo.get(conn, tenant_id, user_id) is None:  # deleted since the options were given
                    raise PasskeyRejected("This account no longer exists.")
                if repo.credential_taken(conn, tenant_id, credential_id):
                    raise PasskeyAlreadyRegistered("This passkey is registered here already.")
                values = {
                    "tenant_id": tenant_id, "id": new_id(12), "user_id": user_id, "credential_id": credential_id,
                    "public_key": bytes_to_base64url(verified.credential_public_key),
                    "sign_count": verified.sign_count,
                    "transports": [t.value for t in credential.response.transports or []],
                    "device_type": verified.credential_device_type.value, "backed_up": verified.credential_backed_up,
                    "aaguid": verified.aaguid, "name": _name(name, now), "created_at": now, "last_used_at": None,
                }  # fmt: skip
                try:
                    with conn.begin_nested():  # a credential registered at the same moment elsewhere
                        repo.insert_passkey(conn, values)
                except IntegrityError:
                    raise PasskeyAlreadyRegistered("This passkey is registered here already.") from None
                self._audit.write(
                    conn, actor, "passkey.register", target_type="user", target_id=user_id,
                    details={"passkey": values["id"], "deviceType": values["device_type"]},
                )  # fmt: skip
            except PasskeyRejected as exc:
                failure = exc  # leave the transaction normally: the challenge stays used up
        if failure is not None:
            self._audit.write_failure(
                actor, "passkey.register", target_type="user", target_id=user_id, details={"error": failure.code}
            )
            raise failure
        return _passkey(values)

    # --- authentication -------------------------------------------------------------------------------------

    def authentication_options(self, tenant_id: str, interaction_id: str, user_id: str | None = None) -> str:
        """The JSON options for ``navigator.credentials.get()``.

        ``user_id`` None: passwordless, any discoverable passkey of this site may answer (allowCredentials empty)
        and the authenticator must verify the user, since the passkey is the only factor. With ``user_id`` (a
        second factor after a password): only that user's passkeys, verification preferred."""
        now = self._clock()
        with self._db.transaction() as conn:
            if user_id is None and not passkey_first(self._experiences.get_in(conn, tenant_id)):
                raise PasskeyNotOffered(NOT_OFFERED)
            allowed = [_descriptor(row) for row in repo.for_user(conn, tenant_id, user_id)] if user_id else []
            options = generate_authentication_options(
                rp_id=self.rp_id,
                timeout=CEREMONY_TIMEOUT_MS,
                allow_credentials=allowed,
                user_verification=(
                    UserVerificationRequirement.PREFERRED if user_id else UserVerificationRequirement.REQUIRED
                ),
            )
            self._store_challenge(conn, tenant_id, "authenticate", interaction_id, user_id, options.challenge, now)
        return options_to_json(options)

    def authenticate(
        self, tenant_id: str, interaction_id: str, response: str, user_id: str | None = None
    ) -> PasskeySignIn:
        """Verify the browser's answer to the authentication options: the passkey must be one of THIS tenant's, of
        the user the options were for (second factor), with a sign count that moved on. Then the sign-in is
        recorded (audit row, last use, the new count) in the same transaction.

        ``user_id``: the user who must answer (a second factor), None for passwordless. The options must have been
        made for the same: an answer to passwordless options cannot complete someone's second factor."""
        now = self._clock()
        actor = Actor(tenant_id=tenant_id, sub=None)
        failure: IdpError | None = None
        with self._db.transaction() as conn:
            challenge = repo.take_challenge(conn, tenant_id, "authenticate", digest(interaction_id), now)
            try:
                if user_id is None and not passkey_first(self._experiences.get_in(conn, tenant_id)):
                    raise PasskeyNotOffered(NOT_OFFERED)  # turned off since the options were given
                if challenge is None or challenge.user_id != user_id:
                    raise PasskeyExpired(EXPIRED)
                credential = _parse_authentication(response)
                row = repo.by_credential(conn, tenant_id, credential.id, for_update=True)
                if row is None or (challenge.user_id is not None and row.user_id != challenge.user_id):
                    raise PasskeyUnknown("This passkey is not registered for this account here. Use another one.")
                actor = Actor(tenant_id=tenant_id, sub=row.user_id)
                # A discoverable credential names its user: it must be the one the passkey was registered for.
                handle = credential.response.user_handle
                if handle is not None and handle != row.user_id.encode():
                    raise PasskeyUnknown("This passkey is not registered for this account here. Use another one.")
                try:
                    auth_data = parse_authenticator_data(credential.response.authenticator_data)
                except _MALFORMED:
                    raise PasskeyMalformed(MALFORMED) from None
                self._precheck(
                    credential.response.client_data_json, ClientDataType.WEBAUTHN_GET, challenge.challenge, auth_data
                )
                if (auth_data.sign_count or row.sign_count) and auth_data.sign_count <= row.sign_count:
                    raise PasskeyCloned(
                        "This passkey's signature counter went backwards, which a copied authenticator does. "
                        "Sign in another way and remove this passkey."
                    )
                passwordless = challenge.user_id is None
                try:
                    verified = verify_authentication_response(
                        credential=credential,
                        expected_challenge=base64url_to_bytes(challenge.challenge),
                        expected_rp_id=self.rp_id,
                        expected_origin=self.origin,
                        credential_public_key=base64url_to_bytes(row.public_key),
                        credential_current_sign_count=row.sign_count,
                        require_user_verification=passwordless,
                    )
                except _MALFORMED:
                    raise PasskeyRejected(NOT_VERIFIED) from None
                user = users_repo.get(conn, tenant_id, row.user_id)
                if user is None:
                    raise PasskeyUnknown("This passkey is not registered for this account here. Use another one.")
                if user.suspended:
                    raise UserSuspended("This account is suspended. Ask an administrator to reactivate it.")
                if not repo.record_use(
                    conn, tenant_id, row.id, old_count=row.sign_count, new_count=verified.new_sign_count,
                    backed_up=verified.credential_backed_up, now=now,
                ):  # fmt: skip
                    raise PasskeyCloned("This passkey was used at the same moment elsewhere. Try again.")
                users_repo.touch_sign_in(conn, tenant_id, user.id, now)
                amr = amr_for(backed_up=verified.credential_backed_up, user_verified=verified.user_verified)
                # As the only factor it is the sign-in; as a second factor core.mfa starts the session (and audits it).
                self._audit.write(
                    conn, actor, "session.sign_in" if passwordless else "passkey.verify", target_type="user",
                    target_id=user.id, details={"method": "passkey", "passkey": row.id, "amr": list(amr)},
                )  # fmt: skip
            except (PasskeyRejected, PasskeyNotOffered, UserSuspended) as exc:
                failure = exc
        if failure is not None:
            action = "passkey.verify" if challenge is not None and challenge.user_id is not None else "session.sign_in"
            self._audit.write_failure(
                actor, action, target_type="user", target_id=actor.sub,
                details={"method": "passkey", "error": failure.code},
            )  # fmt: skip
            raise failure
        assert user is not None  # checked in the transaction
        used = {**row._mapping, "backed_up": verified.credential_backed_up, "last_used_at": now}
        return PasskeySignIn(user, _passkey(used), amr, verified.user_verified)

    # --- helpers --------------------------------------------------------------------------------------------

    def _store_challenge(
        self, conn: Connection, tenant_id: str, purpose: Purpose, interaction_id: str, user_id: str | None,
        challenge: bytes, now: datetime,
    ) -> None:  # fmt: skip
        repo.purge_challenges(conn, now)
        repo.replace_challenge(
            conn,
            {
                "id": new_id(12), "tenant_id": tenant_id, "purpose": purpose,
                "interaction_digest": digest(interaction_id), "user_id": user_id,
                "challenge": bytes_to_base64url(challenge), "created_at": now, "expires_at": now + CHALLENGE_TTL,
            },
        )  # fmt: skip

    def _precheck(self, client_data_json: bytes, kind: ClientDataType, challenge: str, auth_data: Any) -> None:
        """The checks whose failure the person should hear about in words (the library repeats them all)."""
        try:
            client_data = parse_client_data_json(client_data_json)
        except _MALFORMED:
            raise PasskeyMalformed(MALFORMED) from None
        if client_data.type != kind:
            raise PasskeyMalformed(MALFORMED)
        if bytes_to_base64url(client_data.challenge) != challenge:
            raise PasskeyExpired("This passkey answer was for another request. Try again.")
        if client_data.origin != self.origin:
            raise PasskeyRejected(
                f"This passkey answer came from another site ({client_data.origin[:100]}), not {self.origin}."
            )
        if auth_data.rp_id_hash != hashlib.sha256(self.rp_id.encode()).digest():
            raise PasskeyRejected(f"This passkey was made for another site, not {self.rp_id}.")


def _parse_registration(response: str) -> RegistrationCredential:
    try:
        return parse_registration_credential_json(_json_object(response))
    except _MALFORMED:
        raise PasskeyMalformed(MALFORMED) from None


def _parse_authentication(response: str) -> AuthenticationCredential:
    try:
        return parse_authentication_credential_json(_json_object(response))
    except _MALFORMED:
        raise PasskeyMalformed(MALFORMED) from None


def _json_object(response: str) -> dict[str, Any]:
    if not response or len(response) > MAX_RESPONSE:
        raise PasskeyMalformed(MALFORMED)
    try:
        value = json.loads(response)
    except ValueError:
        raise PasskeyMalformed(MALFORMED) from None
    if not isinstance(value, dict):
        raise PasskeyMalformed(MALFORMED)
    return value


def _descriptor(row: Any) -> PublicKeyCredentialDescriptor:
    transports = []
    for value in row.transports or []:
        try:
            transports.append(AuthenticatorTransport(value))
        except ValueError:
            continue  # a transport this library version does not know: the browser finds the key anyway
    return PublicKeyCredentialDescriptor(id=base64url_to_bytes(row.credential_id), transports=transports or None)


def _name(name: str | None, now: datetime) -> str:
    cleaned = " ".join((name or "").split())[:MAX_NAME]
    return cleaned or f"Passkey added {now:%Y-%m-%d}"


def _passkey(row: Any) -> Passkey:
    values = row if isinstance(row, dict) else dict(row._mapping)
    return Passkey(
        id=values["id"],
        user_id=values["user_id"],
        name=values["name"],
        device_type=values["device_type"],
        backed_up=bool(values["backed_up"]),
        aaguid=values["aaguid"],
        transports=tuple(values["transports"] or ()),
        created_at=values["created_at"],
        last_used_at=values["last_used_at"],
    )
