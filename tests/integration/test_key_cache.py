"""The signing-key cache under made-up kids: anyone can send a token whose header names a random ``kid``. Each
tenant's keys are loaded on their own (a reload never reads other tenants' keys), an unknown kid reloads a tenant
at most once a second, a kid still unknown after a reload is not looked for again within the cache interval, the MCP
verifier never reads keys on the event loop, and a key rotated elsewhere is still accepted at once.

Database reads are counted on the real engine with a SQLAlchemy event listener.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import jwt
import pytest
from sqlalchemy import event
from starlette.testclient import TestClient

from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.keys import KeyRing
from idp_mcp.domain import Actor
from idp_mcp.oauth.verifier import McpTokenVerifier
from tests.support.clock import Clock
from tests.support.inprocess import PUBLIC_URL

TENANTS = [f"tenant-{n:02d}" for n in range(20)]


@dataclass
class KeyReads:
    """Every read of signing_keys that loads keys (private keys included): when, on which thread, with what."""

    reads: list[tuple[float, int, Any]] = field(default_factory=list)

    def of(self, tenant_id: str) -> list[float]:
        return [at for at, _, params in self.reads if tenant_id in _values(params)]

    def unfiltered(self) -> int:
        """Reads not narrowed to one tenant: they load every tenant's keys."""
        names = {*TENANTS, "admin", "default"}
        return sum(1 for _, _, params in self.reads if not names.intersection(map(str, _values(params))))

    def clear(self) -> None:
        self.reads.clear()


def _values(params: Any) -> list[Any]:
    if isinstance(params, dict):
        return list(params.values())
    if isinstance(params, (list, tuple)):
        return list(params)
    return []


