"""Passkey ceremonies in the core, answered by a software authenticator with a real P-256 key: registration and
sign-in work, and each bad answer (malformed, wrong challenge, origin or RP id, a sign count going backwards, a
replayed challenge, another tenant's passkey) is refused with a clear sentence and stores nothing."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.passkeys import CHALLENGE_TTL, PasskeyNotOffered, PasskeyRejected, amr_for
from idp_mcp.domain import DEFAULT_TENANT_ID, Actor, User
from idp_mcp.errors import UserSuspended
from tests.support.clock import Clock
from tests.support.live_server import ADMIN_EMAIL
from tests.support.soft_authenticator import SoftAuthenticator

TENANT = DEFAULT_TENANT_ID
INTERACTION = "interaction-raw-id-1"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")


def _allow_passkey_first(core: IdentityCore, tenant: str = TENANT) -> None:
    core.sign_in_experiences.update_mfa(tenant, {"factors": ["passkey"], "passkeyFirst": True}, ACTOR)


@pytest.fixture(autouse=True)
def _passkey_first(core: IdentityCore) -> None:
    _allow_passkey_first(core)


def _user(core: IdentityCore, tenant: str = TENANT, email: str = "bob@example.com") -> User:
    return core.tenant_users.register(tenant, email=email, username=None, password_hash=None, actor=ACTOR)


def _authenticator(core: IdentityCore) -> SoftAuthenticator:
    return SoftAuthenticator(rp_id=core.passkeys.rp_id, origin=core.passkeys.origin)


def _registered(core: IdentityCore, user: User, tenant: str = TENANT) -> SoftAuthenticator:
    authenticator = _authenticator(core)
    options = core.passkeys.registration_options(tenant, user.id, INTERACTION)
    core.passkeys.register(tenant, user.id, INTERACTION, authenticator.register(options), "My laptop")
    return authenticator


def _refused(code: str, message_part: str, call: Callable[..., object], *args: object) -> None:
    with pytest.raises(PasskeyRejected) as raised:
        call(*args)
    assert raised.value.code == code, raised.value.message
    assert message_part in raised.value.message
    assert raised.value.status < 500


def test_rp_id_and_origin_come_from_the_public_url(core: IdentityCore) -> None:
    assert core.passkeys.rp_id == "127.0.0.1"
    assert core.passkeys.origin == "http://127.0.0.1:8000"


def test_registration_options_ask_for_a_discoverable_credential_and_exclude_existing_ones(
    core: IdentityCore,
) -> None:
    user = _user(core)
    first = json.loads(core.passkeys.registration_options(TENANT, user.id, INTERACTION))
    assert first["authenticatorSelection"]["residentKey"] == "required"
    assert first["rp"]["id"] == "127.0.0.1"
    assert first["excludeCredentials"] == []
    authenticator = _registered(core, user)
    second = json.loads(core.passkeys.registration_options(TENANT, user.id, INTERACTION))
    assert [c["id"] for c in second["excludeCredentials"]] == [_b64(authenticator.credential_id)]


def _b64(data: bytes) -> str:
    from webauthn.helpers import bytes_to_base64url

    return bytes_to_base64url(data)


def test_a_registered_passkey_signs_in_without_a_password(core: IdentityCore) -> None:
    user = _user(core)
    authenticator = _registered(core, user)
    [passkey] = core.passkeys.of_user(TENANT, user.id)
    assert passkey.name == "My laptop" and passkey.device_type == "single_device" and not passkey.backed_up

    options = json.loads(core.passkeys.authentication_options(TENANT, INTERACTION))
    assert options["allowCredentials"] == [] and options["userVerification"] == "required"
    signed_in = core.passkeys.authenticate(TENANT, INTERACTION, authenticator.authenticate(json.dumps(options)))
    assert signed_in.user.id == user.id
    assert signed_in.amr == ("hwk", "user", "mfa")
    assert core.passkeys.of_user(TENANT, user.id)[0].last_used_at is not None
    actions = [(e.action, e.outcome) for e in core.audit.recent(TENANT)]
    assert ("passkey.register", "success") in actions and ("session.sign_in", "success") in actions


def test_amr_tells_a_synced_passkey_and_an_unverified_user() -> None:
    assert amr_for(backed_up=True, user_verified=True) == ("swk", "user", "mfa")
    assert amr_for(backed_up=False, user_verified=False) == ("hwk", "user")


def test_a_synced_passkey_signs_in_with_swk(core: IdentityCore) -> None:
    user = _user(core)
    authenticator = _authenticator(core)
    authenticator.backed_up = True
    options = core.passkeys.registration_options(TENANT, user.id, INTERACTION)
    passkey = core.passkeys.register(TENANT, user.id, INTERACTION, authenticator.register(options))
    assert passkey.backed_up and passkey.device_type == "multi_device" and passkey.name.startswith("Passkey added")
    answer = authenticator.authenticate(core.passkeys.authentication_options(TENANT, INTERACTION))
    assert core.passkeys.authenticate(TENANT, INTERACTION, answer).amr[0] == "swk"


def test_as_a_second_factor_only_the_users_own_passkeys_are_allowed(core: IdentityCore) -> None:
    bob, eve = _user(core), _user(core, email="eve@example.com")
    bobs = _registered(core, bob)
    eves = _registered(core, eve)
    options = json.loads(core.passkeys.authentication_options(TENANT, INTERACTION, user_id=bob.id))
    assert [c["id"] for c in options["allowCredentials"]] == [_b64(bobs.credential_id)]
    assert options["userVerification"] == "preferred"
    answer = eves.authenticate(json.dumps(options))
    _refused("passkey.unknown_credential", "not registered for this account", core.passkeys.authenticate, TENANT,
             INTERACTION, answer, bob.id)  # fmt: skip
    options_json = core.passkeys.authentication_options(TENANT, INTERACTION, user_id=bob.id)
    assert core.passkeys.authenticate(TENANT, INTERACTION, bobs.authenticate(options_json), bob.id).user.id == bob.id


def test_an_answer_to_passwordless_options_cannot_be_someones_second_factor(core: IdentityCore) -> None:
    bob, eve = _user(core), _user(core, email="eve@example.com")
    _registered(core, bob)
    eves = _registered(core, eve)
    answer = eves.authenticate(core.passkeys.authentication_options(TENANT, INTERACTION))  # passwordless options
    _refused("passkey.expired", "expired", core.passkeys.authenticate, TENANT, INTERACTION, answer, bob.id)
    answer = eves.authenticate(core.passkeys.authentication_options(TENANT, INTERACTION, user_id=eve.id))
    _refused("passkey.expired", "expired", core.passkeys.authenticate, TENANT, INTERACTION, answer)  # nor passwordless


def test_a_passkey_of_another_tenant_is_refused(core: IdentityCore) -> None:
    admin = core.users.find_administrator(ADMIN_EMAIL)
    assert admin is not None
    other = core.tenants.create("other", "Other", owner_user_id=admin.id, actor=Actor(tenant_id="admin", sub=admin.id))
    _allow_passkey_first(core, other.id)
    carol = _user(core, tenant=other.id, email="carol@example.com")
    carols = _registered(core, carol, tenant=other.id)
    options = core.passkeys.authentication_options(TENANT, INTERACTION)
    answer = carols.authenticate(options)
    _refused("passkey.unknown_credential", "not registered", core.passkeys.authenticate, TENANT, INTERACTION, answer)


# --- bad registrations: refused, nothing stored --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tamper", "code", "says"),
    [
        ({"origin": "https://evil.example"}, "passkey.rejected", "another site (https://evil.example)"),
        ({"rp_id": "evil.example"}, "passkey.rejected", "made for another site"),
        ({"challenge": _b64(b"not the challenge we sent")}, "passkey.expired", "for another request"),
    ],
)
def test_a_bad_registration_is_refused_and_stores_nothing(
    core: IdentityCore, tamper: dict[str, str], code: str, says: str
) -> None:
    user = _user(core)
    authenticator = _authenticator(core)
    options = core.passkeys.registration_options(TENANT, user.id, INTERACTION)
    answer = authenticator.register(options, **tamper)
    _refused(code, says, core.passkeys.register, TENANT, user.id, INTERACTION, answer)
    assert core.passkeys.of_user(TENANT, user.id) == []
    assert ("passkey.register", "failure") in [(e.action, e.outcome) for e in core.audit.recent(TENANT)]


@pytest.mark.parametrize(
    "answer",
    ["", "not json", "[]", "{}", json.dumps({"id": "x", "rawId": "x", "type": "public-key", "response": {}}),
     json.dumps({"id": "x", "rawId": "x", "type": "public-key",
                 "response": {"clientDataJSON": "!!!", "attestationObject": "AAAA"}}),
     "{" + "x" * 20000 + "}"],
)  # fmt: skip
def test_a_malformed_registration_is_refused_and_stores_nothing(core: IdentityCore, answer: str) -> None:
    user = _user(core)
    core.passkeys.registration_options(TENANT, user.id, INTERACTION)
    _refused("passkey.malformed", "could not be read", core.passkeys.register, TENANT, user.id, INTERACTION, answer)
    assert core.passkeys.of_user(TENANT, user.id) == []


def test_a_registration_challenge_answers_once(core: IdentityCore) -> None:
    user = _user(core)
    authenticator = _authenticator(core)
    answer = authenticator.register(core.passkeys.registration_options(TENANT, user.id, INTERACTION))
    core.passkeys.register(TENANT, user.id, INTERACTION, answer)
    _refused(
        "passkey.expired", "expired or was already used", core.passkeys.register, TENANT, user.id, INTERACTION, answer
    )
    assert len(core.passkeys.of_user(TENANT, user.id)) == 1


def test_a_failed_answer_uses_the_challenge_up(core: IdentityCore) -> None:
    user = _user(core)
    authenticator = _authenticator(core)
    options = core.passkeys.registration_options(TENANT, user.id, INTERACTION)
    bad = authenticator.register(options, origin="https://evil.example")
    _refused("passkey.rejected", "another site", core.passkeys.register, TENANT, user.id, INTERACTION, bad)
    good = authenticator.register(options)
    _refused("passkey.expired", "already used", core.passkeys.register, TENANT, user.id, INTERACTION, good)
    assert core.passkeys.of_user(TENANT, user.id) == []


def test_an_expired_challenge_is_refused(core: IdentityCore, clock: Clock) -> None:
    user = _user(core)
    authenticator = _authenticator(core)
    answer = authenticator.register(core.passkeys.registration_options(TENANT, user.id, INTERACTION))
    clock.advance(CHALLENGE_TTL.total_seconds() + 1)
    _refused("passkey.expired", "expired", core.passkeys.register, TENANT, user.id, INTERACTION, answer)
    assert core.passkeys.of_user(TENANT, user.id) == []


def test_a_challenge_is_bound_to_its_interaction_and_user(core: IdentityCore) -> None:
    bob, eve = _user(core), _user(core, email="eve@example.com")
    authenticator = _authenticator(core)
    answer = authenticator.register(core.passkeys.registration_options(TENANT, bob.id, INTERACTION))
    _refused("passkey.expired", "expired", core.passkeys.register, TENANT, bob.id, "another-interaction", answer)
    answer = authenticator.register(core.passkeys.registration_options(TENANT, bob.id, INTERACTION))
    _refused("passkey.expired", "expired", core.passkeys.register, TENANT, eve.id, INTERACTION, answer)
    assert core.passkeys.of_user(TENANT, bob.id) == [] and core.passkeys.of_user(TENANT, eve.id) == []


def test_the_same_authenticator_cannot_register_twice(core: IdentityCore) -> None:
    user = _user(core)
    authenticator = _registered(core, user)
    answer = authenticator.register(core.passkeys.registration_options(TENANT, user.id, INTERACTION))
    _refused(
        "passkey.already_registered",
        "registered here already",
        core.passkeys.register,
        TENANT,
        user.id,
        INTERACTION,
        answer,
    )
    assert len(core.passkeys.of_user(TENANT, user.id)) == 1


# --- bad sign-ins: refused, nothing changes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tamper", "code", "says"),
    [
        ({"origin": "https://evil.example"}, "passkey.rejected", "another site"),
        ({"rp_id": "evil.example"}, "passkey.rejected", "made for another site"),
        ({"challenge": _b64(b"an old challenge")}, "passkey.expired", "for another request"),
    ],
)
def test_a_bad_sign_in_answer_is_refused(core: IdentityCore, tamper: dict[str, str], code: str, says: str) -> None:
    user = _user(core)
    authenticator = _registered(core, user)
    options = core.passkeys.authentication_options(TENANT, INTERACTION)
    answer = authenticator.authenticate(options, **tamper)
    _refused(code, says, core.passkeys.authenticate, TENANT, INTERACTION, answer)
    assert core.passkeys.of_user(TENANT, user.id)[0].last_used_at is None


def test_a_sign_count_going_backwards_is_refused(core: IdentityCore) -> None:
    user = _user(core)
    authenticator = _registered(core, user)
    answer = authenticator.authenticate(core.passkeys.authentication_options(TENANT, INTERACTION), sign_count=5)
    core.passkeys.authenticate(TENANT, INTERACTION, answer)
    for count in (5, 3):
        answer = authenticator.authenticate(core.passkeys.authentication_options(TENANT, INTERACTION), sign_count=count)
        _refused(
            "passkey.sign_count", "counter went backwards", core.passkeys.authenticate, TENANT, INTERACTION, answer
        )


def test_an_authenticator_without_a_counter_may_report_zero(core: IdentityCore) -> None:
    user = _user(core)
    authenticator = _registered(core, user)
    for _ in range(2):  # 0 then 0: allowed by the spec (the authenticator has no counter)
        answer = authenticator.authenticate(core.passkeys.authentication_options(TENANT, INTERACTION), sign_count=0)
        assert core.passkeys.authenticate(TENANT, INTERACTION, answer).user.id == user.id


def test_a_sign_in_challenge_answers_once(core: IdentityCore) -> None:
    user = _user(core)
    authenticator = _registered(core, user)
    options = core.passkeys.authentication_options(TENANT, INTERACTION)
    answer = authenticator.authenticate(options)
    core.passkeys.authenticate(TENANT, INTERACTION, answer)
    replay = authenticator.authenticate(options)  # even with a fresh count: the challenge is gone
    _refused("passkey.expired", "already used", core.passkeys.authenticate, TENANT, INTERACTION, replay)


def test_passwordless_needs_a_verified_user(core: IdentityCore) -> None:
    user = _user(core)
    authenticator = _registered(core, user)
    authenticator.user_verified = False
    answer = authenticator.authenticate(core.passkeys.authentication_options(TENANT, INTERACTION))
    _refused("passkey.rejected", "could not be verified", core.passkeys.authenticate, TENANT, INTERACTION, answer)


def test_a_forged_signature_is_refused(core: IdentityCore) -> None:
    user = _user(core)
    authenticator = _registered(core, user)
    from cryptography.hazmat.primitives.asymmetric import ec

    authenticator.key = ec.generate_private_key(ec.SECP256R1())  # same credential id, another key
    answer = authenticator.authenticate(core.passkeys.authentication_options(TENANT, INTERACTION))
    _refused("passkey.rejected", "could not be verified", core.passkeys.authenticate, TENANT, INTERACTION, answer)
    assert core.passkeys.of_user(TENANT, user.id)[0].last_used_at is None


@pytest.mark.parametrize("answer", ["", "null", "{}", json.dumps({"id": "AAAA", "rawId": "AAAA", "response": {}})])
def test_a_malformed_sign_in_answer_is_refused(core: IdentityCore, answer: str) -> None:
    _registered(core, _user(core))
    core.passkeys.authentication_options(TENANT, INTERACTION)
    _refused("passkey.malformed", "could not be read", core.passkeys.authenticate, TENANT, INTERACTION, answer)


def test_a_suspended_user_cannot_sign_in_with_a_passkey(core: IdentityCore) -> None:
    from idp_mcp.core.users import UserChanges

    user = _user(core)
    authenticator = _registered(core, user)
    core.tenant_users.update(TENANT, user.id, UserChanges(suspended=True), ACTOR)
    answer = authenticator.authenticate(core.passkeys.authentication_options(TENANT, INTERACTION))
    with pytest.raises(UserSuspended):
        core.passkeys.authenticate(TENANT, INTERACTION, answer)


def test_passkeys_are_listed_and_reset_with_the_other_factors(core: IdentityCore) -> None:
    user = _user(core)
    _registered(core, user)
    [factor] = [f for f in core.mfa.factors(TENANT, user.id) if f.kind == "passkey"]
    assert factor.created_at is not None and factor.last_used_at is None
    assert core.mfa.reset(TENANT, user.id, ACTOR) == 1
    assert core.passkeys.of_user(TENANT, user.id) == []
    assert [f.kind for f in core.mfa.factors(TENANT, user.id)] == []


def test_a_registration_for_a_user_deleted_meanwhile_is_refused(core: IdentityCore) -> None:
    user = _user(core)
    answer = _authenticator(core).register(core.passkeys.registration_options(TENANT, user.id, INTERACTION))
    core.tenant_users.delete(TENANT, user.id, ACTOR)
    _refused("passkey.rejected", "no longer exists", core.passkeys.register, TENANT, user.id, INTERACTION, answer)


def test_passwordless_is_refused_where_the_tenant_does_not_offer_it(core: IdentityCore) -> None:
    authenticator = _registered(core, _user(core))
    answer = authenticator.authenticate(core.passkeys.authentication_options(TENANT, INTERACTION))
    core.sign_in_experiences.update_mfa(TENANT, {"passkeyFirst": False}, ACTOR)
    with pytest.raises(PasskeyNotOffered, match="not offered here"):
        core.passkeys.authenticate(TENANT, INTERACTION, answer)  # turned off after the options were given
    with pytest.raises(PasskeyNotOffered, match="not offered here"):
        core.passkeys.authentication_options(TENANT, INTERACTION)
