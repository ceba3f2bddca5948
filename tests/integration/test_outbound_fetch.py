"""The safe outbound fetch (oauth/outbound.py) against real slow hosts on loopback: a host that takes the connection
and never answers, over TLS. One overall deadline (DNS included), caps on fetches in flight per host and in all that
answer at once when reached, and failures remembered so that a failing URL is not fetched again for a while.

The SSRF rules it keeps (https only, public addresses, no redirects, size cap) are tested through the client ID
metadata document resolver in test_cimd_fetch_battery.py and tests/e2e/test_client_id_metadata_documents.py. The
upstream identity-provider client (oauth/upstream_http.py) is the same fetcher under a policy of its own: the last
tests here show what it gets from it (caps, no proxy) and what it adds (POST, non-200 answers, http to loopback only
in tests).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from idp_mcp.core.identity import IdentityCore
from idp_mcp.errors import ClientMetadataDocumentError
from idp_mcp.oauth.cimd import MetadataDocumentResolver
from idp_mcp.oauth.outbound import FetchPolicy, OutboundError, SafeFetcher
from idp_mcp.oauth.upstream_http import UpstreamHttp, UpstreamUnreachable
from idp_mcp.settings import Settings
from tests.support.clock import Clock
from tests.support.tls import HangingServer, hanging_https_server, https_document_server
from tests.support.upstream import CLIENT_ID, CLIENT_SECRET, FakeProvider, run_provider

pytestmark = pytest.mark.anyio


@pytest.fixture
def hanging(tmp_path: Path) -> Iterator[HangingServer]:
    with hanging_https_server(tmp_path) as server:
        yield server


def fetcher(server: HangingServer, clock: Clock | None = None, **overrides: Any) -> SafeFetcher:
    policy: dict[str, Any] = {
        "what": "test document", "timeout": 5.0, "max_bytes": 5120, "allow_private_addresses": True,
        "ca_bundle": server.ca_bundle, **overrides,
    }  # fmt: skip
    return SafeFetcher(FetchPolicy(**policy), monotonic=clock.monotonic if clock else time.monotonic)


async def accepted(server: HangingServer, count: int) -> None:
    """Until the slow host has taken ``count`` connections (polled: it runs in a thread of its own)."""
    with anyio.fail_after(5):
        while len(server.accepted) < count:  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def test_a_host_that_never_answers_fails_at_the_deadline(hanging: HangingServer) -> None:
    fetch = fetcher(hanging, timeout=0.5)
    started = time.monotonic()

    with pytest.raises(OutboundError, match="timed out"):
        await fetch.get_json(hanging.url("/slow.json"))

    assert 0.4 < time.monotonic() - started < 2


async def test_a_failed_url_is_not_fetched_again_within_the_failure_window(hanging: HangingServer) -> None:
    clock = Clock()
    fetch = fetcher(hanging, clock, timeout=0.3, failure_ttl=0.8)
    url = hanging.url("/failing.json")
    with pytest.raises(OutboundError, match="timed out"):
        await fetch.get_json(url)
    assert len(hanging.accepted) == 1

    started = time.monotonic()
    with pytest.raises(OutboundError, match="timed out"):  # the same answer, from memory
        await fetch.get_json(url)
    assert time.monotonic() - started < 0.1
    assert len(hanging.accepted) == 1

    with pytest.raises(OutboundError):  # another URL of the same host is fetched
        await fetch.get_json(hanging.url("/other.json"))
    assert len(hanging.accepted) == 2

    clock.advance(0.9)  # the window is over: fetched again
    with pytest.raises(OutboundError, match="timed out"):
        await fetch.get_json(url)
    assert len(hanging.accepted) == 3


async def test_fetches_past_the_per_host_cap_fail_at_once_while_other_hosts_still_fetch(
    hanging: HangingServer,
) -> None:
    fetch = fetcher(hanging, timeout=2, max_in_flight_per_host=2, max_in_flight=3)
    outcomes: list[str] = []

    async def slow(url: str) -> None:
        try:
            await fetch.get_json(url)
        except OutboundError as exc:
            outcomes.append(exc.message)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(slow, hanging.url("/1.json"))
        tasks.start_soon(slow, hanging.url("/2.json"))
        await accepted(hanging, 2)

        started = time.monotonic()
        with pytest.raises(OutboundError, match=r"from 127\.0\.0\.1 are in progress"):
            await fetch.get_json(hanging.url("/3.json"))
        assert time.monotonic() - started < 0.1

        # Another host (the same server, by another name) still gets a fetch: the cap is per host...
        tasks.start_soon(slow, hanging.url("/4.json", host="localhost"))
        await accepted(hanging, 3)
        # ...up to the cap over all hosts.
        with pytest.raises(OutboundError, match="Too many test document fetches are in progress"):
            await fetch.get_json(hanging.url("/5.json", host="localhost"))
        tasks.cancel_scope.cancel()

    # A refusal for the cap is not remembered as the URL's failure: once the fetches end, it is fetched.
    with pytest.raises(OutboundError, match="timed out"):
        await fetch.get_json(hanging.url("/3.json"))
    assert len(hanging.accepted) == 4


async def test_concurrent_requests_for_one_url_share_one_fetch(hanging: HangingServer) -> None:
    fetch = fetcher(hanging, timeout=0.5, max_in_flight_per_host=1)
    messages: list[str] = []

    async def get() -> None:
        try:
            await fetch.get_json(hanging.url("/popular.json"))
        except OutboundError as exc:
            messages.append(exc.message)

    async with anyio.create_task_group() as tasks:
        for _ in range(10):
            tasks.start_soon(get)

    assert len(hanging.accepted) == 1
    assert messages == ["Fetching the test document timed out."] * 10  # none refused for the per-host cap


async def test_the_resolver_reports_a_failed_prefetch_without_fetching_again(
    hanging: HangingServer, core: IdentityCore
) -> None:
    settings = core.settings.model_copy(
        update={"cimd_allow_private_addresses": True, "cimd_ca_bundle": hanging.ca_bundle, "cimd_timeout": 0.3}
    )
    resolver = MetadataDocumentResolver(settings, core.clients)
    url = hanging.url("/agent.json")

    await resolver.prefetch("admin", url)  # on the event loop, as the endpoints do: never raises
    started = time.monotonic()
    with pytest.raises(ClientMetadataDocumentError, match="timed out"):
        await anyio.to_thread.run_sync(resolver.resolve, "admin", url)  # authlib's side, in a worker thread

    assert time.monotonic() - started < 0.2
    assert len(hanging.accepted) == 1
    resolver.close()


async def test_a_resolver_that_hangs_fails_at_the_deadline_too(
    hanging: HangingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def hanging_dns(*args: Any, **kwargs: Any) -> Any:
        time.sleep(3)
        raise OSError("no answer")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_dns)
    fetch = fetcher(hanging, timeout=0.5)
    started = time.monotonic()

    with pytest.raises(OutboundError, match="timed out"):
        await fetch.get_json("https://slow-dns.example/client.json")

    assert time.monotonic() - started < 1.5
    fetch.close()


# --- the upstream identity-provider client on the same fetcher ----------------------------------------------------


def upstream_http(**settings: Any) -> UpstreamHttp:
    return UpstreamHttp(Settings(cimd_allow_private_addresses=True, **settings))


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with run_provider() as running:
        yield running


async def test_upstream_requests_past_the_per_host_cap_fail_at_once(hanging: HangingServer) -> None:
    http = upstream_http(cimd_ca_bundle=hanging.ca_bundle, connector_timeout=1, connector_max_requests_per_host=1)
    outcomes: list[str] = []

    async def token_request() -> None:
        try:
            await http.post_form(hanging.url("/token"), {"grant_type": "authorization_code", "code": "c"})
        except UpstreamUnreachable as exc:
            outcomes.append(exc.message)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(token_request)
        await accepted(hanging, 1)
        started = time.monotonic()
        with pytest.raises(UpstreamUnreachable, match=r"upstream provider fetches from 127\.0\.0\.1 are in progress"):
            await http.get_json(hanging.url("/.well-known/openid-configuration"))
        assert time.monotonic() - started < 0.1

    assert outcomes == [f"{hanging.url('/token')} did not answer within 1 s."]
    assert len(hanging.accepted) == 1
    http.close()


async def test_a_token_requests_error_answer_is_handed_back_with_its_status(provider: FakeProvider) -> None:
    http = upstream_http()

    status, answer = await http.post_form(
        f"{provider.issuer}/token", {"grant_type": "authorization_code", "code": "nope"}, (CLIENT_ID, CLIENT_SECRET)
    )

    assert (status, answer) == (400, {"error": "invalid_grant"})
    assert provider.token_requests == [{"grant_type": "authorization_code", "code": "nope"}]
    # A GET wants 200: userinfo refusing the token is a failure that names the URL without its query.
    with pytest.raises(UpstreamUnreachable, match=r"^http://127\.0\.0\.1:\d+/userinfo answered HTTP 401\.$"):
        await http.get_json(f"{provider.issuer}/userinfo?x=secret-looking", bearer="wrong")
    http.close()


async def test_plain_http_reaches_a_loopback_provider_only_under_the_tests_only_setting(
    provider: FakeProvider,
) -> None:
    discovery = f"{provider.issuer}/.well-known/openid-configuration"
    allowed, refused = upstream_http(), UpstreamHttp(Settings(cimd_allow_private_addresses=False))

    assert (await allowed.get_json(discovery))["issuer"] == provider.issuer
    with pytest.raises(UpstreamUnreachable, match="is not https; upstream providers are reached over https only"):
        await refused.get_json(discovery)
    # Even under the setting, http goes to a loopback name only.
    with pytest.raises(UpstreamUnreachable, match="is not https"):
        await allowed.get_json("http://idp.example/.well-known/openid-configuration")
    # The metadata document fetcher never speaks http, even with private addresses allowed.
    cimd = SafeFetcher(FetchPolicy(what="test document", timeout=2, max_bytes=5120, allow_private_addresses=True))
    with pytest.raises(OutboundError, match="must be an https URL"):
        await cimd.get_json(discovery)
    for fetcher_ in (allowed, refused, cimd):
        fetcher_.close()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A proxy named by the environment, as a host's settings might: a socket that takes connections, never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    address = f"http://127.0.0.1:{listener.getsockname()[1]}"
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, address)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield listener
    listener.close()


def proxied(listener: socket.socket) -> bool:
    try:
        listener.accept()[0].close()
    except BlockingIOError:
        return False
    return True


async def test_the_environments_proxy_is_ignored(proxy: socket.socket, provider: FakeProvider, tmp_path: Path) -> None:
    # A proxy would connect to the name it is given, not to the address checked: both fetchers go direct.
    with https_document_server(tmp_path) as documents:
        url = documents.serve_json("/client.json", {"client_name": "Direct"})
        cimd = SafeFetcher(
            FetchPolicy(what="test document", timeout=2, max_bytes=5120, allow_private_addresses=True,
                        ca_bundle=documents.ca_bundle)
        )  # fmt: skip
        assert await cimd.get_json(url) == {"client_name": "Direct"}
    http = upstream_http(connector_timeout=2)
    assert (await http.get_json(f"{provider.issuer}/jwks"))["keys"]

    assert not proxied(proxy)
    cimd.close()
    http.close()
