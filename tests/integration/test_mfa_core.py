"""core.mfa on its own database, on a clock the test controls: a TOTP time step is accepted once even when two
partial sign-ins present the same code at the same moment, the partial sign-in starts at most one session, and the
TOTP secret is sealed to its row (moved to another row it is useless)."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pyotp
import pytest
from sqlalchemy import select, update

from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.mfa import MfaCodeRejected, MfaExpired
from idp_mcp.domain import Actor, User
from idp_mcp.store.tables import mfa_factors
from tests.support.clock import Clock

TENANT = "default"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")


@pytest.fixture
def user(core: IdentityCore) -> User:
    core.sign_in_experiences.update_mfa(TENANT, {"policy": "required", "factors": ["totp"]}, ACTOR)
    return anyio.run(
        lambda: core.tenant_users.create(
            TENANT, email="ann@example.com", password="violet staple horizon 7", actor=ACTOR
        )
    )


def partial(core: IdentityCore, user: User) -> tuple[str, str]:
    """A partial sign-in after a password, for a new authorization request: (interaction id, pending cookie)."""
    interaction = core.sessions.begin_interaction(TENANT, "some-client", {"scope": ["openid"]})
    decision = core.mfa.after_first_factor(TENANT, interaction, user.id, ("pwd",))
    assert decision.pending is not None
    return interaction, decision.pending


def enrolled(core: IdentityCore, user: User, clock: Clock) -> str:
    interaction, pending = partial(core, user)
    enrollment = core.mfa.begin_totp(pending, interaction, "Acme")
    assert enrollment.uri.startswith(f"otpauth://totp/Acme:{(user.email or '').replace('@', '%40')}?secret=")
    result = core.mfa.confirm_totp(pending, interaction, pyotp.TOTP(enrollment.secret).at(clock().timestamp()))
    assert result.decision.session and len(result.backup_codes) == 10
    return enrollment.secret


def test_the_same_code_from_two_partial_sign_ins_at_once_is_accepted_once(
    core: IdentityCore, user: User, clock: Clock
) -> None:
    secret = enrolled(core, user, clock)
    clock.advance(30)
    code = pyotp.TOTP(secret).at(clock().timestamp())
    attempts = [partial(core, user) for _ in range(2)]
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def attempt(interaction: str, pending: str) -> None:
        barrier.wait()
        try:
            results.append(core.mfa.verify(pending, interaction, "totp", code))
        except MfaCodeRejected as exc:
            results.append(exc)

    threads = [threading.Thread(target=attempt, args=pair) for pair in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(type(result).__name__ for result in results) == ["MfaCodeRejected", "MfaDecision"]


def test_a_partial_sign_in_starts_one_session_at_most(core: IdentityCore, user: User, clock: Clock) -> None:
    secret = enrolled(core, user, clock)
    clock.advance(30)
    interaction, pending = partial(core, user)
    done = core.mfa.verify(pending, interaction, "totp", pyotp.TOTP(secret).at(clock().timestamp()))
    assert done.amr == ("pwd", "otp", "mfa") and done.session
    clock.advance(30)
    with pytest.raises(MfaExpired):  # spent: even a new, valid code does not start a second session from it
        core.mfa.verify(pending, interaction, "totp", pyotp.TOTP(secret).at(clock().timestamp()))


def test_a_sealed_secret_moved_to_another_row_is_useless(core: IdentityCore, clock: Clock, user: User) -> None:
    secret = enrolled(core, user, clock)
    other = anyio.run(
        lambda: core.tenant_users.create(
            TENANT, email="eve@example.com", password="violet staple horizon 7", actor=ACTOR
        )
    )
    enrolled(core, other, clock)
    with core.db.transaction() as conn:  # copy ann's sealed secret onto eve's factor
        sealed = conn.execute(select(mfa_factors.c.secret).where(mfa_factors.c.user_id == user.id)).scalar_one()
        conn.execute(update(mfa_factors).where(mfa_factors.c.user_id == other.id).values(secret=sealed))
    clock.advance(30)
    interaction, pending = partial(core, other)
    with pytest.raises(MfaCodeRejected):  # ann's codes do not work for eve
        core.mfa.verify(pending, interaction, "totp", pyotp.TOTP(secret).at(clock().timestamp()))
