from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from idp_mcp.store import loop_guard
from tests.support.databases import fresh_database_url


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database_url(tmp_path) as url:
        yield url


@pytest.fixture(autouse=True)
def _no_database_work_on_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every engine the app builds refuses database work on an event-loop thread: in process (Settings() reads the
    variable) and in the servers the e2e tests start (they inherit the environment). A test fails if its code
    caused a refusal, even one that a caller caught."""
    monkeypatch.setenv("IDP_MCP_DEBUG_LOOP_GUARD", "1")
    before = len(loop_guard.VIOLATIONS)
    yield
    caused = loop_guard.VIOLATIONS[before:]
    del loop_guard.VIOLATIONS[before:]
    assert not caused, "database work ran on the event loop:\n" + "\n".join(caused)
