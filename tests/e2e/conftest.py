from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page

from tests.support.browser import launch_browser
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, free_port, run_live_server


@pytest.fixture
def live_server(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    with run_live_server(tmp_path / "server", database_url) as server:
        created = server.cli("admin", "create", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD)
        assert created.returncode == 0, created.stderr
        yield server


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with launch_browser() as browser:
        context = await browser.new_context()
        yield await context.new_page()
        await context.close()


@pytest.fixture
def callback_uri() -> str:
    # Nothing listens here: the browser intercepts the redirect, as a native client's listener would get it.
    return f"http://127.0.0.1:{free_port()}/callback"
