"""The sign-in experience is cached per (tenant, version): a read checks the stored version (one small query) and
reuses the parsed, validated experience while it is unchanged, so a hosted page does not parse the document on every
render; a change made through another replica (a second IdentityCore on the same database) shows on the next read.
Nothing expires by time."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from starlette.testclient import TestClient

from idp_mcp.core.applications import Application
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from idp_mcp.settings import Settings
from tests.support import hosted
from tests.support.clock import Clock
from tests.support.transactions import TransactionRecorder, of_requests, summary

TENANT = "default"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")


@pytest.fixture
def other_replica(settings: Settings, clock: Clock, core: IdentityCore) -> Iterator[IdentityCore]:
    """A second identity core on the same database, as another server process would be."""
    other = IdentityCore.from_settings(settings, clock)
    yield other
    other.close()


@pytest.fixture
def app(core: IdentityCore) -> Application:
    return core.applications.create(
        TENANT, name="Shop app", app_type="traditional", actor=ACTOR, redirect_uris=[hosted.CALLBACK]
    )


def test_an_unchanged_experience_is_reused_and_read_with_one_small_query(core: IdentityCore) -> None:
    core.sign_in_experiences.update_branding(TENANT, {"displayName": "Shop", "customCss": ".a { color: red; }"}, ACTOR)
    first = core.sign_in_experiences.get(TENANT)
    recorder = TransactionRecorder(core.db.engine)
    try:
        with recorder.recording() as transactions:
            again = core.sign_in_experiences.get(TENANT)
    finally:
        recorder.close()
    assert again is first  # the parsed, validated object itself: nothing parsed again
    assert len(transactions) == 1 and transactions[0].read_only, summary(transactions)
    (statement,) = transactions[0].statements
    assert "document" not in statement.lower(), statement  # only the version and its time


def test_a_change_through_another_replica_shows_on_the_next_read(
    core: IdentityCore, other_replica: IdentityCore
) -> None:
    assert core.sign_in_experiences.get(TENANT).version == 0
    other_replica.sign_in_experiences.update_branding(TENANT, {"displayName": "First"}, ACTOR)
    seen = core.sign_in_experiences.get(TENANT)
    assert (seen.version, seen.branding.display_name) == (1, "First")
    assert core.sign_in_experiences.get(TENANT) is seen
    other_replica.sign_in_experiences.update_branding(TENANT, {"displayName": "Second"}, ACTOR)
    other_replica.sign_in_experiences.update_sign_up(TENANT, {"enabled": True}, ACTOR)
    latest = core.sign_in_experiences.get(TENANT)
    assert (latest.version, latest.branding.display_name, latest.sign_up.enabled) == (3, "Second", True)


def test_the_hosted_page_shows_another_replicas_change_on_the_next_render(
    client: TestClient, core: IdentityCore, other_replica: IdentityCore, app: Application
) -> None:
    request = hosted.start(client, app.id)
    assert f"{request.path}/sign-up" not in request.page().text  # sign-up is off
    other_replica.sign_in_experiences.update_branding(TENANT, {"displayName": "Replica Two"}, ACTOR)
    other_replica.sign_in_experiences.update_sign_up(TENANT, {"enabled": True}, ACTOR)
    page = request.page().text
    assert "Replica Two" in page and f"{request.path}/sign-up" in page
    css = client.get(f"/t/{TENANT}/branding.css").text
    other_replica.sign_in_experiences.update_branding(TENANT, {"primaryColor": "#117a3d"}, ACTOR)
    assert "#117a3d" not in css and "#117a3d" in client.get(f"/t/{TENANT}/branding.css").text


def test_a_cached_page_render_is_still_one_read_transaction(
    client: TestClient, core: IdentityCore, app: Application
) -> None:
    request = hosted.start(client, app.id)
    request.page()  # fills the cache
    recorder = TransactionRecorder(core.db.engine)
    core.audit.flush()
    try:
        with recorder.recording() as transactions:
            assert request.page().status_code == 200
    finally:
        recorder.close()
    transactions = of_requests(transactions)
    assert len(transactions) == 1 and transactions[0].read_only, summary(transactions)


def test_concurrent_reads_and_a_change_never_mix_versions(core: IdentityCore, other_replica: IdentityCore) -> None:
    """Readers in worker threads while another replica changes the experience: each read is one whole version."""
    names = {1: "One", 2: "Two", 3: "Three"}
    seen: list[tuple[int, str | None]] = []

    async def main() -> None:
        async def reader() -> None:
            for _ in range(30):
                experience = await anyio.to_thread.run_sync(core.sign_in_experiences.get, TENANT)
                seen.append((experience.version, experience.branding.display_name))

        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(reader)
            for name in names.values():
                await anyio.to_thread.run_sync(
                    other_replica.sign_in_experiences.update_branding, TENANT, {"displayName": name}, ACTOR
                )

    anyio.run(main)
    assert all((version == 0 and name is None) or names.get(version) == name for version, name in seen), seen
    assert core.sign_in_experiences.get(TENANT).branding.display_name == "Three"
