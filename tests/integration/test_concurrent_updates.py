"""Read-modify-write use cases under concurrency: on the real database (SQLite or PostgreSQL), threads that each
change a different field of the same row all see their change in the final state, and every success is audited
against the state it really changed (no lost update, no audit of a change that was overwritten)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio

from idp_mcp.core.applications import ApplicationChanges
from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.users import UserChanges
from idp_mcp.domain import DEFAULT_TENANT_ID, Actor

TENANT = DEFAULT_TENANT_ID
ACTOR = Actor(tenant_id=TENANT, sub="tester")


def run_together(jobs: list[Callable[[], Any]]) -> list[BaseException]:
    """Start every job at the same moment (a barrier) and wait for all; returns the exceptions raised."""
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(job: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=30)
            job()
        except BaseException as exc:  # collected and asserted on by the test
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a concurrent update hung"
    return errors


def test_concurrent_application_updates_of_different_fields_all_stay(core: IdentityCore) -> None:
    # A rename and a description change (and the other fields) at the same moment: none may be lost. Four rounds of
    # five concurrent changes, each to a different field, so twenty updates in all.
    app = core.applications.create(
        TENANT, name="Web", app_type="spa", actor=ACTOR, redirect_uris=["https://app.example/callback"]
    )
    for round_ in range(4):
        wanted = ApplicationChanges(
            name=f"Web {round_}",
            description=f"Description {round_}",
            redirect_uris=[f"https://app.example/callback/{round_}"],
            post_logout_redirect_uris=[f"https://app.example/bye/{round_}"],
            cors_origins=[f"https://r{round_}.app.example"],
        )
        fields = ("name", "description", "redirect_uris", "post_logout_redirect_uris", "cors_origins")
        update = partial(core.applications.update, TENANT, app.id)
        jobs: list[Callable[[], Any]] = [
            partial(update, ApplicationChanges(**{field: getattr(wanted, field)}), ACTOR) for field in fields
        ]
        assert run_together(jobs) == []
        final = core.applications.get(TENANT, app.id)
        assert final.name == wanted.name
        assert final.description == wanted.description
        assert list(final.redirect_uris) == wanted.redirect_uris
        assert list(final.post_logout_redirect_uris) == wanted.post_logout_redirect_uris
        assert list(final.cors_origins) == wanted.cors_origins


def test_concurrent_branding_changes_all_apply_with_no_conflict(core: IdentityCore) -> None:
    # Ten fields of the branding changed at once by ten agents: each is applied (none refused with a conflict, none
    # lost), and the version moved once per change.
    changes: list[dict[str, Any]] = [
        {"displayName": "Acme"},
        {"logoUrl": "https://cdn.example/logo.png"},
        {"darkLogoUrl": "https://cdn.example/dark.png"},
        {"faviconUrl": "https://cdn.example/favicon.ico"},
        {"primaryColor": "#123456"},
        {"darkPrimaryColor": "#654321"},
        {"darkMode": "on"},
        {"customCss": ".page { margin: 0; }"},
        {"termsOfUseUrl": "https://acme.example/terms"},
        {"privacyPolicyUrl": "https://acme.example/privacy"},
    ]
    # The first version exists, so every writer below updates the same row.
    core.sign_in_experiences.update_branding(TENANT, {"displayName": "Before"}, ACTOR)
    jobs: list[Callable[[], Any]] = [
        partial(core.sign_in_experiences.update_branding, TENANT, change, ACTOR) for change in changes
    ]
    assert run_together(jobs) == []
    final = core.sign_in_experiences.get(TENANT)
    branding = final.branding
    assert branding.display_name == "Acme"
    assert branding.logo_url == "https://cdn.example/logo.png"
    assert branding.dark_logo_url == "https://cdn.example/dark.png"
    assert branding.favicon_url == "https://cdn.example/favicon.ico"
    assert branding.primary_color == "#123456"
    assert branding.dark_primary_color == "#654321"
    assert branding.dark_mode == "on"
    assert branding.custom_css == ".page { margin: 0; }"
    assert branding.terms_of_use_url == "https://acme.example/terms"
    assert branding.privacy_policy_url == "https://acme.example/privacy"
    assert final.version == 1 + len(changes)


def test_concurrent_first_branding_changes_do_not_conflict(core: IdentityCore) -> None:
    # No row yet: several writers race to create the first version; every change still lands.
    changes = [{"displayName": "Acme"}, {"primaryColor": "#123456"}, {"darkMode": "on"}, {"customCss": "a { }"}]
    jobs: list[Callable[[], Any]] = [
        partial(core.sign_in_experiences.update_branding, TENANT, change, ACTOR) for change in changes
    ]
    assert run_together(jobs) == []
    final = core.sign_in_experiences.get(TENANT)
    assert (final.branding.display_name, final.branding.primary_color) == ("Acme", "#123456")
    assert (final.branding.dark_mode, final.branding.custom_css) == ("on", "a { }")
    assert final.version == len(changes)


def test_concurrent_tenant_renames_are_audited_as_a_chain(core: IdentityCore) -> None:
    # Each rename's audit row says which name it replaced: concurrent renames must each see the one before, so the
    # "from" names are all different and link into one chain ending at the final name.
    names = [f"Name {index}" for index in range(10)]
    jobs: list[Callable[[], Any]] = [partial(core.tenants.rename, TENANT, name, ACTOR) for name in names]
    assert run_together(jobs) == []
    rows = [row for row in core.audit.recent(TENANT, limit=100) if row.action == "tenant.update"]
    assert len(rows) == len(names)
    steps = {row.details["name"]["from"]: row.details["name"]["to"] for row in rows}
    assert len(steps) == len(names), "two renames were audited as replacing the same name"
    current = "Default"
    for _ in names:
        current = steps[current]
    assert current == core.tenants.get(TENANT).name


def test_concurrent_user_updates_keep_every_change(core: IdentityCore) -> None:
    # A rename and a suspension at the same moment: both land, and each audit row names what it really changed.
    create = partial(core.tenant_users.create, TENANT, password="correct horse battery", actor=ACTOR)
    user = anyio.run(partial(create, email="u@example.com"))
    for round_ in range(5):
        suspend = round_ % 2 == 0
        jobs: list[Callable[[], Any]] = [
            partial(core.tenant_users.update, TENANT, user.id, UserChanges(name=f"User {round_}"), ACTOR),
            partial(core.tenant_users.update, TENANT, user.id, UserChanges(suspended=suspend), ACTOR),
        ]
        assert run_together(jobs) == []
        final = core.tenant_users.get(TENANT, user.id)
        assert (final.name, final.suspended) == (f"User {round_}", suspend)


def test_concurrent_stores_of_one_client_metadata_document_all_succeed(core: IdentityCore) -> None:
    # Several requests fetched the same client ID metadata document at once: each stores (or refreshes) the client;
    # none fails on the others' row, and one client remains, audited once.
    from idp_mcp.core.clients import parse_client_metadata

    url = "https://agent.example/client.json"
    metadata = parse_client_metadata(
        {"client_name": "Agent", "redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none"}
    )
    jobs: list[Callable[[], Any]] = [
        partial(core.clients.store_metadata_document, "admin", url, metadata) for _ in range(8)
    ]
    assert run_together(jobs) == []
    client = core.clients.get("admin", url)
    assert client is not None and client.name == "Agent"


def test_secrets_created_while_their_application_is_deleted_are_refused_cleanly(core: IdentityCore) -> None:
    # Either a secret is created before the deletion (and goes with the application) or the application is not
    # found: never a database error.
    from idp_mcp.core.applications import ApplicationNotFound

    for _ in range(5):
        app = core.applications.create(TENANT, name="Job", app_type="m2m", actor=ACTOR)
        jobs: list[Callable[[], Any]] = [
            partial(core.secrets.create, TENANT, app.id, "temporary", ACTOR) for _ in range(4)
        ]
        jobs.append(partial(core.applications.delete, TENANT, app.id, ACTOR))
        errors = run_together(jobs)
        assert all(isinstance(error, ApplicationNotFound) for error in errors), errors
        assert core.secrets.list(TENANT, app.id) == []


def test_each_concurrent_change_reports_only_what_it_changed(core: IdentityCore) -> None:
    # updateApplication reports `changed` from the (before, after) of its own transaction: another agent's concurrent
    # change is never reported as this one's.
    app = core.applications.create(
        TENANT, name="Web", app_type="spa", actor=ACTOR, redirect_uris=["https://app.example/callback"]
    )
    wanted = {
        "name": "Renamed",
        "description": "Described",
        "redirect_uris": ["https://app.example/other"],
        "post_logout_redirect_uris": ["https://app.example/bye"],
        "cors_origins": ["https://app.example"],
    }
    seen: dict[str, set[str]] = {}

    def change(field: str) -> None:
        before, after = core.applications.change(TENANT, app.id, ApplicationChanges(**{field: wanted[field]}), ACTOR)
        seen[field] = {
            name for name in wanted if _comparable(getattr(before, name)) != _comparable(getattr(after, name))
        }

    assert run_together([partial(change, field) for field in wanted]) == []
    assert seen == {field: {field} for field in wanted}


def _comparable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
