"""Client ID metadata documents: a ``client_id`` that is an https URL names a JSON document describing the
client (draft-ietf-oauth-client-id-metadata-document). We fetch it carefully and keep it for a while.

Fetch rules (oauth/outbound.py, the safe outbound fetch): https only, no redirects, a small size cap, a short
overall deadline (DNS included), no loopback, private, link-local or otherwise non-public addresses (checked on the
resolved addresses, and connected to as checked: no DNS rebinding) unless a setting meant for tests allows them, a
cap on fetches in flight per host and in all, and failures remembered for a short while. The document's
``client_id`` must equal the URL, and it may only describe a public client.

The fetch is async: the endpoints call :meth:`MetadataDocumentResolver.prefetch` on the event loop before their
blocking work goes to a worker thread, so a slow document host holds a socket, never one of the threads that
pages, tools and token requests share. :meth:`MetadataDocumentResolver.resolve` (authlib, in a worker thread) then
finds the client stored, or the failure remembered.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread

from idp_mcp.core.clients import ClientMetadata, Clients, parse_client_metadata
from idp_mcp.domain import Client
from idp_mcp.errors import ClientMetadataDocumentError, InvalidClientMetadata
from idp_mcp.oauth.outbound import FetchPolicy, OutboundError, SafeFetcher, is_public_address
from idp_mcp.oauth.outbound import resolve_host as _resolve_host
from idp_mcp.settings import Settings
from idp_mcp.store.transaction_tally import apart

WHAT = "client ID metadata document"
#: Kept under the old name for the tests that classify addresses one by one.
_is_public_address = is_public_address


def looks_like_metadata_url(client_id: str) -> bool:
    return client_id.startswith("https://")


def check_metadata_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ClientMetadataDocumentError("A client ID metadata document URL must be an https URL.")
    if len(url) > 2048 or parts.username or parts.password or "?" in url or "#" in url:
        raise ClientMetadataDocumentError(
            "A client ID metadata document URL must not contain credentials, a query or a fragment."
        )
    path = unquote(parts.path)
    if path in ("", "/") or "/./" in path or "/../" in path or path.endswith(("/.", "/..")):
        raise ClientMetadataDocumentError("A client ID metadata document URL must have a path without dot segments.")


def resolve_host(host: str, port: int, *, allow_private: bool = False) -> list[str]:
    """The addresses ``host`` resolves to, each of them public unless ``allow_private`` (tests only)."""
    try:
        return _resolve_host(host, port, WHAT, allow_private=allow_private)
    except OutboundError as exc:
        raise ClientMetadataDocumentError(exc.message) from exc


def fetch_policy(settings: Settings) -> FetchPolicy:
    return FetchPolicy(
        what=WHAT,
        timeout=settings.cimd_timeout,
        max_bytes=settings.cimd_max_bytes,
        max_in_flight=settings.cimd_max_fetches,
        max_in_flight_per_host=settings.cimd_max_fetches_per_host,
        failure_ttl=settings.cimd_failure_cache_seconds,
        allow_private_addresses=settings.cimd_allow_private_addresses,
        ca_bundle=settings.cimd_ca_bundle,
    )


class MetadataDocumentResolver:
    def __init__(self, settings: Settings, clients: Clients, fetcher: SafeFetcher | None = None) -> None:
        self._settings = settings
        self._clients = clients
        self._fetcher = fetcher or SafeFetcher(fetch_policy(settings))
        self._lock = threading.Lock()
        self._fetched_at: dict[tuple[str, str], float] = {}

    async def prefetch(self, tenant_id: str, url: str) -> None:
        """Fetch and store the document at ``url`` unless it was fetched within the cache interval; on the event
        loop, so a slow host holds no thread. A failure is remembered for :meth:`resolve` to report; this never
        raises for a bad document (the OAuth endpoint answers it, in its own words, through :meth:`resolve`)."""
        try:
            check_metadata_url(url)
        except ClientMetadataDocumentError:
            return  # resolve() refuses it without fetching
        if self._is_fresh(tenant_id, url):
            return
        try:
            metadata = self._parse(url, await self._fetcher.get_json(url))
        except OutboundError:
            return  # remembered by the fetcher
        except ClientMetadataDocumentError as exc:
            self._fetcher.remember_failure(url, exc.message)
            return
        if not self._is_fresh(tenant_id, url):  # a concurrent request for the same document stored it already
            await anyio.to_thread.run_sync(self._store_fetched, tenant_id, url, metadata)

    def resolve(self, tenant_id: str, url: str) -> Client:
        """The client described at ``url``: stored by a recent :meth:`prefetch`, or the failure it met, else
        fetched now (blocking this thread for up to the fetch deadline: callers on the request path prefetch)."""
        check_metadata_url(url)
        if self._is_fresh(tenant_id, url):
            client = self._clients.get(tenant_id, url)
            if client is not None:
                return client
        try:
            document = anyio.run(self._fetcher.get_json, url)
        except OutboundError as exc:
            raise ClientMetadataDocumentError(exc.message) from exc
        try:
            metadata = self._parse(url, document)
        except ClientMetadataDocumentError as exc:
            self._fetcher.remember_failure(url, exc.message)
            raise
        return self._store(tenant_id, url, metadata)

    def due(self, tenant_id: str, url: str) -> bool:
        """Whether :meth:`resolve` would fetch the document (it was not fetched within the cache interval)."""
        return not self._is_fresh(tenant_id, url)

    def close(self) -> None:
        self._fetcher.close()

    def _is_fresh(self, tenant_id: str, url: str) -> bool:
        with self._lock:
            fetched_at = self._fetched_at.get((tenant_id, url))
        return fetched_at is not None and time.monotonic() - fetched_at < self._settings.cimd_cache_ttl

    def _store_fetched(self, tenant_id: str, url: str, metadata: ClientMetadata) -> None:
        # Before the request's use case, in a transaction of its own: a cache of a public document, kept whatever
        # the request then does (it is no part of the request's one transaction).
        with apart("storing a client ID metadata document fetched for the request (a cache fill)"):
            self._store(tenant_id, url, metadata)

    def _store(self, tenant_id: str, url: str, metadata: ClientMetadata) -> Client:
        client = self._clients.store_metadata_document(tenant_id, url, metadata)
        with self._lock:
            self._fetched_at[(tenant_id, url)] = time.monotonic()
        return client

    @staticmethod
    def _parse(url: str, document: dict[str, object]) -> ClientMetadata:
        if document.get("client_id") != url:
            raise ClientMetadataDocumentError(
                "The client ID metadata document's client_id does not equal the URL it was fetched from."
            )
        auth_method = document.get("token_endpoint_auth_method", "none")
        if auth_method != "none":
            raise ClientMetadataDocumentError(
                "A client ID metadata document must describe a public client (token_endpoint_auth_method 'none')."
            )
        try:
            return parse_client_metadata({**document, "token_endpoint_auth_method": "none"})
        except InvalidClientMetadata as exc:
            raise ClientMetadataDocumentError(f"The client ID metadata document is invalid: {exc.message}") from exc
