"""A clock the test controls: frozen at creation, moved on with ``advance``."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)
        self._ahead = 0.0  # seconds ``advance`` has added to the monotonic clock

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        """The monotonic clock (of caches' intervals), running as usual but moved on by ``advance`` too."""
        return time.monotonic() + self._ahead

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self._ahead += seconds
