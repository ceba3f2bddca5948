"""Every HTTP call to an upstream identity provider goes through here: discovery documents, JWKS, the token request
and userinfo. A thin adapter over the shared safe fetcher of ``oauth.outbound`` (the one client ID metadata
documents use), under a policy of its own: https only (plain http only to a loopback name, and only under the
tests-only setting ``IDP_MCP_CIMD_ALLOW_PRIVATE_ADDRESSES``), public addresses only, the connection pinned to a
checked address, no redirects, no proxy from the environment, one total deadline per request
(``connector_timeout``), a size cap (``connector_max_bytes``) and caps on requests in flight that fail at once.

What it adds: POST with a form, a bearer token for userinfo, the status and JSON answer handed back even when not
200 (the token endpoint's OAuth errors), and failures as :class:`UpstreamUnreachable` naming the URL without its
query. It has no failure memory: a provider that was down a moment ago is asked again (the user retries, and
testConnector must see the provider as it is now); the per-host cap already bounds what a dead provider costs.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, urlencode

from idp_mcp.errors import IdpError
from idp_mcp.oauth.outbound import FetchPolicy, OutboundError, Response, SafeFetcher
from idp_mcp.settings import Settings

WHAT = "upstream provider"


class UpstreamUnreachable(IdpError):
    """The upstream could not be asked, or its answer was unusable. The message names the URL's host, never a token."""

    code = "connector.upstream_unreachable"
    status = 502


def fetch_policy(settings: Settings) -> FetchPolicy:
    return FetchPolicy(
        what=WHAT,
        timeout=settings.connector_timeout,
        max_bytes=settings.connector_max_bytes,
        max_in_flight=settings.connector_max_requests,
        max_in_flight_per_host=settings.connector_max_requests_per_host,
        failure_ttl=0,
        allow_private_addresses=settings.cimd_allow_private_addresses,
        allow_http_loopback=settings.cimd_allow_private_addresses,
        ca_bundle=settings.cimd_ca_bundle,
    )


class UpstreamHttp:
    """One per app (its fetcher holds a DNS thread pool and the caps in flight): build it at start-up, share it,
    and :meth:`close` it at shutdown."""

    def __init__(self, settings: Settings, fetcher: SafeFetcher | None = None) -> None:
        self._fetcher = fetcher or SafeFetcher(fetch_policy(settings))

    def close(self) -> None:
        self._fetcher.close()

    async def get_json(self, url: str, *, bearer: str | None = None) -> dict[str, Any]:
        """GET a JSON object (``bearer``: an access token for userinfo)."""
        headers = {"Accept": "application/json"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        status, document = _json(url, await self._request("GET", url, headers, None))
        if status != 200:
            raise UpstreamUnreachable(f"{_where(url)} answered HTTP {status}.")
        return document

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
        return _json(url, await self._request("POST", url, headers, urlencode(data).encode()))

    async def _request(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Response:
        try:
            return await self._fetcher.request(method, url, headers=headers, body=body)
        except OutboundError as exc:
            raise UpstreamUnreachable(self._say(url, exc)) from exc

    def _say(self, url: str, exc: OutboundError) -> str:
        """The fetcher's failure in words that name the URL (its messages name only "the upstream provider")."""
        where, policy = _where(url), self._fetcher.policy
        match exc.kind:
            case "invalid_url":
                return "The upstream URL is not a valid URL."
            case "scheme":
                return f"{where} is not https; upstream providers are reached over https only."
            case "timeout":
                return f"{where} did not answer within {policy.timeout:g} s."
            case "unreachable":
                return f"{where} refused the connection."
            case "redirect":
                return f"{where} redirects; refused."
            case "too_large":
                return f"{where} answered more than {policy.max_bytes} bytes; refused."
            case _:  # dns, not_public, busy, failed: their messages name the host already
                return exc.message


def _json(url: str, response: Response) -> tuple[int, dict[str, Any]]:
    try:
        document = json.loads(response.body)
    except (ValueError, RecursionError) as exc:
        raise UpstreamUnreachable(f"{_where(url)} answered HTTP {response.status} without JSON.") from exc
    if not isinstance(document, dict):
        raise UpstreamUnreachable(f"{_where(url)} answered JSON that is not an object.")
    return response.status, document


def _where(url: str) -> str:
    """The URL without its query (a userinfo or token URL never carries secrets here, but keep messages short)."""
    return url.split("?", 1)[0][:200]
