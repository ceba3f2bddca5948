"""bench/run: idp-mcp against node-oidc-provider 9.x (token endpoint) and the bare MCP SDK (/mcp), on loopback.

One load generator (wrk, 1 thread, 16 connections, bench/wrk/bodies.lua) drives every server. Every load loop is
bounded in time (wrk -d) and, for codes and refresh tokens, in count (each one is presented once, then wrk stops
itself; a fresh set is minted right before each trial). Each scenario runs three trials in turns with the one it is
compared with (a, b, a, b, a, b) and reports each figure's median; any non-2xx answer or error in any trial fails
the row. Only 127.0.0.1 is ever a target. Prints one table and writes it to bench/results/.

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


@dataclass(frozen=True)
class Target:
    """A bound on the ratio of one figure, idp-mcp's ÷ the reference's, both medians of three trials taken in turns
    in the same run."""

    figure: str  # "req/s": at least ``bound``; "CPU" (ms per request) or "p99": at most ``bound``
    bound: float
    text: str

    def met(self, ratio: float) -> bool:
        return ratio >= self.bound if self.figure == "req/s" else ratio <= self.bound


FIGURES = {"req/s": "rps", "CPU": "cpu_ms_per_req", "p99": "p99_ms"}  # a ratio's figure -> its key in the results
TARGETS = {
    "cc": (Target("CPU", 1.5, "CPU/req ≤ 1.5\u00d7 node's"), Target("p99", 1.0, "p99 ≤ node's")),
    "code": (Target("req/s", 0.8, "≥ 0.8\u00d7 node"),),
    "refresh": (Target("req/s", 0.8, "≥ 0.8\u00d7 node"),),
    "mcp_read": (Target("req/s", 0.8, "≥ 0.8\u00d7 SDK"),),
    # Listing every tool the scopes allow (their schemas) must not cost much more than one small read tool call.
    "tools_list": (Target("CPU", 1.5, "CPU/call ≤ 1.5\u00d7 getTenantInfo's"),),
    # Resolving the resource and evaluating the app's roles must cost little next to the token itself.
    "cc_resource": (Target("req/s", 0.85, "≥ 0.85\u00d7 plain client credentials"),),
}
COLD_START_S = 1.0
IDLE_RSS_OVER_SDK_MB = 10.0


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

    @property
    def cpu_ms_per_req(self) -> float:
        """CPU the server used per request (all its processes and threads)."""
        return 1000 * self.cpu["server_cores"] / self.rps

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "cpu_ms_per_req": round(self.cpu_ms_per_req, 3), "busy": self.busy}


def median_of(trials: list[Measured]) -> dict[str, Any]:
    """Each figure's median over the trials (the JSON keeps every trial); any non-2xx answer or error in any trial
    fails the row; the load shown is the busiest trial's."""

    def median(figure: Callable[[Measured], float]) -> float:
        return statistics.median(figure(m) for m in trials)

    busiest = max(trials, key=lambda m: m.cpu["others_cores"])
    return {
        "rps": median(lambda m: m.rps),
        "p50_ms": median(lambda m: m.p50_ms),
        "p99_ms": median(lambda m: m.p99_ms),
        "cpu_ms_per_req": median(lambda m: m.cpu_ms_per_req),
        "non2xx": sum(m.non2xx for m in trials),
        "errors": sum(m.errors for m in trials),
        "load_before": busiest.load_before,
        "others_cores": busiest.cpu["others_cores"],
        "busy": busiest.busy,
        "trials": [m.as_dict() for m in trials],
    }


