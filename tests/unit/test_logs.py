"""Logs never carry tokens or secrets, whatever a library tries to print."""

from __future__ import annotations

import logging

import pytest

from idp_mcp.logs import CHATTY_LOGGERS, RedactSecrets, configure_logging

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhYmMxMjM0NSJ9.c2lnbmF0dXJlLXZhbHVl"


def _filtered(message: str, *args: object) -> str:
    record = logging.LogRecord("x", logging.DEBUG, __file__, 1, message, args, None)
    RedactSecrets().filter(record)
    return record.getMessage()


@pytest.mark.parametrize(
    "message",
    [
        f"Issue token {{'access_token': '{JWT}', 'refresh_token': 'r3fr3sh-s3cr3t'}}",
        "client_secret=sup3r-s3cr3t&grant_type=client_credentials",
        '{"password": "hunter2-long", "code": "abc123def"}',
        f"Bearer {JWT}",
    ],
)
def test_token_shaped_values_are_masked(message: str) -> None:
    masked = _filtered(message)
    for secret in (JWT, "r3fr3sh-s3cr3t", "sup3r-s3cr3t", "hunter2-long", "abc123def"):
        assert secret not in masked


def test_ordinary_messages_pass_unchanged() -> None:
    assert _filtered("user %s signed in", "alice") == "user alice signed in"


def test_payload_logging_libraries_stay_quiet_even_at_debug() -> None:
    configure_logging("DEBUG")
    try:
        for name in CHATTY_LOGGERS:
            assert logging.getLogger(name).getEffectiveLevel() >= logging.INFO
        assert logging.getLogger("idp_mcp").getEffectiveLevel() == logging.DEBUG
    finally:
        configure_logging("WARNING")


def test_alembic_narrates_migrations_only_at_debug() -> None:
    try:
        configure_logging("INFO")
        assert logging.getLogger("alembic.runtime.migration").getEffectiveLevel() == logging.WARNING
        configure_logging("DEBUG")
        assert logging.getLogger("alembic.runtime.migration").getEffectiveLevel() == logging.DEBUG
    finally:
        configure_logging("WARNING")
