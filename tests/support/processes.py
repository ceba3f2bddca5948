"""One way to run a server the tests need in a subprocess: start it with its output in a log file, wait until it
answers, stop it when the block ends (terminate, then kill)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx


def answers(url: str, *, any_status: bool = False) -> Callable[[], bool]:
    """A readiness check: ``url`` answers 200 (or anything at all over HTTP, with ``any_status``)."""

    def check() -> bool:
        try:
            response = httpx.get(url, timeout=1)
        except httpx.HTTPError:
            return False
        return any_status or response.status_code == 200

    return check


@contextmanager
def running(
    command: Sequence[str], *, what: str, log_path: Path, ready: Callable[[], bool],
    env: Mapping[str, str] | None = None, cwd: Path | None = None, start_timeout: float = 30, stop_timeout: float = 10,
) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """Run ``command`` until the block ends; yields the process once ``ready()`` is true. ``what`` names it in the
    errors, which carry its log (it exited early, or it was not ready within ``start_timeout`` seconds)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            list(command), env=None if env is None else dict(env), cwd=cwd, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + start_timeout
            while not ready():
                if process.poll() is not None:
                    raise RuntimeError(f"{what} exited early:\n{log_path.read_text(errors='replace')}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not start:\n{log_path.read_text(errors='replace')}")
                time.sleep(0.1)  # polling a child process's port: nothing to inject a clock into
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=stop_timeout)
