"""Counting thread hops (async code handing work to a worker thread) without patching or wrapping anything: the
interpreter's profiling hook, installed on anyio's worker threads, sees each call a worker runs for async code
(``anyio.to_thread.run_sync`` and Starlette's ``run_in_threadpool`` both end in one ``Context.run`` per call in an
"AnyIO worker thread"). Threads that existed before :meth:`HopCounter.installed` are not watched, so create the app's
TestClient inside it (its event loop, and so its worker threads, are new)."""

from __future__ import annotations

import contextvars
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

WORKER_THREAD = "AnyIO worker thread"


class HopCounter:
    def __init__(self) -> None:
        self.hops = 0
        self._counting = False
        self._lock = threading.Lock()

    @contextmanager
    def installed(self) -> Iterator[HopCounter]:
        """Watch the worker threads started inside the block (for as long as they live)."""
        threading.setprofile(self._first_event)
        try:
            yield self
        finally:
            threading.setprofile(None)  # None removes the hook

    @contextmanager
    def counting(self) -> Iterator[HopCounter]:
        """Count from zero until the block ends."""
        with self._lock:
            self.hops, self._counting = 0, True
        try:
            yield self
        finally:
            with self._lock:
                self._counting = False

    def _first_event(self, frame: FrameType, event: str, arg: Any) -> None:
        # Runs in each new thread: keep watching only anyio's workers.
        if threading.current_thread().name.startswith(WORKER_THREAD):
            sys.setprofile(self._event)
        else:
            sys.setprofile(None)

    def _event(self, _frame: FrameType, event: str, arg: Any) -> None:
        if (
            event == "c_call"
            and getattr(arg, "__name__", None) == "run"
            and isinstance(getattr(arg, "__self__", None), contextvars.Context)
        ):
            with self._lock:
                if self._counting:
                    self.hops += 1
