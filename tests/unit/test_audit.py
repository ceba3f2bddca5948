"""The audit scrubber: what reaches the audit log never contains a secret or an unbounded value."""

from __future__ import annotations

from typing import Any

import pytest

from idp_mcp.core.audit import scrub

REDACTED = "[redacted]"


@pytest.mark.parametrize(
    "key",
    [
        "client_secret",
        "secret",
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "password",
        "new_password",
        "Password",
        "code_verifier",
        "credential",
        "credentials",
        "authorization",
        "Authorization",
        "cookie",
        "Set-Cookie",
        "CLIENT_SECRET",
    ],
)
def test_secret_looking_key_is_redacted(key: str) -> None:
    assert scrub({key: "s3cr3t-value"}) == {key: REDACTED}


def test_secret_key_is_redacted_whatever_its_value_type() -> None:
    cleaned = scrub({"password": {"nested": "x"}, "tokens": ["a", "b"], "secret": 12345})
    assert cleaned == {"password": REDACTED, "tokens": REDACTED, "secret": REDACTED}


def test_secret_keys_inside_nested_dicts_are_redacted() -> None:
    details = {
        "arguments": {"email": "ada@example.com", "password": "hunter2hunter2", "inner": {"refresh_token": "rt"}},
        "client_name": "Claude",
    }
    assert scrub(details) == {
        "arguments": {"email": "ada@example.com", "password": REDACTED, "inner": {"refresh_token": REDACTED}},
        "client_name": "Claude",
    }


def test_secret_keys_inside_lists_of_dicts_are_redacted() -> None:
    details = {"users": [{"email": "a@example.com", "password": "pw-one"}, {"client_secret": "cs"}], "n": [1, 2]}
    assert scrub(details) == {
        "users": [{"email": "a@example.com", "password": REDACTED}, {"client_secret": REDACTED}],
        "n": [1, 2],
    }


def test_token_endpoint_auth_method_is_kept() -> None:
    details = {"token_endpoint_auth_method": "client_secret_basic", "redirect_uris": ["https://a.example/cb"]}
    assert scrub(details) == details


def test_settings_about_tokens_are_kept() -> None:
    # They name how tokens are made, not a token: an audit row that hid them would not say what changed.
    details = {"idTokenAlg": "RS256", "id_token_alg": "ES256", "accessTokenTtl": 600, "access_token_ttl": 900}
    assert scrub(details) == details
    assert scrub({"idToken": "eyJ...", "accessToken": "x"}) == {"idToken": "[redacted]", "accessToken": "[redacted]"}


def test_ordinary_values_are_kept_unchanged() -> None:
    details: dict[str, Any] = {"name": "Acme", "count": 3, "enabled": True, "nothing": None, "ids": ["a", "b"]}
    assert scrub(details) == details


def test_long_strings_are_cut_to_500_characters_with_an_ellipsis() -> None:
    cleaned = scrub({"note": "x" * 2000, "short": "y" * 500, "nested": {"note": "z" * 501}})
    assert cleaned["note"] == "x" * 500 + "…"
    assert cleaned["short"] == "y" * 500
    assert cleaned["nested"]["note"] == "z" * 500 + "…"


def test_long_strings_inside_lists_are_cut() -> None:
    cleaned = scrub({"redirect_uris": ["https://a.example/" + "p" * 1000]})
    assert len(cleaned["redirect_uris"][0]) == 501
    assert cleaned["redirect_uris"][0].endswith("…")


def test_scrub_returns_a_copy_and_leaves_the_input_untouched() -> None:
    details = {"password": "pw", "nested": {"token": "t"}, "items": [{"secret": "s"}]}
    scrub(details)
    assert details == {"password": "pw", "nested": {"token": "t"}, "items": [{"secret": "s"}]}