@dataclass
class Scenario:
    """What one wrk load sends to one server. ``bodies`` is a function for codes and refresh tokens: it mints a
    fresh set right before each trial, each body is then sent once, and wrk stops itself when they run out (a
    request still asked for goes to ``stop_path``)."""

    label: str
    server: Server
    path: str
    bodies: list[str] | Callable[[], list[str]]
    headers: dict[str, str]
    sessions: list[str] | None = None
    stop_path: str = "/"


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.results: dict[str, Any] = {"measurements": {}, "notes": []}
        self.profiles: list[Path] = []

    def wrk(self, scenario: Scenario, duration: float | None = None, profile: bool = False) -> Measured:
        """One wrk run, bounded by ``duration`` (twice --duration for bodies sent once)."""
        once = callable(scenario.bodies)
        bodies = scenario.bodies() if callable(scenario.bodies) else scenario.bodies
        duration = duration or self.args.duration * (2 if once else 1)
        server = scenario.server
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", scenario.label)
        stem = self.work / f"wrk-{safe}"
        bodies_file, headers_file, sessions_file = (stem.with_suffix(s) for s in (".bodies", ".headers", ".sessions"))
        bodies_file.write_text("\n".join(bodies) + "\n")
        headers_file.write_text("".join(f"{k}: {v}\n" for k, v in scenario.headers.items()))
        sessions_file.write_text("\n".join(scenario.sessions or []) + "\n")
        out = stem.with_suffix(".json")
        env = {
            **os.environ,
            "BENCH_BODIES": str(bodies_file),
            "BENCH_HEADERS": str(headers_file),
            "BENCH_SESSIONS": str(sessions_file) if scenario.sessions else "",
            "BENCH_PATH": scenario.path,
            "BENCH_ONCE": "1" if once else "0",
            "BENCH_STOP_PATH": scenario.stop_path,
            "BENCH_OUT": str(out),
        }
        profiler = None
        if profile and self.args.profile and server.name == "idp-mcp":
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
        return Measured(
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

    def trials(self, scenarios: list[Scenario], trials: int = 3) -> None:
        """Run the scenarios in turns (a, b, a, b, a, b), ``trials`` times each, and record each one's medians: a
        ratio between two of them then does not hang on one moment of the machine. With --profile, py-spy watches
        idp-mcp's first trial."""
        taken: dict[str, list[Measured]] = {s.label: [] for s in scenarios}
        for trial in range(trials):
            for scenario in scenarios:
                m = self.wrk(scenario, profile=trial == 0)
                taken[scenario.label].append(m)
                flag = "  BUSY" if m.busy else ""
                print(
                    f"  {scenario.label:<30} [{trial + 1}/{trials}] {m.rps:8.0f} req/s  p50 {m.p50_ms:6.2f} ms"
                    f"  p99 {m.p99_ms:6.2f} ms  CPU {m.cpu_ms_per_req:5.2f} ms/req  n={m.requests}"
                    f" non2xx={m.non2xx} err={m.errors}  load {m.load_before}"
                    f"  cpu server {m.cpu['server_cores']} others {m.cpu['others_cores']}{flag}",
                    flush=True,
                )
        for label, measured in taken.items():
            x = self.results["measurements"][label] = median_of(measured)
            print(
                f"  {label:<30} median {x['rps']:8.0f} req/s  p50 {x['p50_ms']:6.2f} ms  p99 {x['p99_ms']:6.2f} ms"
                f"  CPU {x['cpu_ms_per_req']:5.2f} ms/req  non2xx={x['non2xx']} err={x['errors']}",
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
    t0 = time.monotonic()
    subprocess.run([PY, str(BENCH / "idp_setup.py"), str(minted)], env=idp_env(data, idp_port), check=True, timeout=300)
    setup = json.loads((minted / "setup.json").read_text())
    print(
        f"bench: idp-mcp set up through the core in {time.monotonic() - t0:.1f} s; "
        f"one read transaction: {setup['read_transaction']}",
        flush=True,
    )
    res["read_transaction_ms"] = setup["read_transaction"]
    token = setup["mcp_access_token"]

    def idp_mint(kind: str, n: int) -> list[str]:
        """Fresh codes or refresh tokens, written through the core by another process while the server runs (not
        synced to disk one by one: that is setup, not what is measured)."""
        env = {**idp_env(data, idp_port), "IDP_MCP_SQLITE_SYNCHRONOUS": "normal"}
        argv = [PY, str(BENCH / "idp_setup.py"), str(minted), "--mint", kind, str(n)]
        subprocess.run(argv, env=env, check=True, timeout=300)
        return (minted / f"{kind}.txt").read_text().splitlines()

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

    # 4. Token endpoint: client credentials, code + PKCE, refresh with rotation; idp-mcp and node in turns.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    idp_token_path = f"/t/{setup['tenant']}/oidc/token"
    idp_basic = base64.b64encode(f"{setup['m2m_client_id']}:{setup['m2m_secret']}".encode()).decode()
    node_basic = base64.b64encode(f"bench-m2m:{setup['m2m_secret']}".encode()).decode()
    idp_cc_headers = {**form, "Authorization": f"Basic {idp_basic}"}
    node_cc_headers = {**form, "Authorization": f"Basic {node_basic}"}
    cc = "grant_type=client_credentials"
    # Client credentials for an API resource: aud = its identifier, scope = the permissions of the app's m2m role.
    cc_resource = f"{cc}&resource={quote(setup['api_identifier'], safe='')}"
    floor = start_floor(free_port(), setup["m2m_client_id"], setup["m2m_secret"], work)
    shapes: dict[str, dict[str, list[str]]] = {}
    shapes["cc"] = {
        "idp-mcp": check_token_response(
            "idp cc", httpx.post(idp.base + idp_token_path, content=cc, headers=idp_cc_headers)
        ),
        "node": check_token_response("node cc", httpx.post(node.base + "/token", content=cc, headers=node_cc_headers)),
        "python floor": check_token_response(
            "floor cc", httpx.post(floor.base + "/token", content=cc, headers=idp_cc_headers)
        ),
    }
    shapes["cc_resource"] = {
        "idp-mcp": check_api_token(
            "idp cc resource",
            httpx.post(idp.base + idp_token_path, content=cc_resource, headers=idp_cc_headers),
            setup["api_identifier"],
            setup["api_permissions"],
        )
    }
    cc_runs = [
        Scenario("cc/idp-mcp", idp, idp_token_path, [cc], idp_cc_headers),
        Scenario("cc/node", node, "/token", [cc], node_cc_headers),
        Scenario("cc-resource/idp-mcp", idp, idp_token_path, [cc_resource], idp_cc_headers),
        Scenario("cc/floor", floor, "/token", [cc], idp_cc_headers),
    ]
    print("bench: warm-up (client credentials, 2 s each)", flush=True)
    for scenario in cc_runs:
        bench.wrk(scenario, duration=2)
    print("bench: client credentials", flush=True)
    bench.trials(cc_runs)
    stop(floor.process)

    def node_mint(kind: str, n: int) -> list[str]:
        answer = httpx.post(f"{node.base}/bench/mint?kind={kind}&n={n}", timeout=120)
        answer.raise_for_status()
        return [line for line in answer.text.splitlines() if line]

    def code_body(client_id: str, line: str) -> str:
        code, verifier = line.split()
        return (
            f"grant_type=authorization_code&client_id={client_id}&code={code}&code_verifier={verifier}"
            f"&redirect_uri={REDIRECT_URI_ENC}"
        )

    def refresh_body(client_id: str, token_value: str) -> str:
        return f"grant_type=refresh_token&client_id={client_id}&refresh_token={token_value}"

    Mint = Callable[[str, int], list[str]]

    def fresh(mint: Mint, kind: str, body: Callable[[str, str], str], client_id: str) -> Callable[[], list[str]]:
        """--codes new codes or refresh tokens for one trial, minted when it is about to start."""
        return lambda: [body(client_id, line) for line in mint(kind, args.codes)]

    sides: list[tuple[str, Server, str, str, Mint, str]] = [
        ("idp-mcp", idp, idp_token_path, setup["spa_client_id"], idp_mint, "/healthz"),
        ("node", node, "/token", "bench-spa", node_mint, "/jwks"),
    ]
    for kind, body in (("code", code_body), ("refresh", refresh_body)):
        print(f"bench: {kind} (each presented once, minted right before its trial)", flush=True)
        shapes[kind] = {
            name: check_token_response(
                f"{name} {kind}", httpx.post(server.base + path, content=body(client, mint(kind, 1)[0]), headers=form)
            )
            for name, server, path, client, mint, _ in sides
        }
        bench.trials(
            [
                Scenario(f"{kind}/{name}", server, path, fresh(mint, kind, body, client), form, stop_path=stop_path)
                for name, server, path, client, mint, stop_path in sides
            ]
        )
    res["response_members"] = shapes
    stop(node.process)

    # 5. MCP: tools/call with bearer validation vs the bare SDK's trivial tool, tools/list, then a write tool.
    print("bench: MCP", flush=True)
    idp_sessions = asyncio.run(open_sessions(idp.base, token, CONNECTIONS))
    sdk_sessions = asyncio.run(open_sessions(sdk.base, None, CONNECTIONS))

    def tool_body(name: str, arguments: str = "{}") -> str:
        params = f'{{"name":"{name}","arguments":{arguments}}}'
        return f'{{"jsonrpc":"2.0","id":__ID__,"method":"tools/call","params":{params}}}'

    list_tools = '{"jsonrpc":"2.0","id":__ID__,"method":"tools/list","params":{}}'
    ping = tool_body("ping")
    create = tool_body(
        "createApplication",
        '{"name":"bench app __ID__","type":"spa","redirectUris":["http://127.0.0.1:9999/callback"]}',
    )
    for label, base, tok, session, call in (
        ("idp getTenantInfo", idp.base, token, idp_sessions[0], tool_body("getTenantInfo")),
        ("idp listInstructions", idp.base, token, idp_sessions[0], tool_body("listInstructions")),
        ("idp create", idp.base, token, idp_sessions[0], create),
        ("sdk ping", sdk.base, None, sdk_sessions[0], ping),
    ):
        answer = call_tool(base, tok, session, call)
        if "result" not in answer or answer["result"].get("isError"):
            raise RuntimeError(f"{label}: tool call failed: {json.dumps(answer)[:400]}")
    listed = call_tool(idp.base, token, idp_sessions[0], list_tools).get("result", {}).get("tools")
    if not listed:
        raise RuntimeError(f"idp tools/list: no tools in the answer: {listed!r}")
    res["mcp_tools_listed"] = len(listed)
    mcp_h = mcp_headers(token)
    sdk_h = mcp_headers(None)

    def idp_call(label: str, body: str) -> Scenario:
        return Scenario(f"mcp {label}/idp-mcp", idp, "/mcp", [body], mcp_h, sessions=idp_sessions)

    reads = [
        idp_call("getTenantInfo", tool_body("getTenantInfo")),
        Scenario("mcp ping/sdk", sdk, "/mcp", [ping], sdk_h, sessions=sdk_sessions),
        idp_call("tools-list", list_tools),
        idp_call("listInstructions", tool_body("listInstructions")),
    ]
    for scenario in reads[:2]:
        bench.wrk(scenario, duration=2)
    bench.trials(reads)
    bench.trials([idp_call("createApplication", create)])

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
        workers = Scenario("cc/idp-mcp-workers", multi, idp_token_path, [cc], idp_cc_headers)
        bench.wrk(workers, duration=2)
        bench.trials([workers])
        stop(multi.process)
    res["workers"] = args.workers
    res["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return res


# --- the table -------------------------------------------------------------------------------------------------


def table(res: dict[str, Any], read_tool: str) -> str:
    """The results as a Markdown table: each wrk figure is the median of three trials taken in turns with its
    reference (all three in the JSON and, for the figure the target is about, in the trials column)."""
    m = res["measurements"]
    dash = "\u2014"
    rows = [
        "| scenario | idp-mcp req/s | p50 ms | p99 ms | CPU ms/req | reference | ref req/s | ref p50 | ref p99 "
        "| ref CPU ms/req | ratio | target | result | trials (idp-mcp / ref) "
        "| load before (1/5/15 min) · others' CPU (cores), busiest trial |",
        "|" + "---|" * 15,
    ]

    def load(x: dict[str, Any]) -> str:
        return f"{x['load_before']} · {x['others_cores']:.2f}{' BUSY' if x['busy'] else ''}"

    def figures(x: dict[str, Any]) -> str:
        return f"{x['rps']:.0f} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['cpu_ms_per_req']:.2f}"

    def trials(x: dict[str, Any], figure: str) -> str:
        return ", ".join(f"{t[FIGURES[figure]]:.{0 if figure == 'req/s' else 2}f}" for t in x["trials"])

    def row(label: str, a: str, ref: str, b: str | None, targets: tuple[Target, ...] = ()) -> None:
        x, y = m[a], (m[b] if b else None)
        shown = [t.figure for t in targets] or ["req/s"]  # a row without a target reports its req/s ratio
        ratios = {f: x[FIGURES[f]] / y[FIGURES[f]] for f in shown} if y else {}
        missed = [t.figure for t in targets if not t.met(ratios[t.figure])]
        text = "; ".join(t.text for t in targets) or "(report)"
        result = dash if not targets else "PASS" if not missed else f"FALL SHORT ({', '.join(missed)})"
        if any(z["non2xx"] or z["errors"] for z in (x, y) if z):
            result = "FAIL (non-2xx or errors)"  # a figure made of refusals or errors measures nothing
        ref_cells = f"{ref} | {figures(y)}" if y else f"{dash} | {dash} | {dash} | {dash} | {dash}"
        ratio_cell = " · ".join(f"{f} {r:.2f}\u00d7" for f, r in ratios.items()) or dash
        trials_cell = f"{shown[0]}: " + " / ".join(trials(z, shown[0]) for z in (x, y) if z)
        load_cell = " / ".join(load(z) for z in (x, y) if z)
        rows.append(
            f"| {label} | {figures(x)} | {ref_cells} | {ratio_cell} | {text} | {result} | {trials_cell} | {load_cell} |"
        )

    node = "node-oidc-provider"
    row("client credentials, 16 conns", "cc/idp-mcp", node, "cc/node", TARGETS["cc"])
    row("client credentials with resource (an API; its m2m role's 2 permissions)", "cc-resource/idp-mcp",
        "idp-mcp, plain client credentials", "cc/idp-mcp", TARGETS["cc_resource"])  # fmt: skip
    row("code + PKCE exchange (each code once)", "code/idp-mcp", node, "code/node", TARGETS["code"])
    row("refresh + rotation (each token once)", "refresh/idp-mcp", node, "refresh/node", TARGETS["refresh"])
    row("client credentials, Python floor (Starlette + PyJWT, no DB, no authlib; not a product)", "cc/floor", node,
        "cc/node")  # fmt: skip
    if "cc/idp-mcp-workers" in m:
        row(f"client credentials, idp-mcp serve --workers {res['workers']} (node: 1 process, trials not in turns "
            "with it)", "cc/idp-mcp-workers", node, "cc/node")  # fmt: skip
    sdk = "bare SDK, trivial tool"
    row(f"MCP tools/call {read_tool} (bearer)", f"mcp {read_tool}/idp-mcp", sdk, "mcp ping/sdk", TARGETS["mcp_read"])
    other = "getTenantInfo" if read_tool == "listInstructions" else "listInstructions"
    row(f"MCP tools/call {other} (bearer)", f"mcp {other}/idp-mcp", sdk, "mcp ping/sdk")
    row(f"MCP tools/list (all {res['mcp_tools_listed']} tools the scopes allow)", "mcp tools-list/idp-mcp",
        "idp-mcp, tools/call getTenantInfo", "mcp getTenantInfo/idp-mcp", TARGETS["tools_list"])  # fmt: skip
    row("MCP tools/call createApplication (writes)", "mcp createApplication/idp-mcp", "", None)
    blank = f"{dash} | {dash} | {dash}"
    c = m["cold_start"]
    ok = "PASS" if c["idp_median_s"] <= COLD_START_S else "FALL SHORT"
    rows.append(
        f"| cold start \u2192 first 401 on /mcp (median of {len(c['idp_runs_s'])}) | {c['idp_median_s']:.2f} s "
        f"| {blank} | bare SDK \u2192 first answer | {c['sdk_median_s']:.2f} s | {blank} | {dash} "
        f"| \u2264 {COLD_START_S} s | {ok} | runs {', '.join(f'{x:.2f}' for x in c['idp_runs_s'])} "
        f"/ {', '.join(f'{x:.2f}' for x in c['sdk_runs_s'])} | |"
    )
    r = m["idle_rss_mb"]
    over = r["idp"] - r["sdk"]
    ok = "PASS" if over <= IDLE_RSS_OVER_SDK_MB else "FALL SHORT"
    rows.append(
        f"| idle RSS after start | {r['idp']:.0f} MB | {blank} | bare SDK / node-oidc-provider "
        f"| {r['sdk']:.0f} / {r['node']:.0f} MB | {blank} | {over:+.0f} MB vs SDK "
        f"| \u2264 +{IDLE_RSS_OVER_SDK_MB:.0f} MB vs the bare SDK | {ok} | | |"
    )
    sessions = m["sessions"]
    rows.append(
        f"| RSS per 1,000 MCP sessions | +{sessions['idp']['delta_per_1000_mb']:.1f} MB | {blank} | bare SDK "
        f"| +{sessions['sdk']['delta_per_1000_mb']:.1f} MB | {blank} | {dash} | (report) | {dash} "
        f"| after DELETE: idp-mcp {sessions['idp']['rss_after_close_mb']:.0f} MB, "
        f"SDK {sessions['sdk']['rss_after_close_mb']:.0f} MB | |"
    )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per throughput measurement")
    parser.add_argument("--codes", type=int, default=5000, help="codes and refresh tokens minted per server and trial")
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
        help="attach py-spy to idp-mcp during the first trial of its scenarios: 'gil' samples the thread holding "
        "the GIL (CPU), 'wall' every thread that is not idle (lock waits show); figures are then not comparable",
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
