"""The sign-in experience document: field checks, merges, and the whole-document consistency rules."""

from __future__ import annotations

import pytest

from idp_mcp.core.sign_in_experience import (
    Branding,
    SignInMethod,
    SignUp,
    check_consistency,
    color,
    default_experience,
    https_url,
    merge_branding,
    merge_sign_up,
    parse_methods,
)
from idp_mcp.errors import ValidationFailed

EMAIL_PASSWORD = SignInMethod("email", password=True, verification_code=False)
EMAIL_CODE = SignInMethod("email", password=False, verification_code=True)
USERNAME_PASSWORD = SignInMethod("username", password=True, verification_code=False)


@pytest.mark.parametrize("url", ["https://cdn.example.com/logo.png", "https://cdn.example.com:8443/a/b.svg?v=2"])
def test_https_urls_pass(url: str) -> None:
    assert https_url(url, "logoUrl") == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://cdn.example.com/logo.png", "must be an https URL"),
        ("javascript:alert(1)", "must be an https URL"),
        ("data:image/png;base64,AAAA", "must be an https URL"),
        ("//cdn.example.com/logo.png", "must be an https URL"),
        ("https://", "must be an https URL"),
        ("https://user:pw@cdn.example.com/x.png", "user name or password"),
        ('https://cdn.example.com/x.png" onerror="alert(1)', "without spaces, quotes"),
        ("https://cdn.example.com:port/x.png", "not a valid URL"),
        ("https://cdn.example.com/" + "a" * 2100, "too long"),
    ],
)
def test_other_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        https_url(url, "logoUrl")


def test_colours_are_hex_and_normalised() -> None:
    assert color("#ABC", "primaryColor") == "#abc" and color(" #5D34F2 ", "primaryColor") == "#5d34f2"
    for bad in ("red", "#abcd", "5d34f2", "#5d34f2ff", "rgb(1,2,3)", "#ggg"):
        with pytest.raises(ValidationFailed, match="primaryColor must be a colour"):
            color(bad, "primaryColor")


def test_branding_merges_and_none_resets_to_the_default() -> None:
    branding = merge_branding(Branding(), {"primaryColor": "#FF0000", "displayName": "  Acme   Corp "})
    assert branding.primary_color == "#ff0000" and branding.display_name == "Acme Corp"
    reset = merge_branding(branding, {"primaryColor": None, "displayName": None})
    assert reset == Branding()
    with pytest.raises(ValidationFailed, match="Unknown branding field 'colour'"):
        merge_branding(Branding(), {"colour": "#fff"})
    with pytest.raises(ValidationFailed, match="darkMode must be"):
        merge_branding(Branding(), {"darkMode": "dim"})


def test_methods_are_parsed_in_order_and_checked_one_by_one() -> None:
    methods = parse_methods(
        [{"identifier": "username", "password": True}, {"identifier": "email", "verificationCode": True}]
    )
    assert methods == (USERNAME_PASSWORD, EMAIL_CODE)
    for given, message in [
        ([{"identifier": "phone", "password": True}], "SMS connector"),
        ([{"identifier": "fax", "password": True}], "'email' or 'username'"),
        ([{"identifier": "email"}], "no way to prove"),
        ([{"identifier": "username", "verificationCode": True}], "no address"),
        ([{"identifier": "email", "password": "yes"}], "true or false"),
        ([{"identifier": "email", "password": True, "otp": True}], "Unknown sign-in method field 'otp'"),
        ({"identifier": "email"}, "must be a list"),
    ]:
        with pytest.raises(ValidationFailed, match=message):
            parse_methods(given)


@pytest.mark.parametrize(
    ("methods", "sign_up", "email_connector", "message"),
    [
        ((), SignUp(), True, "at least one sign-in method"),
        ((EMAIL_CODE,), SignUp(), False, "IDP_MCP_SMTP_HOST"),
        ((USERNAME_PASSWORD,), SignUp(enabled=True, identifiers=("email",)), True, "email is not a sign-in method"),
        ((EMAIL_PASSWORD,), SignUp(enabled=True, identifiers=("username",)), True, "username is not a sign-in method"),
        ((EMAIL_PASSWORD,), SignUp(enabled=True, identifiers=()), True, "at least one identifier"),
        ((EMAIL_PASSWORD, USERNAME_PASSWORD), SignUp(enabled=True, identifiers=("username",), verify_email=True), True,
         "verifyEmail needs email"),
        ((EMAIL_PASSWORD,), SignUp(enabled=True, verify_email=True), False, "Verifying email at sign-up needs"),
        ((EMAIL_PASSWORD,), SignUp(enabled=True, password=False, verify_email=True), True, "without a password"),
        ((EMAIL_CODE,), SignUp(enabled=True, password=False, verify_email=False), True, "without a password"),
    ],
)  # fmt: skip
def test_contradictions_are_refused(
    methods: tuple[SignInMethod, ...], sign_up: SignUp, email_connector: bool, message: str
) -> None:
    with pytest.raises(ValidationFailed, match=message):
        check_consistency(methods, sign_up, email_connector=email_connector)


def test_consistent_documents_pass_and_disabled_sign_up_is_not_cross_checked() -> None:
    check_consistency((EMAIL_CODE,), SignUp(enabled=True, password=False, verify_email=True), email_connector=True)
    check_consistency((USERNAME_PASSWORD,), SignUp(enabled=False, identifiers=("email",)), email_connector=False)
    default = default_experience("t")
    check_consistency(default.sign_in_methods, default.sign_up, email_connector=False)
    assert merge_sign_up(SignUp(), {"identifiers": ["email", "email", "username"]}).identifiers == ("email", "username")
