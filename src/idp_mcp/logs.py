"""Logging set-up. A chat is not a secure channel, and neither is a log file: no secret may reach one.

Some libraries log whole token responses or message bodies at DEBUG (authlib logs issued tokens; the SSE
and MCP transports log payloads, which carry temporary secrets). They are held at INFO whatever the level,
and a filter masks anything shaped like a JWT or a token field as a second line of defence.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

# Loggers that print payloads (tokens, secrets, tool results) at DEBUG.
CHATTY_LOGGERS = (
    "authlib",
    "sse_starlette",
    "mcp.server.streamable_http",
    "mcp.shared",
    "mcp.server.runner",
    "mcp.server.lowlevel",
    "httpx",
    "httpcore",
    "httpx2",
)
# Loggers that narrate routine start-up (Alembic: "Context impl SQLiteImpl", one line per plugin and migration):
# only worth reading when debugging, so they speak at DEBUG and are held at WARNING otherwise.
NARRATING_LOGGERS = ("alembic",)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
_TOKEN_FIELD = re.compile(
    r"(?i)(['\"]?(?:access_token|refresh_token|id_token|client_secret|code_verifier|password|code)['\"]?\s*[:=]\s*['\"]?)"
    r"[^'\"\s,&}]+"
)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _TOKEN_FIELD.sub(r"\1[redacted]", _JWT.sub("[redacted-jwt]", message))
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now, not to the stream it was when configured (which test runners
    replace and close; background threads such as the MCP loader may log after that)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: str) -> None:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
    for name in NARRATING_LOGGERS:
        logging.getLogger(name).setLevel(
            logging.DEBUG if root.level <= logging.DEBUG else max(logging.WARNING, root.level)
        )
