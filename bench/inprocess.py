"""CPU cost of one request through idp-mcp's ASGI app, in process, sequentially (no network, no uvicorn, no
concurrency): a load-independent figure for "how much work is a token request / a tool call", and a profile.

    PYTHONPATH=<snapshot>/src python bench/inprocess.py [--n 1000] [--profile]

It builds its own database in a temporary directory (through bench/idp_setup.py), calls ``create_app`` and sends
requests straight to the ASGI callable: client credentials, code + PKCE, refresh, and MCP tools/call
(getTenantInfo, listInstructions) with a real bearer token. With ``--profile`` 300 more requests of each scenario are
sampled with py-spy (all threads) and summarised by profile_summary.py into bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

BENCH = Path(__file__).resolve().parent
PORT = 18999  # only used to build the public URL; nothing listens


async def call(
    app: Any, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": f"127.0.0.1:{PORT}", **headers}.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", PORT),
        "state": {},
    }
    sent = False
    status = 0
    out_headers: dict[str, str] = {}
    chunks: list[bytes] = []
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            out_headers.update({k.decode(): v.decode() for k, v in message.get("headers", [])})
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    await app(scope, receive, send)
    return status, out_headers, b"".join(chunks)


async def main_async(args: argparse.Namespace, work: Path) -> None:
    minted = work / "minted"
    env = {
        **os.environ,
        "IDP_MCP_PUBLIC_URL": f"http://127.0.0.1:{PORT}",
        "IDP_MCP_DATA_DIR": str(work),
        "IDP_MCP_LOG_LEVEL": "WARNING",
    }
    n = args.n
    extra = 20 + (300 if args.profile else 0)  # warm-up, and the profiled run
    setup_script = [sys.executable, str(BENCH / "idp_setup.py"), str(minted)]
    # Set-up, before anything is timed: the tenant and its apps, then the codes and refresh tokens to present.
    subprocess.run(setup_script, env=env, check=True)  # noqa: ASYNC221
    for kind in ("code", "refresh"):
        subprocess.run([*setup_script, "--mint", kind, str(n + extra)], env=env, check=True)  # noqa: ASYNC221
    os.environ.update(env)
    setup = json.loads((minted / "setup.json").read_text())

    from idp_mcp.app import create_app  # after the environment is set

    app = create_app()
    form = {"content-type": "application/x-www-form-urlencoded"}
    token_path = f"/t/{setup['tenant']}/oidc/token"
    basic = base64.b64encode(f"{setup['m2m_client_id']}:{setup['m2m_secret']}".encode()).decode()
    codes = [line.split() for line in (minted / "code.txt").read_text().splitlines() if line]
    refresh = [line for line in (minted / "refresh.txt").read_text().splitlines() if line]
    spa = setup["spa_client_id"]
    redirect = "http%3A%2F%2F127.0.0.1%3A9999%2Fcallback"
    bearer = {
        "authorization": f"Bearer {setup['mcp_access_token']}",
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
    }

    async with app.router.lifespan_context(app):
        status, headers, body = await call(
            app,
            "POST",
            "/mcp",
            bearer,
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 0,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "b", "version": "0"},
                    },
                }
            ).encode(),
        )
        assert status == 200, body
        session = headers["mcp-session-id"]
        mcp = {**bearer, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
        await call(app, "POST", "/mcp", mcp, b'{"jsonrpc":"2.0","method":"notifications/initialized"}')

        counter = iter(range(10**9))

        # One pending authorization request at the tenant's issuer: rendering its sign-in page does not use it up.
        challenge = base64.urlsafe_b64encode(hashlib.sha256(b"bench-verifier-" * 4).digest()).rstrip(b"=").decode()
        status, headers, body = await call(
            app,
            "GET",
            f"/t/{setup['tenant']}/oidc/authorize?response_type=code&client_id={spa}&redirect_uri={redirect}"
            f"&scope=openid&state=s&code_challenge={challenge}&code_challenge_method=S256",
            {},
            b"",
        )
        assert status == 302, body
        interaction_path = urlsplit(headers["location"]).path

        def tool(name: str) -> tuple[str, str, dict[str, str], bytes]:
            body = {
                "jsonrpc": "2.0",
                "id": next(counter) + 1,
                "method": "tools/call",
                "params": {"name": name, "arguments": {}},
            }
            return "POST", "/mcp", mcp, json.dumps(body).encode()

        scenarios: dict[str, Any] = {
            "client credentials": lambda i: (
                "POST",
                token_path,
                {**form, "authorization": f"Basic {basic}"},
                b"grant_type=client_credentials",
            ),
            "client credentials + resource": lambda i: (
                "POST",
                token_path,
                {**form, "authorization": f"Basic {basic}"},
                f"grant_type=client_credentials&resource={quote(setup['api_identifier'], safe='')}".encode(),
            ),
            "code + PKCE": lambda i: (
                "POST",
                token_path,
                form,
                (
                    f"grant_type=authorization_code&client_id={spa}&code={codes[i][0]}&code_verifier={codes[i][1]}"
                    f"&redirect_uri={redirect}"
                ).encode(),
            ),
            "refresh": lambda i: (
                "POST",
                token_path,
                form,
                f"grant_type=refresh_token&client_id={spa}&refresh_token={refresh[i]}".encode(),
            ),
            "hosted sign-in page": lambda i: ("GET", interaction_path, {}, b""),
            "tools/call getTenantInfo": lambda i: tool("getTenantInfo"),
            "tools/call listInstructions": lambda i: tool("listInstructions"),
            "tools/list": lambda i: (
                "POST",
                "/mcp",
                mcp,
                json.dumps({"jsonrpc": "2.0", "id": next(counter) + 1, "method": "tools/list"}).encode(),
            ),
        }
        for name, make in scenarios.items():
            if args.only and not any(part in name for part in args.only):
                continue
            for i in range(20):  # warm-up (and check)
                status, _, body = await call(app, *make(i))
                assert status == 200, (name, body[:300])
                assert b'"isError":true' not in body, (name, body[:300])
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for i in range(n):
                await call(app, *make(20 + i))
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            print(
                f"{name:<30} {1000 * cpu / n:6.2f} ms CPU/request   {1000 * wall / n:6.2f} ms wall/request "
                f"(sequential, n={n})",
                flush=True,
            )
            if args.profile:  # py-spy samples every thread (the token endpoint runs in worker threads)
                out = BENCH / "results" / f"inprocess-{name.replace(' ', '_').replace('/', '_').replace('+', '')}.txt"
                out.parent.mkdir(exist_ok=True)
                spy = subprocess.Popen(  # noqa: ASYNC220 (the profiler runs beside us)
                    [
                        str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "-p",
                        str(os.getpid()),
                        "-r",
                        "1000",
                        "-f",
                        "raw",
                        "-o",
                        str(out),
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                await asyncio.sleep(1.0)
                for i in range(300):
                    await call(app, *make(20 + n + i))
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
                summary = subprocess.run(  # noqa: ASYNC221 (after the profiled requests)
                    [sys.executable, str(BENCH / "profile_summary.py"), str(out), "--top", "30"],
                    capture_output=True,
                    text=True,
                ).stdout
                out.with_suffix(".summary.txt").write_text(summary)
                print(f"  py-spy profile: {out.with_suffix('.summary.txt').relative_to(BENCH.parent)}")


async def sdk_baseline(n: int) -> None:
    """The bare SDK's trivial tool (bench/sdk_server.py), the same way."""
    sys.path.insert(0, str(BENCH))
    from sdk_server import build

    app = build(PORT, stateless=False)
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    async with app.router.lifespan_context(app):
        status, out, body = await call(
            app,
            "POST",
            "/mcp",
            headers,
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 0,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "b", "version": "0"},
                    },
                }
            ).encode(),
        )
        assert status == 200, body
        h = {**headers, "mcp-session-id": out["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        await call(app, "POST", "/mcp", h, b'{"jsonrpc":"2.0","method":"notifications/initialized"}')

        def ping(i: int) -> bytes:
            return json.dumps(
                {"jsonrpc": "2.0", "id": i + 1, "method": "tools/call", "params": {"name": "ping", "arguments": {}}}
            ).encode()

        for i in range(20):
            assert (await call(app, "POST", "/mcp", h, ping(i)))[0] == 200
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(n):
            await call(app, "POST", "/mcp", h, ping(20 + i))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        print(
            f"{'bare SDK tools/call ping':<30} {1000 * cpu / n:6.2f} ms CPU/request   {1000 * wall / n:6.2f} ms "
            f"wall/request (sequential, n={n})",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--only", action="append", help="run only the scenarios whose name contains this")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="idp-mcp-inprocess-"))
    try:
        asyncio.run(main_async(args, work))
        if not args.only:
            asyncio.run(sdk_baseline(args.n))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
