from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

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
