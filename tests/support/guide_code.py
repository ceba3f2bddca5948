"""Code taken from a guide, run the way the guide tells a developer to run it: ``python -m uvicorn <module>:app``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import answers, running


@contextmanager
def run_uvicorn_app(folder: Path, module: str, port: int, env: dict[str, str]) -> Iterator[str]:
    """``python -m uvicorn <module>:app`` in ``folder`` on 127.0.0.1:``port``, with ``env`` over this process's
    environment; yields its base URL once it answers anything over HTTP, and stops it afterwards."""
    base_url = f"http://127.0.0.1:{port}"
    log_path = folder / f"uvicorn-{port}.log"
    command = [sys.executable, "-m", "uvicorn", f"{module}:app", "--host", "127.0.0.1", "--port", str(port)]
    ready = answers(f"{base_url}/", any_status=True)  # any HTTP answer: it is up
    with running(command, what=f"the guide's {module}.py", log_path=log_path, ready=ready, env={**os.environ, **env},
                 cwd=folder):  # fmt: skip
        yield base_url
