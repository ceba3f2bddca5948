"""Code taken from a guide, run the way the guide tells a developer to run it: ``python -m uvicorn <module>:app``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


@contextmanager
def run_uvicorn_app(folder: Path, module: str, port: int, env: dict[str, str]) -> Iterator[str]:
    """``python -m uvicorn <module>:app`` in ``folder`` on 127.0.0.1:``port``, with ``env`` over this process's
    environment; yields its base URL once it answers anything over HTTP, and stops it afterwards."""
    base_url = f"http://127.0.0.1:{port}"
    log_path = folder / f"uvicorn-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", f"{module}:app", "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    raise AssertionError(f"the guide's {module}.py exited:\n{log_path.read_text()}")
                try:
                    httpx.get(f"{base_url}/", timeout=1)
                    break  # any HTTP answer: it is up
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"the guide's {module}.py did not start:\n{log_path.read_text()}")
                time.sleep(0.1)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
