"""Use cases that only read take the read path (``Database.read``: a deferred BEGIN that never takes SQLite's write
lock), so hosted pages and look-ups do not queue behind token writes. Every transaction is recorded through
SQLAlchemy's events (tests/support/transactions.py): a pure read must open only read transactions, and a use case
that writes must not hold the write lock for a transaction that wrote nothing."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.sign_in import SignUpForm
from idp_mcp.domain import Actor, User
from tests.support.transactions import RecordedTransaction, TransactionRecorder, summary

TENANT = "default"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")


@pytest.fixture
def recorder(core: IdentityCore) -> Iterator[TransactionRecorder]:
    recorder = TransactionRecorder(core.db.engine)
    yield recorder
    recorder.close()


@pytest.fixture
def bob(core: IdentityCore) -> User:
    return anyio.run(
        lambda: core.tenant_users.create(
            TENANT, email="bob@example.com", username="bob", password="violet staple horizon 7", actor=ACTOR
        )
    )


def only_reads(transactions: list[RecordedTransaction]) -> None:
    assert transactions, "the use case opened no transaction at all"
    assert all(t.read_only and t.writes == 0 for t in transactions), summary(transactions)


def test_reading_a_browser_session_opens_only_a_read_transaction(
    core: IdentityCore, recorder: TransactionRecorder, bob: User
) -> None:
    raw = core.sessions.start(TENANT, bob.id)
    with recorder.recording() as transactions:
        session = core.sessions.get(raw)
    assert session is not None and session.user_id == bob.id
    only_reads(transactions)
    assert len(transactions) == 1


def test_reading_a_pending_interaction_opens_only_a_read_transaction(
    core: IdentityCore, recorder: TransactionRecorder
) -> None:
    raw = core.sessions.begin_interaction(TENANT, "some-client", {"scope": ["openid"]})
    with recorder.recording() as transactions:
        interaction = core.sessions.get_interaction(raw)
    assert interaction is not None and interaction.client_id == "some-client"
    only_reads(transactions)
    assert len(transactions) == 1


def test_reading_the_sign_in_experience_opens_only_a_read_transaction(
    core: IdentityCore, recorder: TransactionRecorder
) -> None:
    core.sign_in_experiences.update_branding(TENANT, {"displayName": "Shop"}, ACTOR)
    with recorder.recording() as transactions:
        experience = core.sign_in_experiences.get(TENANT)
    assert experience.branding.display_name == "Shop"
    only_reads(transactions)
    assert len(transactions) == 1


def test_listing_signing_keys_opens_only_a_read_transaction(core: IdentityCore, recorder: TransactionRecorder) -> None:
    with recorder.recording() as transactions:
        keys = core.keys.list_keys(TENANT)
    assert keys
    only_reads(transactions)
    assert len(transactions) == 1


def test_reading_a_pending_sign_up_payload_opens_only_a_read_transaction(
    core: IdentityCore, recorder: TransactionRecorder
) -> None:
    core.verification_codes.issue(TENANT, "sign_up", "new@example.com", payload={"username": "newbie"})
    with recorder.recording() as transactions:
        payload = core.verification_codes.pending_payload(TENANT, "sign_up", "new@example.com")
    assert payload == {"username": "newbie"}
    only_reads(transactions)


def test_the_hosted_sign_in_experience_look_up_opens_only_a_read_transaction(
    core: IdentityCore, recorder: TransactionRecorder
) -> None:
    with recorder.recording() as transactions:
        core.hosted_sign_in.experience(TENANT)
    only_reads(transactions)


def test_a_sign_up_takes_the_write_path_only_for_what_it_writes(
    core: IdentityCore, recorder: TransactionRecorder, bob: User
) -> None:
    """The hosted sign-up's look-ups (experience, is the username taken, is the address taken) are reads; only the
    account creation holds the write lock."""
    core.sign_in_experiences.update_sign_up(
        TENANT, {"enabled": True, "identifiers": ["email", "username"], "password": True}, ACTOR
    )
    with recorder.recording() as transactions:
        started = anyio.run(
            core.hosted_sign_in.start_sign_up,
            TENANT,
            SignUpForm(email="carol@example.com", username="carol", password="amber kettle orbit 42"),
        )
    assert started.sign_in_email == "carol@example.com"
    assert any(t.read_only for t in transactions), summary(transactions)
    idle_writes = [t for t in transactions if not t.read_only and t.writes == 0]
    assert not idle_writes, summary(transactions)
