"""The pure rules of API resources and permission evaluation: what an identifier and a permission may be, and what a
token gets from what is requested and held."""

from __future__ import annotations

import pytest

from idp_mcp.core.api_resources import check_identifier, check_permissions
from idp_mcp.core.permissions import ResourceAccess
from idp_mcp.errors import ValidationFailed
from idp_mcp.oauth.resources import quoted


@pytest.mark.parametrize(
    "identifier",
    ["https://api.example.com", "https://api.example.com/invoices/v1", "https://api.example.com:8443/",
     "http://localhost:4000", "http://127.0.0.1:9000/api", "http://[::1]:8080", "https://x.example/a:b~c"],
)  # fmt: skip
def test_absolute_https_identifiers_and_loopback_http_are_accepted_as_they_are(identifier: str) -> None:
    assert check_identifier(identifier) == identifier  # never normalised: APIs compare aud byte for byte


@pytest.mark.parametrize(
    ("identifier", "says"),
    [
        ("http://api.example.com", "https"),
        ("ftp://api.example.com", "https"),
        ("api.example.com", "https"),
        ("/invoices", "https"),
        ("https://", "host"),
        ("https://user@api.example.com", "user info"),
        ("https://api.example.com/#top", "fragment"),
        ("https://api.example.com/?v=1", "query"),
        ("https://api.example.com/a b", "spaces"),
        ('https://api.example.com/"', "quotes"),
        ("https://api.example.com/é", "printable ascii"),
        ("https://api.example.com:99999", "not a valid uri"),
        ("https://a.example/" + "x" * 600, "1 to 512"),
        ("", "1 to 512"),
    ],
)
def test_other_identifiers_are_refused_with_what_to_fix(identifier: str, says: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_identifier(identifier)
    assert says in refused.value.message.lower()


def test_permission_names_and_descriptions() -> None:
    checked = check_permissions([("read:invoices", "  Read   invoices "), ("a.b_c-D:9", "")])
    assert [(p.name, p.description) for p in checked] == [("read:invoices", "Read invoices"), ("a.b_c-D:9", "")]
    for bad, says in (
        ([("read invoices", "")], "not valid"),
        ([("x" * 65, "")], "not valid"),
        ([("", "")], "not valid"),
        ([("openid", "")], "openid connect scope"),
        ([("a", ""), ("a", "")], "listed twice"),
        ([("a", "x" * 257)], "too long"),
        ([(f"p{i}", "") for i in range(101)], "at most 100"),
    ):
        with pytest.raises(ValidationFailed) as refused:
            check_permissions(bad)
        assert says in refused.value.message.lower()


def test_a_token_gets_the_requested_permissions_held_and_without_a_request_all_held() -> None:
    access = ResourceAccess(
        "https://api.example.com", frozenset({"read", "write", "delete"}), frozenset({"read", "delete"}), None
    )
    assert access.granted(["write", "delete", "read", "delete", "openid"]) == ["delete", "read"]
    assert access.granted([]) == []
    assert access.granted(None) == ["delete", "read"]


def test_quoted_text_is_safe_in_an_oauth_error_description() -> None:
    assert quoted('https://x/"\\é\x00a', 100) == "https://x/a"
    assert quoted("abc", 2) == "ab"
