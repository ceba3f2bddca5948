"""Safe outbound fetch: an HTTP request to a URL someone else chose, without letting that URL reach inside our
network or hold up the server. Every outbound request goes through here: client ID metadata documents
(:meth:`SafeFetcher.get_json`) and upstream identity providers (discovery, JWKS, token, userinfo; through
``oauth.upstream_http`` on :meth:`SafeFetcher.request`), each with a :class:`FetchPolicy` of its own.

What it guarantees:

- https only (plain http only to a loopback name, under a tests-only policy flag), no redirects, a size cap, one
  overall deadline (DNS, connect, TLS and every read inside it). The environment's proxy settings are ignored: a
  proxy would make the connection to a host we did not check.
- Public addresses only (checked on what the name resolves to), unless the policy allows private ones (tests). The
  name is resolved once and the connection goes to an address that was checked, the certificate still verified for
  the name: resolving again to connect would let DNS answer a public address to the check and a private one to the
  connection (DNS rebinding).
- Async on the event loop: a hanging host holds a socket, not a thread. Name resolution, which is blocking, runs in
  a small pool of its own, inside the deadline; a resolver that hangs ties up that pool only.
- A cap on fetches in flight, per host and in all: past it a fetch fails at once, it does not queue.
- :meth:`SafeFetcher.get_json` only: failures are remembered for a short while (the same URL is not fetched again
  until then; bounded memory) and concurrent requests for one URL share one fetch.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anyio

if TYPE_CHECKING:
    import httpx

MAX_ADDRESSES_TRIED = 4
#: Failures remembered at once; the oldest are forgotten first.
MAX_REMEMBERED_FAILURES = 4096
DNS_THREADS = 4


#: Why a fetch failed, for callers that word their own messages (see ``oauth.upstream_http``).
FailureKind = Literal[
    "invalid_url",
    "scheme",
    "dns",
    "not_public",
    "busy",
    "timeout",
    "unreachable",
    "redirect",
    "too_large",
    "status",
    "not_json",
    "failed",
]


class OutboundError(Exception):
    """A fetch refused or failed; ``message`` says why, for whoever asked for the URL."""

    def __init__(self, message: str, *, kind: FailureKind = "failed", transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.kind: FailureKind = kind
        #: A refusal of ours (a cap reached), not a failure of the URL: not remembered against it.
        self.transient = transient


@dataclass(frozen=True)
class Response:
    """What a host answered: the status (any, not only 200) and the body (at most the policy's ``max_bytes``)."""

    status: int
    body: bytes


class _Unreachable(Exception):
    """This address did not take the connection; the next one the host resolves to may."""


@dataclass(frozen=True)
class FetchPolicy:
    #: What is fetched, for messages: "client ID metadata document".
    what: str
    timeout: float
    max_bytes: int
    max_in_flight: int = 32
    max_in_flight_per_host: int = 4
    failure_ttl: float = 30.0
    allow_private_addresses: bool = False  # tests only
    #: Plain http to a loopback name (localhost, 127.0.0.1, ::1), resolving to loopback addresses only. Tests only.
    allow_http_loopback: bool = False
    ca_bundle: Path | None = None  # tests only


_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one (mapped, or 6to4) is judged as the IPv4 address it reaches.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            ip = embedded
        elif ip.is_site_local:  # deprecated fec0::/10, which ipaddress still counts as global
            return False
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
    )


