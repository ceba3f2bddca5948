"""A real SMTP server on loopback (aiosmtpd) that keeps every message it receives, for tests of email codes.

A test module that needs one for every test takes its fixtures from :func:`smtp_fixtures`.
"""

from __future__ import annotations

import email
import email.policy
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiosmtpd.controller import Controller

from idp_mcp.settings import Settings
from tests.support.inprocess import PUBLIC_URL
from tests.support.live_server import free_port

SENDER = "no-reply@idp.example.com"
_CODE = re.compile(r"\b(\d{6})\b")


@dataclass
class SmtpSink:
    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """The server's settings that point its email connector here (plain SMTP: loopback has no TLS)."""
        return {
            "IDP_MCP_SMTP_HOST": self.host,
            "IDP_MCP_SMTP_PORT": str(self.port),
            "IDP_MCP_SMTP_FROM": SENDER,
            "IDP_MCP_SMTP_STARTTLS": "false",
        }

    def settings(self, **values: Any) -> Settings:
        """In-process settings whose email connector points here, with ``values`` for the rest."""
        return Settings(smtp_host=self.host, smtp_port=self.port, smtp_from=SENDER, smtp_starttls=False, **values)

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.messages if message["To"] == address]

    def wait_for(self, address: str, count: int = 1, timeout: float = 10) -> EmailMessage:
        """The ``count``-th message to ``address``, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        while len(self.to(address)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no email #{count} to {address} within {timeout}s; got {len(self.to(address))}")
            time.sleep(0.02)
        return self.to(address)[count - 1]

    async def receive(self, address: str, count: int = 1) -> EmailMessage:
        """``wait_for`` from async code, in a worker thread (it gives up after 30 seconds)."""
        return await anyio.to_thread.run_sync(lambda: self.wait_for(address, count, 30))


def body_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "the email has no text part"
    return str(part.get_content())


def code_in(message: EmailMessage) -> str:
    match = _CODE.search(body_of(message))
    assert match, f"no 6-digit code in the email: {body_of(message)!r}"
    return match.group(1)


class _Collector:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.sink.messages.append(message)
        return "250 Message accepted for delivery"


@contextmanager
def run_smtp_server() -> Iterator[SmtpSink]:
    sink = SmtpSink(host="127.0.0.1", port=free_port())
    controller = Controller(_Collector(sink), hostname=sink.host, port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def smtp_fixtures() -> tuple[Any, Any]:
    """Two fixtures for a test module whose app sends email: ``smtp`` (a running :class:`SmtpSink`) and
    ``settings`` (the in-process app's settings, its email connector pointed at that sink). In the module::

        smtp, settings = smtp_fixtures()
    """

    @pytest.fixture(name="smtp")
    def smtp_fixture() -> Iterator[SmtpSink]:
        with run_smtp_server() as sink:
            yield sink

    @pytest.fixture(name="settings")
    def settings_fixture(tmp_path: Path, database_url: str, smtp: SmtpSink) -> Settings:
        return smtp.settings(public_url=PUBLIC_URL, data_dir=tmp_path, database_url=database_url)

    return smtp_fixture, settings_fixture
