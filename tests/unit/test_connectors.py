"""The pure parts of connectors: URL rules, email domains, presets as data, and how an upstream profile is read
through a claim mapping (only an explicit true verifies an email)."""

from __future__ import annotations

import pytest

from idp_mcp.core.connectors import DEFAULT_CLAIMS, PRESETS, UpstreamSignInFailed, check_url, domain_of
from idp_mcp.errors import ValidationFailed
from idp_mcp.oauth.upstream import _issuer_matches, _map


def test_upstream_urls_are_https_and_plain_http_only_to_loopback_under_the_test_setting() -> None:
    assert check_url("https://accounts.google.com", "issuer", allow_http_loopback=False)
    assert check_url("http://127.0.0.1:8080", "issuer", allow_http_loopback=True)
    for url, allowed in [("http://127.0.0.1:8080", False), ("http://example.com", True), ("ftp://example.com", True),
                         ("https://user:pw@example.com", False), ("https://ex ample.com", False)]:  # fmt: skip
        with pytest.raises(ValidationFailed):
            check_url(url, "issuer", allow_http_loopback=allowed)


def test_domain_of_an_email() -> None:
    assert domain_of("Someone@ACME.com") == "acme.com"
    assert domain_of("a@b@acme.co.uk") == "acme.co.uk"
    assert domain_of("nobody") is None and domain_of("@acme.com") is None and domain_of("x@localhost") is None


def test_every_preset_is_complete_data() -> None:
    for name, preset in PRESETS.items():
        assert preset.label and preset.icon and preset.scopes, name
        if preset.kind == "oidc":
            assert preset.issuer and preset.issuer.startswith("https://") and "openid" in preset.scopes
        else:
            assert set(preset.endpoints) == {"authorization", "token", "userinfo"}
            assert all(url.startswith("https://") for url in preset.endpoints.values())
            assert "id" in preset.claims


def test_a_profile_through_a_claim_mapping() -> None:
    github = {"id": "id", "email": "email", "name": "name", "picture": "avatar_url"}
    profile = _map({"id": 42, "email": "o@example.com", "name": " Octo  Cat ", "avatar_url": "https://x/y.png"}, github)
    assert (profile.subject, profile.email, profile.email_verified, profile.name) == ("42", "o@example.com", False,
                                                                                      "Octo Cat")  # fmt: skip
    assert profile.picture == "https://x/y.png"


@pytest.mark.parametrize(
    ("value", "verified"), [(True, True), ("true", True), ("yes", False), (1, False), (None, False)]
)
def test_only_an_explicit_true_verifies_an_email(value: object, verified: bool) -> None:
    profile = _map({"sub": "s", "email": "a@example.com", "email_verified": value}, DEFAULT_CLAIMS)
    assert profile.email_verified is verified


def test_a_profile_without_a_usable_subject_is_refused_and_odd_values_are_dropped() -> None:
    for claims in ({}, {"sub": ""}, {"sub": "x" * 256}, {"sub": ["a"]}, {"sub": True}):
        with pytest.raises(UpstreamSignInFailed):
            _map(claims, DEFAULT_CLAIMS)
    odd = _map({"sub": "s", "email": ["a@example.com"], "name": 7, "picture": "http://insecure/p.png"}, DEFAULT_CLAIMS)
    assert (odd.email, odd.name, odd.picture) == (None, None, None)


def test_issuer_match_is_exact_except_for_microsofts_templated_common_issuer() -> None:
    assert _issuer_matches("https://accounts.google.com", "https://accounts.google.com")
    assert not _issuer_matches("https://evil.example", "https://accounts.google.com")
    assert _issuer_matches(
        "https://login.microsoftonline.com/{tenantid}/v2.0", "https://login.microsoftonline.com/common/v2.0"
    )
    assert not _issuer_matches("https://evil.example/{tenantid}", "https://accounts.google.com")
