"""Password policy and Argon2id hashing."""

from __future__ import annotations

import anyio
import pytest

from idp_mcp.core.passwords import (
    MAX_LENGTH,
    MIN_LENGTH,
    check_policy,
    hash_password,
    hash_password_sync,
    verify_password,
    verify_password_sync,
)
from idp_mcp.errors import WeakPassword

GOOD_PASSWORD = "correct horse battery staple"

# --- check_policy --------------------------------------------------------------------------------------------


def test_strong_password_passes_the_policy() -> None:
    check_policy(GOOD_PASSWORD, identifiers=("ada@example.com", "ada"))


def test_password_of_exactly_the_minimum_length_passes() -> None:
    password = "k7#Qm2!x"
    assert len(password) == MIN_LENGTH
    check_policy(password)


def test_too_short_password_is_refused_saying_the_minimum_length() -> None:
    with pytest.raises(WeakPassword, match=f"use at least {MIN_LENGTH} characters") as excinfo:
        check_policy("k7#Qm2!")
    assert excinfo.value.code == "user.weak_password"


def test_too_long_password_is_refused_saying_the_maximum_length() -> None:
    check_policy("ab1" * (MAX_LENGTH // 3))
    with pytest.raises(WeakPassword, match=f"use at most {MAX_LENGTH} characters"):
        check_policy("abc" * MAX_LENGTH)


@pytest.mark.parametrize("password", ["password", "Password123", "12345678", "QWERTYUIOP", "changeme", "letmein1"])
def test_common_password_is_refused_whatever_its_case(password: str) -> None:
    with pytest.raises(WeakPassword, match="it is a common password; choose another"):
        check_policy(password)


@pytest.mark.parametrize("password", ["aaaaaaaaaaaa", "abababababab"])
def test_password_with_fewer_than_three_distinct_characters_is_refused(password: str) -> None:
    with pytest.raises(WeakPassword, match="common password"):
        check_policy(password)


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("adalovelace-rocks", id="local-part"),
        pytest.param("My-AdaLovelace-2024", id="local-part-other-case"),
        pytest.param("x-adalovelace@example.com-x", id="whole-email"),
    ],
)
def test_password_containing_the_email_is_refused_saying_what_to_change(password: str) -> None:
    email = "adalovelace@example.com"
    with pytest.raises(WeakPassword, match="must not contain your email or username"):
        check_policy(password, identifiers=(email, email.split("@")[0]))


def test_empty_or_missing_identifiers_are_ignored() -> None:
    check_policy(GOOD_PASSWORD, identifiers=(None, ""))


# --- hashing -------------------------------------------------------------------------------------------------


def test_hash_is_argon2id_and_verifies_the_same_password_only() -> None:
    password_hash = hash_password_sync(GOOD_PASSWORD)
    assert password_hash.startswith("$argon2id$")
    assert GOOD_PASSWORD not in password_hash
    assert verify_password_sync(password_hash, GOOD_PASSWORD) is True
    assert verify_password_sync(password_hash, GOOD_PASSWORD + "!") is False
    assert verify_password_sync(password_hash, "") is False


def test_two_hashes_of_one_password_differ_by_their_salt() -> None:
    assert hash_password_sync(GOOD_PASSWORD) != hash_password_sync(GOOD_PASSWORD)


@pytest.mark.parametrize("password_hash", [None, ""])
def test_verify_without_a_stored_hash_is_false(password_hash: str | None) -> None:
    assert verify_password_sync(password_hash, GOOD_PASSWORD) is False


def test_verify_against_a_malformed_hash_is_false() -> None:
    assert verify_password_sync("not-an-argon2-hash", GOOD_PASSWORD) is False


@pytest.mark.anyio
async def test_async_hash_and_verify_round_trip_in_a_worker_thread() -> None:
    with anyio.fail_after(10):
        password_hash = await hash_password(GOOD_PASSWORD)
        assert password_hash.startswith("$argon2id$")
        assert await verify_password(password_hash, GOOD_PASSWORD) is True
        assert await verify_password(password_hash, "wrong password") is False
        assert await verify_password(None, GOOD_PASSWORD) is False