@pytest.fixture
def key_reads(core: IdentityCore) -> Iterator[KeyReads]:
    reads = KeyReads()

    def before_cursor_execute(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if "private_pem" in statement and "FROM signing_keys" in statement:
            reads.reads.append((time.monotonic(), threading.get_ident(), params))

    event.listen(core.db.engine, "before_cursor_execute", before_cursor_execute)
    yield reads
    event.remove(core.db.engine, "before_cursor_execute", before_cursor_execute)


def forged(kid: str) -> str:
    """A token whose header names ``kid`` (ES256, at+jwt), signed by no key of ours."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode({"sub": "x"}, key, algorithm="ES256", headers={"kid": kid, "typ": "at+jwt"})


def random_kid() -> str:
    return secrets.token_urlsafe(32)


def make_tenants(core: IdentityCore) -> None:
    for tenant_id in TENANTS:
        core.tenants.create(tenant_id, tenant_id, owner_user_id="owner", actor=Actor("admin", "owner"))


def test_made_up_kids_reload_each_tenant_alone_and_at_most_once_a_second(
    client: TestClient, core: IdentityCore, key_reads: KeyReads
) -> None:
    make_tenants(core)
    for tenant_id in TENANTS:  # first use of each tenant: its keys are made and loaded
        client.get(f"/t/{tenant_id}/oidc/jwks")
    key_reads.clear()
    started = time.monotonic()

    for _ in range(10):
        for tenant_id in TENANTS:
            response = client.get(
                f"/t/{tenant_id}/oidc/userinfo", headers={"Authorization": f"Bearer {forged(random_kid())}"}
            )
            assert response.status_code == 401

    elapsed = time.monotonic() - started
    assert key_reads.unfiltered() == 0, "a reload read every tenant's keys"
    for tenant_id in TENANTS:
        reads = key_reads.of(tenant_id)
        assert 1 <= len(reads) <= int(elapsed) + 1, (tenant_id, len(reads), elapsed)
        assert all(later - earlier >= 0.99 for earlier, later in itertools.pairwise(reads))


def test_a_kid_still_unknown_after_a_reload_is_not_looked_for_again_within_the_cache_interval(
    core: IdentityCore, key_reads: KeyReads, clock: Clock
) -> None:
    ring = KeyRing(core.db, clock, refresh_seconds=60, miss_reload_seconds=0.2, monotonic=clock.monotonic)
    ring.jwks("default")
    kid = random_kid()
    key_reads.clear()

    assert ring.verification_key(kid, tenant_id="default") is None
    clock.advance(0.3)  # past the reload rate limit: only the memory of the unknown kid stops a reload
    assert ring.verification_key(kid, tenant_id="default") is None
    assert len(key_reads.of("default")) == 1

    # Another made-up kid still gets its (rate-limited) reload: the memory is per kid.
    assert ring.verification_key(random_kid(), tenant_id="default") is None
    assert len(key_reads.of("default")) == 2


def test_a_key_rotated_elsewhere_verifies_at_once_and_after_a_storm_within_the_rate_limit(
    core: IdentityCore,
) -> None:
    """Two key rings on one database stand for two replicas: one rotates, the other accepts the new kid."""
    other = KeyRing(core.db, core.clock, refresh_seconds=60)
    other.jwks("default")
    first = core.keys.rotate("default").kid
    assert other.verification_key(first, tenant_id="default") is not None  # at once: an unknown kid reloads

    for _ in range(50):  # made-up kids spend the tenant's reload for this second
        assert other.verification_key(random_kid(), tenant_id="default") is None
    second = core.keys.rotate("default").kid
    deadline = time.monotonic() + 3
    while other.verification_key(second, tenant_id="default") is None:
        assert time.monotonic() < deadline, "the rotated key was never accepted"
        time.sleep(0.05)


def test_the_mcp_verifier_reads_keys_in_a_worker_thread_never_on_the_event_loop(
    core: IdentityCore, key_reads: KeyReads
) -> None:
    ring = KeyRing(core.db, core.clock, refresh_seconds=60)
    verifier = McpTokenVerifier(ring, core.grants, tenant_id="admin", issuer=PUBLIC_URL, resource=f"{PUBLIC_URL}/mcp")
    loop_threads: list[int] = []

    async def main() -> None:
        loop_threads.append(threading.get_ident())
        with anyio.fail_after(10):
            assert await verifier.verify_token(forged(random_kid())) is None  # first load, then a miss reload
            assert await verifier.verify_token(forged(random_kid())) is None  # rate-limited: from memory

    anyio.run(main)

    assert key_reads.of("admin"), "the verifier never loaded the keys"
    assert all(thread != loop_threads[0] for _, thread, _ in key_reads.reads)


class CacheClock:
    """The key cache's monotonic clock, moved on by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_keys_in_use_are_reloaded_in_the_background_before_they_are_due(
    core: IdentityCore, key_reads: KeyReads
) -> None:
    clock = CacheClock()
    ring = KeyRing(core.db, core.clock, refresh_seconds=60, monotonic=clock)
    old = ring.signing_key("default")
    rotated = core.keys.rotate("default").kid  # elsewhere: this ring does not know it yet
    key_reads.clear()

    clock.now += 50  # past three quarters of the interval, not past the interval
    assert ring.signing_key("default").kid == old.kid  # answered from memory, not waiting for the reload
    ring.wait_for_background_reload()

    assert ring.signing_key("default").kid == rotated
    assert [thread for _, thread, _ in key_reads.reads] != [] and all(
        thread != threading.get_ident() for _, thread, _ in key_reads.reads
    ), "the reload ran in the caller's thread"
    assert len(key_reads.of("default")) == 1  # one reload, however many uses meanwhile


def test_the_verifiers_memory_answer_starts_the_background_reload_too(core: IdentityCore, key_reads: KeyReads) -> None:
    clock = CacheClock()
    ring = KeyRing(core.db, core.clock, refresh_seconds=60, monotonic=clock)
    old = ring.signing_key("default")
    rotated = core.keys.rotate("default").kid
    key_reads.clear()

    clock.now += 50
    assert ring.cached_verification_key(old.kid, tenant_id="default") == (True, old)  # never reads the database
    ring.wait_for_background_reload()

    assert ring.cached_verification_key(rotated, tenant_id="default")[0] is True
    assert len(key_reads.of("default")) == 1


def test_keys_unused_for_the_whole_interval_are_reloaded_before_they_are_used(
    core: IdentityCore, key_reads: KeyReads
) -> None:
    clock = CacheClock()
    ring = KeyRing(core.db, core.clock, refresh_seconds=60, monotonic=clock)
    ring.signing_key("default")
    rotated = core.keys.rotate("default").kid
    key_reads.clear()

    clock.now += 61  # never older than the interval: this use waits for the reload
    assert ring.signing_key("default").kid == rotated
    assert [thread for _, thread, _ in key_reads.reads] == [threading.get_ident()]
