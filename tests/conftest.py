from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from idp_mcp.store import loop_guard, transaction_tally
from tests.support.databases import fresh_database_url

# Every in-process request comes from one address ("testclient") and every live server's from 127.0.0.1, so suites
# that register many clients would meet the per-address registration limit. Lifted here (servers inherit the
# environment); tests/integration/test_registration_rate_limit.py sets its own small limit.
os.environ.setdefault("IDP_MCP_REGISTRATION_MAX_PER_ADDRESS", "1000000")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database_url(tmp_path) as url:
        yield url


@pytest.fixture(scope="session", autouse=True)
def _loop_guard_on() -> Iterator[None]:
    """Every engine the app builds refuses database work on an event-loop thread: in process (Settings() reads the
    variable, in module-scoped fixtures too) and in the servers the e2e tests start (they inherit the environment)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IDP_MCP_DEBUG_LOOP_GUARD", "1")
        patch.setenv("IDP_MCP_DEBUG_TRANSACTION_TALLY", "1")
        yield


@pytest.fixture(autouse=True)
def _no_database_work_on_the_event_loop(_loop_guard_on: None) -> Iterator[None]:
    """A test fails if its code caused a refusal of the loop guard, even one that a caller caught."""
    before = len(loop_guard.VIOLATIONS)
    yield
    caused = loop_guard.VIOLATIONS[before:]
    del loop_guard.VIOLATIONS[before:]
    assert not caused, "database work ran on the event loop:\n" + "\n".join(caused)


@pytest.fixture(autouse=True)
def _one_transaction_per_use_case(_loop_guard_on: None) -> Iterator[None]:
    """A test fails if a request or tool call it made opened more transactions than its use case's one."""
    before = len(transaction_tally.VIOLATIONS)
    yield
    caused = transaction_tally.VIOLATIONS[before:]
    del transaction_tally.VIOLATIONS[before:]
    if caused and os.environ.get("IDP_MCP_TEST_TALLY_REPORT"):
        # A survey (e.g. while making use cases one transaction): write them to that file instead of failing.
        with open(os.environ["IDP_MCP_TEST_TALLY_REPORT"], "a", encoding="utf-8") as report:
            report.write("".join(f"{line}\n" for line in caused))
        return
    assert not caused, "a use case opened more than one transaction:\n" + "\n".join(caused)


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """Code under test that sets up logging (the CLI, configure_logging) replaces the root handler with one that
    writes to the real stderr; put the test run's own handlers and levels back after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, before in levels.items():
        logging.getLogger(name).setLevel(before)