def resolve_host(host: str, port: int, what: str, *, allow_private: bool = False) -> list[str]:
    """The addresses ``host`` resolves to, each of them public unless ``allow_private`` (tests only). Blocking."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise OutboundError(f"The host {host} of the {what} does not resolve.", kind="dns") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private and not all(is_public_address(address) for address in addresses):
        raise OutboundError(f"The {what} host {host} resolves to a non-public address; refused.", kind="not_public")
    if not addresses:
        raise OutboundError(f"The host {host} of the {what} does not resolve.", kind="dns")
    return addresses


def _resolve_loopback(host: str, port: int, what: str) -> list[str]:
    """For plain http (tests only): the loopback addresses of a loopback name; anything else is refused."""
    addresses = resolve_host(host, port, what, allow_private=True)
    if not all(ipaddress.ip_address(address).is_loopback for address in addresses):
        raise OutboundError(f"The {what} host {host} is reached over http but is not loopback; refused.", kind="scheme")
    return addresses


class SafeFetcher:
    """Fetches JSON documents under a :class:`FetchPolicy`. Safe to share between threads and event loops."""

    def __init__(self, policy: FetchPolicy, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._monotonic = monotonic  # of the failure window (tests move it on instead of waiting)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._in_flight_by_host: dict[str, int] = {}
        self._failures: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._shared: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[dict[str, object]]]] = {}
        self._dns = ThreadPoolExecutor(max_workers=DNS_THREADS, thread_name_prefix="outbound-dns")
        self._verify: ssl.SSLContext | None = None

    async def get_json(self, url: str) -> dict[str, object]:
        """The JSON object at ``url``, or :class:`OutboundError`. A URL that failed within ``failure_ttl`` fails
        again at once with the same message, without a fetch; concurrent calls for one URL share one fetch."""
        remembered = self._remembered_failure(url)
        if remembered is not None:
            raise OutboundError(remembered)
        loop = asyncio.get_running_loop()
        with self._lock:
            shared = self._shared.get(url)
            owner = shared is None or shared[0] is not loop
            if owner:
                future: asyncio.Future[dict[str, object]] = loop.create_future()
                # Read the outcome even when nobody else waits, so asyncio does not log it as never retrieved.
                future.add_done_callback(lambda done: done.cancelled() or done.exception())
                self._shared[url] = (loop, future)
            else:
                assert shared is not None
                future = shared[1]
        if not owner:
            return copy.deepcopy(await asyncio.shield(future))
        try:
            document = await self._get_json(url)
        except OutboundError as exc:
            future.set_exception(OutboundError(exc.message))
            raise
        except BaseException:  # cancelled (the client went away) or worse: the others get a plain failure
            future.set_exception(OutboundError(f"The {self.policy.what} could not be fetched."))
            raise
        else:
            future.set_result(document)
            return copy.deepcopy(document)
        finally:
            with self._lock:
                if self._shared.get(url, (None, None))[1] is future:
                    del self._shared[url]

    async def _get_json(self, url: str) -> dict[str, object]:
        what = self.policy.what
        try:
            response = await self.request("GET", url, headers={"Accept": "application/json"})
            if response.status != 200:
                raise OutboundError(f"Fetching the {what} answered HTTP {response.status}.", kind="status")
            try:
                document = json.loads(response.body)
            except (ValueError, RecursionError) as exc:  # deeply nested arrays exhaust the parser's recursion limit
                raise OutboundError(f"The {what} is not valid JSON.", kind="not_json") from exc
            if not isinstance(document, dict):
                raise OutboundError(f"The {what} must be a JSON object.", kind="not_json")
        except OutboundError as exc:
            if not exc.transient:
                self._remember_failure(url, exc.message)
            raise
        return document

    async def request(
        self, method: str, url: str, *, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> Response:
        """One request under the policy (checks, pinning, caps, deadline, size cap, no redirects): the status and
        body answered, whatever the status; :class:`OutboundError` when it could not be made or was refused. No
        failure memory and no sharing: every call is a request of its own (a POST, or a GET with a token)."""
        target, host = self._parse(url)
        with self._slot(host):
            try:
                with anyio.fail_after(self.policy.timeout):
                    return await self._fetch(method, target, host, headers or {}, body)
            except TimeoutError:
                raise OutboundError(f"Fetching the {self.policy.what} timed out.", kind="timeout") from None

    def remember_failure(self, url: str, message: str) -> None:
        """Remember a failure found by the caller (a document that fetched but is unusable), as for a failed fetch."""
        self._remember_failure(url, message)

    def close(self) -> None:
        self._dns.shutdown(wait=False, cancel_futures=True)

    # --- caps and the failure memory ----------------------------------------------------------------------

    @contextmanager
    def _slot(self, host: str) -> Iterator[None]:
        with self._lock:
            if self._in_flight >= self.policy.max_in_flight:
                raise OutboundError(
                    f"Too many {self.policy.what} fetches are in progress; try again shortly.",
                    kind="busy",
                    transient=True,
                )
            if self._in_flight_by_host.get(host, 0) >= self.policy.max_in_flight_per_host:
                raise OutboundError(
                    f"Too many {self.policy.what} fetches from {host} are in progress; try again shortly.",
                    kind="busy",
                    transient=True,
                )
            self._in_flight += 1
            self._in_flight_by_host[host] = self._in_flight_by_host.get(host, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                left = self._in_flight_by_host[host] - 1
                if left:
                    self._in_flight_by_host[host] = left
                else:
                    del self._in_flight_by_host[host]

    def _remembered_failure(self, url: str) -> str | None:
        with self._lock:
            remembered = self._failures.get(url)
            if remembered is None:
                return None
            if self._monotonic() - remembered[0] >= self.policy.failure_ttl:
                del self._failures[url]
                return None
            return remembered[1]

    def _remember_failure(self, url: str, message: str) -> None:
        if self.policy.failure_ttl <= 0:
            return
        with self._lock:
            self._failures[url] = (self._monotonic(), message)
            self._failures.move_to_end(url)
            while len(self._failures) > MAX_REMEMBERED_FAILURES:
                self._failures.popitem(last=False)

    # --- the fetch ----------------------------------------------------------------------------------------

    def _parse(self, url: str) -> tuple[httpx.URL, str]:
        # Imported here, not at start-up: httpx's package import pulls in its command line (rich, pygments,
        # click when installed), ~0.05 s and ~5 MB that a server that never fetches does not need.
        import httpx

        try:
            target = httpx.URL(url)
            host = target.raw_host.decode("ascii")  # IDNA: what DNS, SNI and the certificate speak
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise OutboundError(f"The {self.policy.what} URL is not a valid URL.", kind="invalid_url") from exc
        https = target.scheme == "https"
        loopback_http = target.scheme == "http" and self.policy.allow_http_loopback and host in _LOOPBACK_NAMES
        if not (https or loopback_http) or not host:
            raise OutboundError(f"The {self.policy.what} URL must be an https URL.", kind="scheme")
        return target, host

    async def _fetch(
        self, method: str, target: httpx.URL, host: str, headers: dict[str, str], body: bytes | None
    ) -> Response:
        name = host.strip("[]")  # an IPv6 literal, as getaddrinfo takes it
        loop = asyncio.get_running_loop()
        if target.scheme == "https":
            port = target.port or 443
            allow_private = self.policy.allow_private_addresses
            addresses = await loop.run_in_executor(
                self._dns, lambda: resolve_host(name, port, self.policy.what, allow_private=allow_private)
            )
        else:  # http to a loopback name, allowed by the (tests-only) policy
            port = target.port or 80
            addresses = await loop.run_in_executor(self._dns, lambda: _resolve_loopback(name, port, self.policy.what))
        for address in addresses[:MAX_ADDRESSES_TRIED]:
            try:
                return await self._fetch_from(method, target, host, address, headers, body)
            except _Unreachable:
                continue
        raise OutboundError(f"The {self.policy.what} could not be fetched (ConnectError).", kind="unreachable")

    def _ssl_context(self) -> ssl.SSLContext:
        # Built once: loading the CA bundle for every fetch costs milliseconds of CPU each.
        if self._verify is None:
            if self.policy.ca_bundle is not None:
                self._verify = ssl.create_default_context(cafile=str(self.policy.ca_bundle))
            else:
                import certifi

                self._verify = ssl.create_default_context(cafile=certifi.where())
        return self._verify

    async def _fetch_from(
        self, method: str, target: httpx.URL, host: str, address: str, headers: dict[str, str], body: bytes | None
    ) -> Response:
        """Ask ``address`` (one the checks passed), presenting the URL's host in Host and SNI, and verifying the
        certificate for that host."""
        import httpx

        what, limit = self.policy.what, self.policy.max_bytes
        pinned = target.copy_with(host=address)
        sent = {**headers, "Host": target.netloc.decode("ascii")}
        answer = bytearray()
        try:
            async with (
                # trust_env=False: an HTTPS_PROXY or ALL_PROXY from the environment would connect to the proxy, not
                # to the address checked above, and let the proxy resolve the name again.
                httpx.AsyncClient(
                    timeout=self.policy.timeout, follow_redirects=False, verify=self._ssl_context(), trust_env=False
                ) as http,
                http.stream(
                    method, pinned, headers=sent, content=body, extensions={"sni_hostname": host.strip("[]")}
                ) as response,
            ):
                if response.is_redirect:
                    raise OutboundError(f"The {what} URL redirects; refused.", kind="redirect")
                async for chunk in response.aiter_bytes():
                    answer.extend(chunk)
                    if len(answer) > limit:
                        raise OutboundError(f"The {what} is larger than {limit} bytes; refused.", kind="too_large")
                status = response.status_code
        except httpx.TimeoutException as exc:
            raise OutboundError(f"Fetching the {what} timed out.", kind="timeout") from exc
        except httpx.ConnectError as exc:
            raise _Unreachable from exc
        except httpx.HTTPError as exc:
            raise OutboundError(f"The {what} could not be fetched ({type(exc).__name__}).") from exc
        return Response(status, bytes(answer))
