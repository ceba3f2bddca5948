"""The MFA rules on their own: what a user may prove and enroll, the decision after a first factor, the amr and acr
it leads to, and the policy's validation."""

from __future__ import annotations

import pytest

from idp_mcp.core.mfa import (
    ACR_MFA,
    ACR_SINGLE_FACTOR,
    MfaUnavailable,
    Options,
    acr_for_request,
    acr_of,
    asks_for_mfa,
    decide,
    options,
    with_second_factor,
)
from idp_mcp.core.sign_in_experience import MfaPolicy, check_mfa, merge_mfa
from idp_mcp.errors import ValidationFailed

NONE = Options((), ())


def test_acr_values_ask_for_mfa_by_uri_or_alias() -> None:
    assert asks_for_mfa({"acr_values": [ACR_MFA]})
    assert asks_for_mfa({"acr_values": ["urn:other mfa"]})
    assert not asks_for_mfa({"acr_values": ["1fa"]}) and not asks_for_mfa({})


@pytest.mark.parametrize(
    ("first", "method", "amr"),
    [
        (("pwd",), "otp", ("pwd", "otp", "mfa")),
        (("email",), "otp", ("email", "otp", "mfa")),
        (("fed",), "hwk", ("fed", "hwk", "mfa")),
        (("otp",), "otp", ("otp",)),  # the same method twice is not two factors
        (("pwd", "otp", "mfa"), "otp", ("pwd", "otp", "mfa")),
    ],
)
def test_a_distinct_second_method_makes_mfa(first: tuple[str, ...], method: str, amr: tuple[str, ...]) -> None:
    assert with_second_factor(first, method) == amr


def test_acr_follows_amr_and_echoes_the_alias_the_app_asked_for() -> None:
    assert acr_of(("pwd",)) == ACR_SINGLE_FACTOR and acr_of(("pwd", "otp", "mfa")) == ACR_MFA
    assert acr_for_request(ACR_MFA, {"acr_values": ["mfa"]}) == "mfa"
    assert acr_for_request(ACR_MFA, {}) == ACR_MFA
    assert acr_for_request(ACR_SINGLE_FACTOR, {"acr_values": ["mfa"]}) == ACR_SINGLE_FACTOR


def test_options_offer_only_allowed_factors_and_backup_codes_with_them() -> None:
    totp = MfaPolicy("required", ("totp",))
    assert options(totp, {"totp"}, backup_codes=3, email_usable=True, first_amr=("pwd",)) == Options(
        ("totp", "backup_code"), ()
    )
    # Backup codes alone are not offered (they stand in for an enrolled factor), and email only when allowed.
    assert options(totp, set(), backup_codes=3, email_usable=True, first_amr=("pwd",)) == Options((), ("totp",))
    everything = MfaPolicy("required", ("totp", "email", "passkey"))
    assert options(everything, set(), backup_codes=0, email_usable=True, first_amr=("pwd",)).offered == ("email",)
    # An email code is not a second factor after an email code.
    assert options(everything, set(), backup_codes=0, email_usable=True, first_amr=("email",)).offered == ()
    assert options(everything, {"passkey"}, backup_codes=0, email_usable=False, first_amr=("pwd",)) == Options(
        ("passkey",), ("totp",)
    )


@pytest.mark.parametrize(
    ("policy", "choices", "step_up", "outcome"),
    [
        ("off", Options(("totp",), ()), False, "complete"),
        ("off", Options(("totp",), ()), True, "challenge"),
        ("off", Options((), ("totp",)), True, "enroll"),
        ("off", NONE, True, "complete"),  # nothing allowed: the acr says single-factor
        ("optional", Options(("totp",), ()), False, "challenge"),
        ("optional", Options((), ("totp",)), False, "offer"),  # enrollment offered, may be skipped
        ("optional", NONE, False, "complete"),
        ("optional", Options((), ("totp",)), True, "enroll"),
        ("required", Options((), ("totp",)), False, "enroll"),
        ("required", Options(("email",), ("totp",)), False, "challenge"),
    ],
)
def test_the_decision_after_a_first_factor(policy: str, choices: Options, step_up: bool, outcome: str) -> None:
    assert decide(MfaPolicy(policy, ("totp",)), choices, first_amr=("pwd",), step_up=step_up) == outcome  # type: ignore[arg-type]


def test_a_first_factor_that_is_already_mfa_completes() -> None:
    policy = MfaPolicy("required", ("passkey",))
    assert decide(policy, NONE, first_amr=("hwk", "user", "mfa"), step_up=True) == "complete"


def test_required_with_nothing_to_enroll_refuses_with_a_sentence() -> None:
    with pytest.raises(MfaUnavailable, match="Ask an administrator"):
        decide(MfaPolicy("required", ("email",)), NONE, first_amr=("pwd",), step_up=False)


def test_the_policy_is_validated() -> None:
    assert merge_mfa(MfaPolicy(), {"policy": "required", "factors": ["totp", "totp"]}).factors == ("totp",)
    for bad, message in (
        ({"policy": "sometimes"}, "policy must be"),
        ({"factors": ["sms"]}, "factors must be"),
        ({"factors": "totp"}, "factors must be"),
        ({"passkeyFirst": "yes"}, "passkeyFirst must be true or false"),
        ({"extra": 1}, "Unknown MFA policy field"),
    ):
        with pytest.raises(ValidationFailed, match=message):
            merge_mfa(MfaPolicy(), bad)
    with pytest.raises(ValidationFailed, match="SMTP"):
        check_mfa(MfaPolicy("optional", ("email",)), email_connector=False)
    with pytest.raises(ValidationFailed, match="at least one factor"):
        check_mfa(MfaPolicy("optional", ()), email_connector=True)
    check_mfa(MfaPolicy("off", ()), email_connector=False)
