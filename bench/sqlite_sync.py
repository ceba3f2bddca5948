"""What PRAGMA synchronous=FULL costs a SQLite deployment: refresh-token rotations through the identity core, with
IDP_MCP_SQLITE_SYNCHRONOUS=normal and =full, on the disk that holds ``--dir`` (default: a temporary directory;
point it at the disk the server's data directory lives on, since tmpfs makes every fsync free).

    PYTHONPATH=src python bench/sqlite_sync.py [--n 500] [--threads 1] [--dir PATH]

One rotation is what a refresh_token grant does to the database: find the token (a read transaction), then rotate
it and store its successor (one write transaction, one commit). Prints, per mode, the time of the commit
transaction alone and of the whole rotation (mean, median, p99, in ms) and rotations per second. With
``--threads N`` the rotations run from N threads at once (writers queue on SQLite's single write lock). Figures
vary with the disk and its cache: run it where the server runs. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

from idp_mcp.core.crypto import new_id
from idp_mcp.core.grants import RefreshRecord, Successor
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import DEFAULT_TENANT_ID, Actor
from idp_mcp.settings import Settings
from idp_mcp.store.db import SqliteSynchronous

PASSWORD = "bench passphrase that is long enough 7"


def _record(core: IdentityCore, client_id: str, user_id: str, family_id: str) -> RefreshRecord:
    now = core.clock()
    return RefreshRecord(
        tenant_id=DEFAULT_TENANT_ID,
        family_id=family_id,
        client_id=client_id,
        user_id=user_id,
        scope="openid offline_access",
        resource=None,
        acting_tenant_id=None,
        auth_time=now,
        expires_at=now + timedelta(days=1),
    )


MODES: tuple[SqliteSynchronous, ...] = ("normal", "full")


def run(mode: SqliteSynchronous, directory: Path, n: int, threads: int) -> dict[str, float]:
    settings = Settings(data_dir=directory, database_url=None, sqlite_synchronous=mode)
    core = IdentityCore.from_settings(settings)
    try:
        core.bootstrap()
        admin = asyncio.run(core.users.create_administrator(f"{mode}@example.com", PASSWORD))
        actor = Actor(tenant_id=DEFAULT_TENANT_ID, sub=admin.id)
        app = core.applications.create(
            DEFAULT_TENANT_ID, name="bench spa", app_type="spa", redirect_uris=["http://127.0.0.1:9/cb"], actor=actor
        )
        user = asyncio.run(
            core.tenant_users.create(DEFAULT_TENANT_ID, password=PASSWORD, actor=actor, email=f"u-{mode}@example.com")
        )
        commits: list[float] = []
        rotations: list[float] = []
        lock = threading.Lock()

        def chain(count: int) -> None:
            family = new_id(16)
            token = secrets.token_urlsafe(32)
            core.grants.save_refresh_token(token, _record(core, app.id, user.id, family))
            for _ in range(count):
                started = time.perf_counter()
                presented = core.grants.find_refresh_token(DEFAULT_TENANT_ID, token, app.id)
                assert presented is not None
                successor = Successor(secrets.token_urlsafe(32), _record(core, app.id, user.id, family))
                committing = time.perf_counter()
                assert core.grants.rotate_refresh_token(DEFAULT_TENANT_ID, token, app.id, successor)
                done = time.perf_counter()
                token = successor.token
                with lock:
                    commits.append((done - committing) * 1e3)
                    rotations.append((done - started) * 1e3)

        chain(min(20, n))  # warm up: connections, statement caches
        commits.clear()
        rotations.clear()
        workers = [threading.Thread(target=chain, args=(n // threads,)) for _ in range(threads)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
    finally:
        core.close()
    commits.sort()
    rotations.sort()
    return {
        "commit_mean_ms": statistics.fmean(commits),
        "commit_median_ms": statistics.median(commits),
        "commit_p99_ms": commits[int(len(commits) * 0.99) - 1],
        "rotation_mean_ms": statistics.fmean(rotations),
        "rotations_per_s": len(rotations) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500, help="rotations per mode")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="where the databases go (default: a temp dir)")
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="idp-sqlite-sync-"))
    print(f"{args.n} refresh-token rotations per mode, {args.threads} thread(s), databases under {base}")
    print(f"{'mode':<8} {'commit mean':>12} {'median':>8} {'p99':>8} {'rotation mean':>14} {'rotations/s':>12}")
    for mode in MODES:
        directory = base / f"{mode}-{secrets.token_hex(3)}"
        figures = run(mode, directory, args.n, args.threads)
        print(
            f"{mode:<8} {figures['commit_mean_ms']:>9.3f} ms {figures['commit_median_ms']:>5.3f} ms "
            f"{figures['commit_p99_ms']:>5.3f} ms {figures['rotation_mean_ms']:>11.3f} ms "
            f"{figures['rotations_per_s']:>12.0f}"
        )


if __name__ == "__main__":
    main()
