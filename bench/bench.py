"""bench/run: idp-mcp against node-oidc-provider 9.x (token endpoint) and the bare MCP SDK (/mcp), on loopback.

One load generator (wrk, 1 thread, 16 connections, bench/wrk/bodies.lua) drives every server. Every load loop is
bounded in time (wrk -d) and, for codes and refresh tokens, in count (each one is presented once, then wrk stops
itself). Only 127.0.0.1 is ever a target. Prints one table and writes it to bench/results/.

    bench/run [--duration 8] [--codes 5000] [--sessions 1000] [--profile] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
LUA = BENCH / "wrk" / "bodies.lua"
PY = sys.executable
CONNECTIONS = 16
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
PROTOCOL = "2025-11-25"
REDIRECT_URI_ENC = "http%3A%2F%2F127.0.0.1%3A9999%2Fcallback"
HZ = os.sysconf("SC_CLK_TCK")
BUSY_CORES = 0.25  # other processes using more than this during a measurement: the figure is marked "busy"

TARGETS = {
    "cc": ("≥ 1.5\u00d7 node, p99 ≤ 12 ms", lambda r, p99: r is not None and r >= 1.5 and p99 <= 12.0),
    "code": ("≥ 1.3\u00d7 node", lambda r, p99: r is not None and r >= 1.3),
    "refresh": ("≥ 1.5\u00d7 node", lambda r, p99: r is not None and r >= 1.5),
    "mcp_read": ("≥ 0.8\u00d7 SDK", lambda r, p99: r is not None and r >= 0.8),
    # Resolving the resource and evaluating the app's roles must cost little next to the token itself.
    "cc_resource": ("≥ 0.85\u00d7 plain client credentials", lambda r, p99: r is not None and r >= 0.85),
}


# --- processes -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


STARTED: list[subprocess.Popen[bytes]] = []


def spawn(argv: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    STARTED.append(process)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if process in STARTED:
        STARTED.remove(process)


def stop_all() -> None:
    for process in list(STARTED):
        stop(process)


def wait_until(check: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early (code {process.returncode})")
        try:
            if check():
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not become ready in {timeout} s")


def status_of(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 2.0,
) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- machine load ----------------------------------------------------------------------------------------------


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _cpu_jiffies() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def family(pid: int) -> list[int]:
    """The process and its children (uvicorn's worker processes under ``serve --workers N``)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            pids.append(int(stat.parent.name))
    return pids


def _pid_jiffies(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (all threads)


@dataclass
class Snapshot:
    at: float
    busy: int
    pids: dict[int, int]
    children: float
    own: float


def snapshot(pids: list[int]) -> Snapshot:
    busy, _ = _cpu_jiffies()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    return Snapshot(
        time.monotonic(),
        busy,
        {pid: _pid_jiffies(pid) for pid in pids},
        usage.ru_utime + usage.ru_stime,
        me.ru_utime + me.ru_stime,
    )


def cpu_split(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """Cores used during the window: the servers measured, the load generator (and our helpers), and every other
    process on the machine (other people's test runs)."""
    elapsed = max(after.at - before.at, 1e-6)
    total = (after.busy - before.busy) / HZ / elapsed
    servers = sum(after.pids[p] - before.pids.get(p, after.pids[p]) for p in after.pids) / HZ / elapsed
    ours = ((after.children - before.children) + (after.own - before.own)) / elapsed
    return {
        "total_cores": round(total, 2),
        "server_cores": round(servers, 2),
        "loadgen_cores": round(ours, 2),
        "others_cores": round(max(total - servers - ours, 0.0), 2),
    }


# --- wrk -------------------------------------------------------------------------------------------------------


@dataclass
class Measured:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    seconds: float
    non2xx: int
    errors: int
    load_before: str
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def busy(self) -> bool:
        return self.cpu.get("others_cores", 0.0) > BUSY_CORES

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "busy": self.busy}


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.results: dict[str, Any] = {"measurements": {}, "notes": []}
        self.profiles: list[Path] = []

    def wrk(
        self,
        label: str,
        server: Server,
        path: str,
        bodies: list[str],
        headers: dict[str, str],
        *,
        once: bool = False,
        duration: float | None = None,
        stop_path: str = "/",
        sessions: list[str] | None = None,
        record: bool = True,
    ) -> Measured:
        duration = duration or self.args.duration
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)
        stem = self.work / f"wrk-{safe}"
        bodies_file, headers_file, sessions_file = (stem.with_suffix(s) for s in (".bodies", ".headers", ".sessions"))
        bodies_file.write_text("\n".join(bodies) + "\n")
        headers_file.write_text("".join(f"{k}: {v}\n" for k, v in headers.items()))
        sessions_file.write_text("\n".join(sessions or []) + "\n")
        out = stem.with_suffix(".json")
        env = {
            **os.environ,
            "BENCH_BODIES": str(bodies_file),
            "BENCH_HEADERS": str(headers_file),
            "BENCH_SESSIONS": str(sessions_file) if sessions else "",
            "BENCH_PATH": path,
            "BENCH_ONCE": "1" if once else "0",
            "BENCH_STOP_PATH": stop_path,
            "BENCH_OUT": str(out),
        }
        profiler = None
        if record and self.args.profile and server.name == "idp-mcp":
            profile_path = RESULTS / f"profile-{self.args.profile}-{safe}.txt"
            profiler = subprocess.Popen(
                [
                    str(Path(PY).parent / "py-spy"),
                    "record",
                    "-p",
                    str(server.pid),
                    "-r",
                    "250",
                    "-f",
                    "raw",
                    "-o",
                    str(profile_path),
                    "-d",
                    str(int(duration) + 1),
                    "--nonblocking",
                    *(["--gil"] if self.args.profile == "gil" else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.profiles.append(profile_path)
            time.sleep(0.5)
        load = loadavg()
        pids = family(server.pid)
        before = snapshot(pids)
        argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration:g}s", "--timeout", "5s", "-s", str(LUA), server.base]
        subprocess.run(argv, env=env, capture_output=True, timeout=duration + 30, check=True)
        after = snapshot(pids)
        if profiler is not None:
            profiler.wait(timeout=30)
        data = json.loads(out.read_text())
        seconds = data["duration_us"] / 1e6
        measured = Measured(
            rps=data["requests"] / seconds,
            p50_ms=data["p50_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            requests=data["requests"],
            seconds=round(seconds, 2),
            non2xx=data["non2xx"],
            errors=data["connect_errors"] + data["read_errors"] + data["write_errors"] + data["timeouts"],
            load_before=load,
            cpu=cpu_split(before, after),
        )
        if record:
            self.results["measurements"][label] = measured.as_dict()
            flag = "  BUSY" if measured.busy else ""
            print(
                f"  {label:<28} {measured.rps:8.0f} req/s  p50 {measured.p50_ms:6.2f} ms  p99 {measured.p99_ms:6.2f} ms"
                f"  n={measured.requests} non2xx={measured.non2xx} err={measured.errors}  load {load}"
                f"  cpu server {measured.cpu['server_cores']} others {measured.cpu['others_cores']}{flag}",
                flush=True,
            )
        return measured

    def wrk_interleaved(self, runs: list[tuple[str, Server, str, list[str], dict[str, str]]], trials: int = 3) -> None:
        """Run each scenario ``trials`` times, taking turns (a, b, a, b, ...), and record each one's median trial by
        req/s: a ratio between two scenarios then does not hang on one moment of the machine."""
        taken: dict[str, list[Measured]] = {label: [] for label, *_ in runs}
        for _ in range(trials):
            for label, server, path, bodies, headers in runs:
                taken[label].append(self.wrk(label, server, path, bodies, headers, record=False))
        for label, measured in taken.items():
            median = sorted(measured, key=lambda each: each.rps)[len(measured) // 2]
            self.results["measurements"][label] = {
                **median.as_dict(),
                "non2xx": sum(m.non2xx for m in measured),  # any refusal in any trial fails the row
                "errors": sum(m.errors for m in measured),
                "trials_rps": [round(m.rps) for m in measured],
            }
            print(
                f"  {label:<28} {median.rps:8.0f} req/s  p50 {median.p50_ms:6.2f} ms  p99 {median.p99_ms:6.2f} ms"
                f"  (median of {trials}: {', '.join(f'{m.rps:.0f}' for m in measured)})"
                f"  non2xx={sum(m.non2xx for m in measured)} err={sum(m.errors for m in measured)}",
                flush=True,
            )


# --- servers ---------------------------------------------------------------------------------------------------


CODE_ENV: dict[str, str] = {}  # PYTHONPATH to a snapshot of the code under test (--code REF)


def idp_env(data: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        **CODE_ENV,
        "IDP_MCP_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "IDP_MCP_DATA_DIR": str(data),
        "IDP_MCP_LOG_LEVEL": "WARNING",
    }


def start_idp(data: Path, port: int, work: Path, name: str = "idp-mcp", workers: int = 1) -> Server:
    argv = [PY, "-m", "idp_mcp.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    env = idp_env(data, port)
    if workers > 1:  # worker processes share the port, so MCP sessions cannot live in one of them
        argv += ["--workers", str(workers)]
        env["IDP_MCP_MCP_STATELESS"] = "true"
    process = spawn(argv, env, work / f"{name}-{port}.log")
    wait_until(lambda: status_of(port, "GET", "/healthz") == 200, 30, name, process)
    return Server(name, port, process, work / f"{name}-{port}.log")


def start_node(port: int, secret: str, work: Path) -> Server:
    node = shutil.which("node") or "node"
    process = spawn([node, "server.mjs", str(port), secret], dict(os.environ), work / "node.log", cwd=BENCH / "node")
    wait_until(lambda: status_of(port, "GET", "/.well-known/openid-configuration") == 200, 30, "node", process)
    return Server("node-oidc-provider", port, process, work / "node.log")


def start_floor(port: int, client_id: str, secret: str, work: Path) -> Server:
    argv = [PY, str(BENCH / "floor_server.py"), str(port), client_id, secret]
    process = spawn(argv, dict(os.environ), work / "floor.log")
    wait_until(lambda: status_of(port, "GET", "/healthz") == 200, 30, "floor", process)
    return Server("python-floor", port, process, work / "floor.log")


def start_sdk(port: int, work: Path) -> Server:
    process = spawn([PY, str(BENCH / "sdk_server.py"), str(port)], dict(os.environ), work / "sdk.log")
    wait_until(lambda: status_of(port, "GET", "/mcp", headers={"Accept": "text/event-stream"}) > 0, 30, "sdk", process)
    return Server("mcp-sdk", port, process, work / "sdk.log")


def cold_start(
    argv: list[str], env: dict[str, str], port: int, headers: dict[str, str], expect: int | None, log: Path
) -> float:
    """Seconds from process start to the first answer (``expect`` status, or any) to POST /mcp."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
    started = time.perf_counter()
    process = spawn(argv, env, log)
    try:
        deadline = started + 30
        while time.perf_counter() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"cold start: process exited ({process.returncode}), see {log}")
            try:
                status = status_of(port, "POST", "/mcp", body=body, headers=headers, timeout=5)
            except OSError:
                time.sleep(0.005)
                continue
            if expect is None or status == expect:
                return time.perf_counter() - started
            raise RuntimeError(f"cold start: got {status}, expected {expect}")
        raise RuntimeError("cold start: no answer in 30 s")
    finally:
        stop(process)


# --- MCP clients -----------------------------------------------------------------------------------------------


def mcp_headers(token: str | None, session: str | None = None, negotiated: bool = True) -> dict[str, str]:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if negotiated:
        headers["MCP-Protocol-Version"] = PROTOCOL
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if session:
        headers["Mcp-Session-Id"] = session
    return headers


def sse_messages(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("data:"):
            out.append(json.loads(line[5:].strip()))
    return out or [json.loads(text)]


INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": PROTOCOL,
        "capabilities": {},
        "clientInfo": {"name": "idp-mcp-bench", "version": "0"},
    },
}


async def open_sessions(base: str, token: str | None, count: int) -> list[str]:
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    semaphore = asyncio.Semaphore(CONNECTIONS)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def one() -> str:
            async with semaphore:
                response = await client.post("/mcp", json=INIT, headers=mcp_headers(token, negotiated=False))
                response.raise_for_status()
                session = response.headers["mcp-session-id"]
                notified = await client.post(
                    "/mcp",
                    json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                    headers=mcp_headers(token, session),
                )
                assert notified.status_code == 202, notified.text
                return session

        return list(await asyncio.gather(*(one() for _ in range(count))))


async def close_sessions(base: str, token: str | None, sessions: list[str]) -> None:
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    semaphore = asyncio.Semaphore(CONNECTIONS)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def one(session: str) -> None:
            async with semaphore:
                await client.delete("/mcp", headers=mcp_headers(token, session))

        await asyncio.gather(*(one(s) for s in sessions))


def call_tool(base: str, token: str | None, session: str, body: str) -> dict[str, Any]:
    response = httpx.post(f"{base}/mcp", content=body.replace("__ID__", "999999"), headers=mcp_headers(token, session))
    response.raise_for_status()
    return sse_messages(response.text)[-1]


# --- the run ---------------------------------------------------------------------------------------------------


def check_token_response(label: str, response: httpx.Response) -> list[str]:
    if response.status_code != 200:
        raise RuntimeError(f"{label}: sanity request answered {response.status_code}: {response.text[:300]}")
    return sorted(response.json())


def check_api_token(label: str, response: httpx.Response, audience: str, permissions: list[str]) -> list[str]:
    """A token response for an API resource: its access token names the API and carries every permission."""
    members = check_token_response(label, response)
    body = response.json()
    payload = body["access_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    if claims.get("aud") != audience or sorted(str(claims.get("scope", "")).split()) != sorted(permissions):
        raise RuntimeError(f"{label}: sanity request got aud {claims.get('aud')!r}, scope {claims.get('scope')!r}")
    return members


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    bench = Bench(args, work)
    res = bench.results
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if args.code == "worktree":
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "instructions"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        res["code"] = f"working tree at {head.stdout.strip()}" + (" (with uncommitted changes)" if dirty else "")
    else:
        # A consistent snapshot of a commit, for when the working tree is being edited while the bench runs.
        snapshot_dir = work / "code"
        snapshot_dir.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.code, "src", "instructions"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(snapshot_dir)], input=archive, check=True)
        for patch in args.patch:  # experiments (a .patch file), applied to the snapshot only
            subprocess.run(
                ["patch", "-s", "-p1", "-d", str(snapshot_dir), "-i", str(Path(patch).resolve())], check=True
            )
        CODE_ENV["PYTHONPATH"] = str(snapshot_dir / "src")
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", args.code], capture_output=True, text=True
        )
        res["code"] = f"commit {rev.stdout.strip()} (snapshot)" + "".join(f" + {Path(p).name}" for p in args.patch)
    res["started"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0].strip()
    res["machine"] = {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
        "oidc_provider": json.loads((BENCH / "node/node_modules/oidc-provider/package.json").read_text())["version"],
        "wrk": "wrk -t1 -c16 (" + wrk_version + ")",
        "load_at_start": loadavg(),
    }
    print(f"bench: work dir {work}; code {res['code']}; load at start {res['machine']['load_at_start']}", flush=True)

    # 1. The idp-mcp database, prepared through the core (before any server runs).
    data = work / "idp-data"
    idp_port, node_port, sdk_port = free_port(), free_port(), free_port()
    minted = work / "minted"
    n_codes, n_refresh = args.codes + 1, args.codes + 1  # one more for the sanity check
    t0 = time.monotonic()
    subprocess.run(
        [PY, str(BENCH / "idp_setup.py"), str(minted), "--codes", str(n_codes), "--refresh", str(n_refresh)],
        env=idp_env(data, idp_port),
        check=True,
        timeout=300,
    )
    setup = json.loads((minted / "setup.json").read_text())
    print(
        f"bench: idp-mcp set up and {n_codes} codes + {n_refresh} refresh tokens minted through the core in "
        f"{time.monotonic() - t0:.1f} s; one read transaction: {setup['read_transaction']}",
        flush=True,
    )
    res["read_transaction_ms"] = setup["read_transaction"]
    token = setup["mcp_access_token"]

    # 2. Cold start to the first 401 on /mcp (existing, migrated database), then the bare SDK's first answer.
    print("bench: cold starts", flush=True)
    idp_cold, sdk_cold = [], []
    for i in range(args.cold_starts):
        port = free_port()
        load = loadavg()
        idp_cold.append(
            cold_start(
                [PY, "-m", "idp_mcp.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                idp_env(data, port),
                port,
                JSON_HEADERS,
                401,
                work / f"cold-{i}.log",
            )
        )
        port = free_port()
        sdk_cold.append(
            cold_start(
                [PY, str(BENCH / "sdk_server.py"), str(port)],
                dict(os.environ),
                port,
                JSON_HEADERS,
                None,
                work / f"cold-sdk-{i}.log",
            )
        )
        print(f"  run {i + 1}: idp-mcp {idp_cold[-1]:.3f} s, SDK {sdk_cold[-1]:.3f} s  (load {load})", flush=True)
    res["measurements"]["cold_start"] = {
        "idp_runs_s": [round(x, 3) for x in idp_cold],
        "idp_median_s": round(statistics.median(idp_cold), 3),
        "sdk_runs_s": [round(x, 3) for x in sdk_cold],
        "sdk_median_s": round(statistics.median(sdk_cold), 3),
    }

    # 3. The servers.
    idp = start_idp(data, idp_port, work)
    node = start_node(node_port, setup["m2m_secret"], work)
    sdk = start_sdk(sdk_port, work)
    time.sleep(2)
    res["measurements"]["idle_rss_mb"] = {
        "idp": round(rss_mb(idp.pid), 1),
        "node": round(rss_mb(node.pid), 1),
        "sdk": round(rss_mb(sdk.pid), 1),
    }
    print(f"bench: idle RSS {res['measurements']['idle_rss_mb']} MB", flush=True)

    # 4. Token endpoint: client credentials, code + PKCE, refresh with rotation.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    idp_token_path = f"/t/{setup['tenant']}/oidc/token"
    idp_basic = base64.b64encode(f"{setup['m2m_client_id']}:{setup['m2m_secret']}".encode()).decode()
    node_basic = base64.b64encode(f"bench-m2m:{setup['m2m_secret']}".encode()).decode()
    cc = "grant_type=client_credentials"
    shapes: dict[str, dict[str, list[str]]] = {}
    shapes["cc"] = {
        "idp-mcp": check_token_response(
            "idp cc",
            httpx.post(idp.base + idp_token_path, content=cc, headers={**form, "Authorization": f"Basic {idp_basic}"}),
        ),
        "node": check_token_response(
            "node cc",
            httpx.post(node.base + "/token", content=cc, headers={**form, "Authorization": f"Basic {node_basic}"}),
        ),
    }
    print("bench: warm-up (client credentials, 2 s each)", flush=True)
    bench.wrk(
        "warmup-idp",
        idp,
        idp_token_path,
        [cc],
        {**form, "Authorization": f"Basic {idp_basic}"},
        duration=2,
        record=False,
    )
    bench.wrk(
        "warmup-node", node, "/token", [cc], {**form, "Authorization": f"Basic {node_basic}"}, duration=2, record=False
    )

    # Client credentials for an API resource: aud = its identifier, scope = the permissions of the app's m2m role.
    cc_resource = f"{cc}&resource={quote(setup['api_identifier'], safe='')}"
    shapes["cc_resource"] = {
        "idp-mcp": check_api_token(
            "idp cc resource",
            httpx.post(
                idp.base + idp_token_path, content=cc_resource, headers={**form, "Authorization": f"Basic {idp_basic}"}
            ),
            setup["api_identifier"],
            setup["api_permissions"],
        )
    }

    print("bench: token endpoint", flush=True)
    # Plain and with a resource in turns, median of three: the resource row is a ratio to the plain one.
    bench.wrk_interleaved(
        [
            ("cc/idp-mcp", idp, idp_token_path, [cc], {**form, "Authorization": f"Basic {idp_basic}"}),
            (
                "cc-resource/idp-mcp",
                idp,
                idp_token_path,
                [cc_resource],
                {**form, "Authorization": f"Basic {idp_basic}"},
            ),
        ]
    )
    bench.wrk("cc/node", node, "/token", [cc], {**form, "Authorization": f"Basic {node_basic}"})
    floor = start_floor(free_port(), setup["m2m_client_id"], setup["m2m_secret"], work)
    shapes["cc"]["python floor"] = check_token_response(
        "floor cc",
        httpx.post(floor.base + "/token", content=cc, headers={**form, "Authorization": f"Basic {idp_basic}"}),
    )
    bench.wrk("warmup-floor", floor, "/token", [cc], {**form, "Authorization": f"Basic {idp_basic}"}, duration=2,
              record=False)  # fmt: skip
    bench.wrk("cc/floor", floor, "/token", [cc], {**form, "Authorization": f"Basic {idp_basic}"})
    stop(floor.process)

    spa = setup["spa_client_id"]
    idp_codes = [line.split() for line in (minted / "codes.txt").read_text().splitlines() if line]
    node_codes = [
        line.split()
        for line in httpx.post(f"{node.base}/bench/mint?kind=code&n={n_codes}", timeout=120).text.splitlines()
        if line
    ]

    def code_body(client_id: str, code: str, verifier: str) -> str:
        return (
            f"grant_type=authorization_code&client_id={client_id}&code={code}&code_verifier={verifier}"
            f"&redirect_uri={REDIRECT_URI_ENC}"
        )

    shapes["code"] = {
        "idp-mcp": check_token_response(
            "idp code", httpx.post(idp.base + idp_token_path, content=code_body(spa, *idp_codes[0]), headers=form)
        ),
        "node": check_token_response(
            "node code", httpx.post(node.base + "/token", content=code_body("bench-spa", *node_codes[0]), headers=form)
        ),
    }
    duration_once = args.duration * 2
    bench.wrk(
        "code/idp-mcp",
        idp,
        idp_token_path,
        [code_body(spa, *c) for c in idp_codes[1:]],
        form,
        once=True,
        duration=duration_once,
        stop_path="/healthz",
    )
    bench.wrk(
        "code/node",
        node,
        "/token",
        [code_body("bench-spa", *c) for c in node_codes[1:]],
        form,
        once=True,
        duration=duration_once,
        stop_path="/jwks",
    )

    idp_refresh = [line for line in (minted / "refresh.txt").read_text().splitlines() if line]
    node_refresh = [
        line
        for line in httpx.post(f"{node.base}/bench/mint?kind=refresh&n={n_refresh}", timeout=120).text.splitlines()
        if line
    ]

    def refresh_body(client_id: str, token_value: str) -> str:
        return f"grant_type=refresh_token&client_id={client_id}&refresh_token={token_value}"

    shapes["refresh"] = {
        "idp-mcp": check_token_response(
            "idp refresh",
            httpx.post(idp.base + idp_token_path, content=refresh_body(spa, idp_refresh[0]), headers=form),
        ),
        "node": check_token_response(
            "node refresh",
            httpx.post(node.base + "/token", content=refresh_body("bench-spa", node_refresh[0]), headers=form),
        ),
    }
    bench.wrk(
        "refresh/idp-mcp",
        idp,
        idp_token_path,
        [refresh_body(spa, t) for t in idp_refresh[1:]],
        form,
        once=True,
        duration=duration_once,
        stop_path="/healthz",
    )
    bench.wrk(
        "refresh/node",
        node,
        "/token",
        [refresh_body("bench-spa", t) for t in node_refresh[1:]],
        form,
        once=True,
        duration=duration_once,
        stop_path="/jwks",
    )
    res["response_members"] = shapes
    stop(node.process)

    # 5. MCP: tools/call with bearer validation vs the bare SDK's trivial tool, then a write tool.
    print("bench: MCP tools/call", flush=True)
    idp_sessions = asyncio.run(open_sessions(idp.base, token, CONNECTIONS))
    sdk_sessions = asyncio.run(open_sessions(sdk.base, None, CONNECTIONS))

    def tool_body(name: str, arguments: str = "{}") -> str:
        params = f'{{"name":"{name}","arguments":{arguments}}}'
        return f'{{"jsonrpc":"2.0","id":__ID__,"method":"tools/call","params":{params}}}'

    read_tool = tool_body(args.read_tool)
    ping = tool_body("ping")
    create = tool_body(
        "createApplication",
        '{"name":"bench app __ID__","type":"spa","redirectUris":["http://127.0.0.1:9999/callback"]}',
    )
    for label, base, tok, session, body in (
        ("idp read", idp.base, token, idp_sessions[0], read_tool),
        ("idp create", idp.base, token, idp_sessions[0], create),
        ("sdk ping", sdk.base, None, sdk_sessions[0], ping),
    ):
        answer = call_tool(base, tok, session, body)
        if "result" not in answer or answer["result"].get("isError"):
            raise RuntimeError(f"{label}: tool call failed: {json.dumps(answer)[:400]}")
    mcp_h = {k: v for k, v in mcp_headers(token).items()}
    sdk_h = mcp_headers(None)
    bench.wrk("warmup-mcp-idp", idp, "/mcp", [read_tool], mcp_h, sessions=idp_sessions, duration=2, record=False)
    bench.wrk("warmup-mcp-sdk", sdk, "/mcp", [ping], sdk_h, sessions=sdk_sessions, duration=2, record=False)
    bench.wrk(f"mcp {args.read_tool}/idp-mcp", idp, "/mcp", [read_tool], mcp_h, sessions=idp_sessions)
    bench.wrk("mcp ping/sdk", sdk, "/mcp", [ping], sdk_h, sessions=sdk_sessions)
    if args.read_tool != "listInstructions":
        bench.wrk(
            "mcp listInstructions/idp-mcp", idp, "/mcp", [tool_body("listInstructions")], mcp_h, sessions=idp_sessions
        )
    bench.wrk("mcp createApplication/idp-mcp", idp, "/mcp", [create], mcp_h, sessions=idp_sessions)

    # 6. RSS per 1,000 initialized MCP sessions (opened, measured, closed).
    print(f"bench: RSS per {args.sessions} MCP sessions", flush=True)
    per_sessions: dict[str, Any] = {}
    for name, server, tok in (("idp", idp, token), ("sdk", sdk, None)):
        before = rss_mb(server.pid)
        load = loadavg()
        t0 = time.monotonic()
        sessions = asyncio.run(open_sessions(server.base, tok, args.sessions))
        opened_in = time.monotonic() - t0
        time.sleep(1)
        during = rss_mb(server.pid)
        asyncio.run(close_sessions(server.base, tok, sessions))
        time.sleep(1)
        after = rss_mb(server.pid)
        per_sessions[name] = {
            "rss_before_mb": round(before, 1),
            "rss_open_mb": round(during, 1),
            "rss_after_close_mb": round(after, 1),
            "delta_per_1000_mb": round((during - before) * 1000 / args.sessions, 1),
            "open_seconds": round(opened_in, 2),
            "load_before": load,
        }
        print(f"  {name}: {per_sessions[name]}", flush=True)
    res["measurements"]["sessions"] = per_sessions
    res["measurements"]["rss_end_mb"] = {"idp": round(rss_mb(idp.pid), 1), "sdk": round(rss_mb(sdk.pid), 1)}
    stop(idp.process)
    stop(sdk.process)

    # 7. Production serving: the same database behind `idp-mcp serve --workers N` (stateless MCP), client
    # credentials only (node-oidc-provider above is one process; this row is not like for like).
    if args.workers > 1:
        print(f"bench: idp-mcp serve --workers {args.workers}", flush=True)
        multi = start_idp(data, free_port(), work, name="idp-mcp-workers", workers=args.workers)
        time.sleep(2)
        headers = {**form, "Authorization": f"Basic {idp_basic}"}
        bench.wrk("warmup-workers", multi, idp_token_path, [cc], headers, duration=2, record=False)
        bench.wrk("cc/idp-mcp-workers", multi, idp_token_path, [cc], headers)
        stop(multi.process)
    res["workers"] = args.workers
    res["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return res


# --- the table -------------------------------------------------------------------------------------------------


def verdict(key: str, ratio: float | None, p99: float) -> tuple[str, str]:
    """The target's text and PASS / FALL SHORT."""
    text, check = TARGETS[key]
    return text, ("PASS" if check(ratio, p99) else "FALL SHORT")


def table(res: dict[str, Any], read_tool: str) -> str:
    m = res["measurements"]
    dash = "\u2014"
    rows = [
        "| scenario | idp-mcp req/s | p50 ms | p99 ms | CPU ms/req | reference | ref req/s | ref p50 | ref p99 "
        "| ref CPU ms/req | ratio | target | result | load before (1/5/15 min) · others' CPU (cores) |",
        "|" + "---|" * 14,
    ]

    def load_cell(*keys: str) -> str:
        parts = []
        for k in keys:
            x = m[k]
            parts.append(f"{x['load_before']} · {x['cpu']['others_cores']:.2f}{' BUSY' if x['busy'] else ''}")
        return " / ".join(parts)

    def figures(x: dict[str, Any]) -> str:
        cpu = 1000 * x["cpu"]["server_cores"] / x["rps"]  # CPU the server used per request (all its threads)
        return f"{x['rps']:.0f} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {cpu:.2f}"

    def row(label: str, a: str, ref: str, b: str | None, key: str | None, load: str) -> None:
        x, y = m[a], (m[b] if b else None)
        ratio = x["rps"] / y["rps"] if y else None
        text, result = verdict(key, ratio, x["p99_ms"]) if key else ("(report)", dash)
        if x["non2xx"] or x["errors"] or (y is not None and (y["non2xx"] or y["errors"])):
            result = "FAIL (non-2xx or errors)"  # a figure made of refusals or errors measures nothing
        ref_cells = f"{ref} | {figures(y)}" if y else f"{dash} | {dash} | {dash} | {dash} | {dash}"
        ratio_cell = f"{ratio:.2f}\u00d7" if ratio is not None else dash
        rows.append(f"| {label} | {figures(x)} | {ref_cells} | {ratio_cell} | {text} | {result} | {load} |")

    for key, label in (
        ("cc", "client credentials, 16 conns"),
        ("code", "code + PKCE exchange (each code once)"),
        ("refresh", "refresh + rotation (each token once)"),
    ):
        row(label, f"{key}/idp-mcp", "node-oidc-provider", f"{key}/node", key,
            load_cell(f"{key}/idp-mcp", f"{key}/node"))  # fmt: skip
        if key == "cc" and "cc-resource/idp-mcp" in m:
            row("client credentials with resource (an API; its m2m role's 2 permissions)", "cc-resource/idp-mcp",
                "idp-mcp, plain client credentials", "cc/idp-mcp", "cc_resource",
                load_cell("cc-resource/idp-mcp", "cc/idp-mcp"))  # fmt: skip
    if "cc/floor" in m:
        row("client credentials, Python floor (Starlette + PyJWT, no DB, no authlib; not a product)", "cc/floor",
            "node-oidc-provider", "cc/node", None, load_cell("cc/floor"))  # fmt: skip
    if "cc/idp-mcp-workers" in m:
        row(f"client credentials, idp-mcp serve --workers {res['workers']} (node: 1 process)", "cc/idp-mcp-workers",
            "node-oidc-provider", "cc/node", None, load_cell("cc/idp-mcp-workers"))  # fmt: skip
    read = f"mcp {read_tool}/idp-mcp"
    row(f"MCP tools/call {read_tool} (bearer)", read, "bare SDK, trivial tool", "mcp ping/sdk", "mcp_read",
        load_cell(read, "mcp ping/sdk"))  # fmt: skip
    if read_tool != "listInstructions":
        other = "mcp listInstructions/idp-mcp"
        row("MCP tools/call listInstructions (bearer; no DB in the tool)", other, "bare SDK, trivial tool",
            "mcp ping/sdk", None, load_cell(other))  # fmt: skip
    write = "mcp createApplication/idp-mcp"
    row("MCP tools/call createApplication (writes)", write, "", None, None, load_cell(write))
    blank = f"{dash} | {dash} | {dash}"
    c = m["cold_start"]
    ok = "PASS" if c["idp_median_s"] <= 1.0 else "FALL SHORT"
    rows.append(
        f"| cold start \u2192 first 401 on /mcp (median of {len(c['idp_runs_s'])}) | {c['idp_median_s']:.2f} s "
        f"| {blank} | bare SDK \u2192 first answer | {c['sdk_median_s']:.2f} s | {blank} | {dash} | \u2264 1.0 s "
        f"| {ok} | runs {', '.join(f'{x:.2f}' for x in c['idp_runs_s'])} |"
    )
    r = m["idle_rss_mb"]
    ok = "PASS" if r["idp"] <= 80 else "FALL SHORT"
    rows.append(
        f"| idle RSS after start | {r['idp']:.0f} MB | {blank} | bare SDK / node-oidc-provider "
        f"| {r['sdk']:.0f} / {r['node']:.0f} MB | {blank} | {dash} | \u2264 80 MB | {ok} | |"
    )
    sessions = m["sessions"]
    rows.append(
        f"| RSS per 1,000 MCP sessions | +{sessions['idp']['delta_per_1000_mb']:.1f} MB | {blank} | bare SDK "
        f"| +{sessions['sdk']['delta_per_1000_mb']:.1f} MB | {blank} | {dash} | (report) | {dash} "
        f"| after DELETE: idp-mcp {sessions['idp']['rss_after_close_mb']:.0f} MB, "
        f"SDK {sessions['sdk']['rss_after_close_mb']:.0f} MB |"
    )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per throughput measurement")
    parser.add_argument("--codes", type=int, default=5000, help="codes and refresh tokens minted per server")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--cold-starts", type=int, default=5)
    parser.add_argument(
        "--workers", type=int, default=2, help="also measure client credentials under serve --workers N (0: skip)"
    )
    parser.add_argument("--read-tool", default="getTenantInfo", choices=["getTenantInfo", "listInstructions"])
    parser.add_argument(
        "--profile",
        choices=["gil", "wall"],
        default=None,
        help="attach py-spy to idp-mcp during its scenarios: 'gil' samples the thread holding the GIL "
        "(CPU), 'wall' every thread that is not idle (lock waits show); figures are then not "
        "comparable",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    parser.add_argument(
        "--code", default="worktree", help="'worktree' (default) or a git ref to benchmark a snapshot of (e.g. HEAD)"
    )
    parser.add_argument(
        "--patch",
        action="append",
        default=[],
        help="with --code REF: apply this patch to the snapshot first (an experiment; repeatable)",
    )
    args = parser.parse_args()
    if args.patch and args.code == "worktree":
        parser.error("--patch needs --code REF (patches apply to a snapshot, never to the working tree)")
    if not shutil.which("wrk"):
        print("wrk is missing: run bench/run (it installs it)", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    if args.profile:
        for old in RESULTS.glob(f"profile-{args.profile}-*.txt"):
            old.unlink()

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    work = Path(tempfile.mkdtemp(prefix="idp-mcp-bench-"))
    started = time.monotonic()
    try:
        res = run(args, work)
    finally:
        stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    res["elapsed_seconds"] = round(time.monotonic() - started, 1)
    rendered = table(res, args.read_tool)
    lines = [
        f"idp-mcp benchmark, {res['started']} → {res['finished']} ({res['elapsed_seconds']} s), "
        f"{res['machine']['cpus']} CPUs, Python {res['machine']['python']}, node {res['machine']['node']}, "
        f"oidc-provider {res['machine']['oidc_provider']}, {res['machine']['wrk']}; load at start "
        f"{res['machine']['load_at_start']}; code: {res['code']}"
        + (" — PROFILED RUN (py-spy attached): not comparable" if args.profile else ""),
        "",
        rendered,
        "",
        "Response members (sanity request before each scenario): "
        + "; ".join(
            f"{k}: " + " / ".join(f"{name} {members}" for name, members in v.items())
            for k, v in res["response_members"].items()
        ),
        f"One read transaction on the server's NullPool engine vs a pooled engine (ms): {res['read_transaction_ms']}",
        "CPU ms/req = CPU time of the server process (all threads) during the window / requests: the figure least "
        "disturbed by a busy machine. others' CPU = cores used by processes other than the measured server and the "
        f"load generator during the window; BUSY when above {BUSY_CORES}.",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    suffix = f"-profiled-{args.profile}" if args.profile else ""
    (RESULTS / f"bench-{stamp}{suffix}.md").write_text(text + "\n")
    (RESULTS / f"bench-{stamp}{suffix}.json").write_text(json.dumps(res, indent=2) + "\n")
    if args.profile:
        for profile in bench_profiles(RESULTS, args.profile):
            summary = subprocess.run(
                [PY, str(BENCH / "profile_summary.py"), str(profile)], capture_output=True, text=True
            )
            profile.with_suffix(".summary.txt").write_text(summary.stdout)
            print(f"\n== {profile.name}\n{summary.stdout}")
    return 0


def bench_profiles(directory: Path, mode: str) -> list[Path]:
    return sorted(p for p in directory.glob(f"profile-{mode}-*.txt") if not p.name.endswith(".summary.txt"))


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        stop_all()
        raise SystemExit(130) from None
