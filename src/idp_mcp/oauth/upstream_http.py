"""Every HTTP call to an upstream identity provider goes through here: discovery documents, JWKS, the token request
and userinfo. One small interface (:meth:`UpstreamHttp.get_json`, :meth:`UpstreamHttp.post_form`), so the whole of
it can later be pointed at a shared safe-outbound-fetch module in one place.

Rules, the same as for client ID metadata documents: https only (plain http only to a loopback address, and only
under the tests-only setting ``IDP_MCP_CIMD_ALLOW_PRIVATE_ADDRESSES``); no redirects; the host is resolved once
(in a worker thread, inside the deadline) and every address must be public (the check of ``oauth.cimd``); the
connection goes to a checked address, so DNS rebinding cannot reach the inside; one total deadline per request
(a trickling server cannot hold it longer) and a size cap on the answer. Everything is async: a slow or dead
upstream holds up only the browser waiting for it.
"""

from __future__ import annotations

import base64
import json
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import anyio
import anyio.to_thread

from idp_mcp.errors import IdpError
from idp_mcp.oauth.cimd import _is_public_address
from idp_mcp.settings import Settings

if TYPE_CHECKING:
    import httpx

MAX_ADDRESSES_TRIED = 4
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class UpstreamUnreachable(IdpError):
    """The upstream could not be asked, or its answer was unusable. The message names the URL's host, never a token."""

    code = "connector.upstream_unreachable"
    status = 502


class UpstreamHttp:
    def __init__(self, settings: Settings) -> None:
        self._timeout = settings.connector_timeout
        self._max_bytes = settings.connector_max_bytes
        self._allow_private = settings.cimd_allow_private_addresses

    async def get_json(self, url: str, *, bearer: str | None = None) -> dict[str, Any]:
        """GET a JSON object (``bearer``: an access token for userinfo)."""
        headers = {"Accept": "application/json"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        status, body = await self._request("GET", url, headers=headers)
        if status != 200:
            raise UpstreamUnreachable(f"{_where(url)} answered HTTP {status}.")
        return body

    async def post_form(
        self, url: str, data: dict[str, str], auth: tuple[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """POST a form (the token request); the status and the JSON object answered, error answers included (an
        OAuth error is a JSON object with ``error``, which the caller reports)."""
        headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
        if auth is not None:
            # RFC 6749 section 2.3.1: client id and secret are form-encoded before Basic encoding.
            pair = f"{quote(auth[0], safe='')}:{quote(auth[1], safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        content = urlencode(data).encode()
        return await self._request("POST", url, headers=headers, content=content)

    async def _request(
        self, method: str, url: str, *, headers: dict[str, str], content: bytes | None = None
    ) -> tuple[int, dict[str, Any]]:
        import httpx

        try:
            target = httpx.URL(url)
            host = target.raw_host.decode("ascii")
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise UpstreamUnreachable("The upstream URL is not a valid URL.") from exc
        loopback = host.strip("[]") in _LOOPBACK_NAMES
        if not (target.scheme == "https" or (target.scheme == "http" and loopback and self._allow_private)):
            raise UpstreamUnreachable(f"{_where(url)} is not https; upstream providers are reached over https only.")
        port = target.port or (443 if target.scheme == "https" else 80)
        try:
            with anyio.fail_after(self._timeout):
                addresses = await self._resolve(host.strip("[]"), port)
                for address in addresses[:MAX_ADDRESSES_TRIED]:
                    try:
                        return await self._fetch_from(method, target, host, address, headers, content)
                    except httpx.ConnectError:
                        continue
        except TimeoutError:
            raise UpstreamUnreachable(f"{_where(url)} did not answer within {self._timeout:g} s.") from None
        raise UpstreamUnreachable(f"{_where(url)} refused the connection.")

    async def _resolve(self, host: str, port: int) -> list[str]:
        try:
            infos = await anyio.to_thread.run_sync(
                lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), abandon_on_cancel=True
            )
        except (OSError, UnicodeError) as exc:
            raise UpstreamUnreachable(f"The host {host} does not resolve.") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise UpstreamUnreachable(f"The host {host} does not resolve.")
        if not self._allow_private and not all(_is_public_address(address) for address in addresses):
            raise UpstreamUnreachable(f"The host {host} resolves to a non-public address; refused.")
        return addresses

    async def _fetch_from(
        self, method: str, target: httpx.URL, host: str, address: str, headers: dict[str, str], content: bytes | None
    ) -> tuple[int, dict[str, Any]]:
        """Ask ``address`` (a checked one), presenting the URL's host in Host and SNI (the certificate is verified
        for that host)."""
        import httpx

        pinned = target.copy_with(host=address)
        sent = {**headers, "Host": target.netloc.decode("ascii")}
        body = bytearray()
        try:
            async with (
                httpx.AsyncClient(timeout=self._timeout, follow_redirects=False, trust_env=False) as http,
                http.stream(method, pinned, headers=sent, content=content, extensions={"sni_hostname": host}) as answer,
            ):
                if answer.is_redirect:
                    raise UpstreamUnreachable(f"{_where(str(target))} redirects; refused.")
                async for chunk in answer.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > self._max_bytes:
                        raise UpstreamUnreachable(
                            f"{_where(str(target))} answered more than {self._max_bytes} bytes; refused."
                        )
                status = answer.status_code
        except httpx.ConnectError:
            raise
        except httpx.HTTPError as exc:
            raise UpstreamUnreachable(f"{_where(str(target))} could not be asked ({type(exc).__name__}).") from exc
        try:
            document = json.loads(bytes(body))
        except (ValueError, RecursionError) as exc:
            raise UpstreamUnreachable(f"{_where(str(target))} answered HTTP {status} without JSON.") from exc
        if not isinstance(document, dict):
            raise UpstreamUnreachable(f"{_where(str(target))} answered JSON that is not an object.")
        return status, document


def _where(url: str) -> str:
    """The URL without its query (a userinfo or token URL never carries secrets here, but keep messages short)."""
    return url.split("?", 1)[0][:200]
