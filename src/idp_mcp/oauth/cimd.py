"""Client ID metadata documents: a ``client_id`` that is an https URL names a JSON document describing the
client (draft-ietf-oauth-client-id-metadata-document). We fetch it carefully and keep it for a while.

Fetch rules: https only, no redirects, a small size cap, a short timeout, and no loopback, private,
link-local or otherwise non-public addresses (checked on the resolved addresses) unless a setting meant for
tests allows them. The document's ``client_id`` must equal the URL, and it may only describe a public client.

The host name is resolved once, and the connection goes to an address that was checked (the certificate is still
verified for the name): resolving again to connect would let a DNS server answer a public address to the check
and a private one to the connection (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from idp_mcp.core.clients import Clients, parse_client_metadata
from idp_mcp.domain import Client
from idp_mcp.errors import ClientMetadataDocumentError, InvalidClientMetadata
from idp_mcp.settings import Settings

if TYPE_CHECKING:
    import httpx

MAX_ADDRESSES_TRIED = 4


class _Unreachable(Exception):
    """This address did not take the connection; the next one the host resolves to may."""


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


def _is_public_address(address: str) -> bool:
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


def resolve_host(host: str, port: int, *, allow_private: bool = False) -> list[str]:
    """The addresses ``host`` resolves to, each of them public unless ``allow_private`` (tests only)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ClientMetadataDocumentError(
            f"The host {host} of the client ID metadata document does not resolve."
        ) from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private and not all(_is_public_address(address) for address in addresses):
        raise ClientMetadataDocumentError(
            f"The client ID metadata document host {host} resolves to a non-public address; refused."
        )
    if not addresses:
        raise ClientMetadataDocumentError(f"The host {host} of the client ID metadata document does not resolve.")
    return addresses


def check_host_is_public(host: str, port: int) -> list[str]:
    """The public addresses of ``host``; :class:`ClientMetadataDocumentError` if any of them is not public."""
    return resolve_host(host, port)


class MetadataDocumentResolver:
    def __init__(self, settings: Settings, clients: Clients) -> None:
        self._settings = settings
        self._clients = clients
        self._lock = threading.Lock()
        self._fetched_at: dict[tuple[str, str], float] = {}

    def resolve(self, tenant_id: str, url: str) -> Client:
        """The client described at ``url``; fetched when not cached, else from the database."""
        check_metadata_url(url)
        key = (tenant_id, url)
        with self._lock:
            fetched_at = self._fetched_at.get(key)
        if fetched_at is not None and time.monotonic() - fetched_at < self._settings.cimd_cache_ttl:
            client = self._clients.get(tenant_id, url)
            if client is not None:
                return client
        document = self._fetch(url)
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
            metadata = parse_client_metadata({**document, "token_endpoint_auth_method": "none"})
        except InvalidClientMetadata as exc:
            raise ClientMetadataDocumentError(f"The client ID metadata document is invalid: {exc.message}") from exc
        client = self._clients.store_metadata_document(tenant_id, url, metadata)
        with self._lock:
            self._fetched_at[key] = time.monotonic()
        return client

    def _fetch(self, url: str) -> dict[str, object]:
        # Imported here, not at start-up: httpx's package import pulls in its command line (rich, pygments,
        # click when installed), ~0.05 s and ~5 MB that a server that never meets a metadata URL does not need.
        import httpx

        try:
            target = httpx.URL(url)
            host = target.raw_host.decode("ascii")  # IDNA: what DNS, SNI and the certificate speak
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise ClientMetadataDocumentError("The client ID metadata document URL is not a valid URL.") from exc
        addresses = resolve_host(host, target.port or 443, allow_private=self._settings.cimd_allow_private_addresses)
        deadline = time.monotonic() + self._settings.cimd_timeout
        for address in addresses[:MAX_ADDRESSES_TRIED]:
            try:
                return self._fetch_from(target, host, address, deadline)
            except _Unreachable:
                continue
        raise ClientMetadataDocumentError("The client ID metadata document could not be fetched (ConnectError).")

    def _fetch_from(self, target: httpx.URL, host: str, address: str, deadline: float) -> dict[str, object]:
        """Fetch from ``address`` (one the checks passed), presenting the URL's host in Host and SNI, and
        verifying the certificate for that host."""
        import httpx

        verify: ssl.SSLContext | bool = True
        if self._settings.cimd_ca_bundle:
            verify = ssl.create_default_context(cafile=str(self._settings.cimd_ca_bundle))
        limit = self._settings.cimd_max_bytes
        pinned = target.copy_with(host=address)
        headers = {"Accept": "application/json", "Host": target.netloc.decode("ascii")}
        timeout = max(0.05, deadline - time.monotonic())
        try:
            with (
                httpx.Client(timeout=timeout, follow_redirects=False, verify=verify) as http,
                http.stream("GET", pinned, headers=headers, extensions={"sni_hostname": host}) as response,
            ):
                if response.is_redirect:
                    raise ClientMetadataDocumentError("The client ID metadata document URL redirects; refused.")
                if response.status_code != 200:
                    raise ClientMetadataDocumentError(
                        f"Fetching the client ID metadata document answered HTTP {response.status_code}."
                    )
                body = bytearray()
                for chunk in response.iter_bytes():
                    body.extend(chunk)
                    if time.monotonic() > deadline:
                        # httpx's timeout is per read; a trickling server must not hold us longer in total.
                        raise ClientMetadataDocumentError("Fetching the client ID metadata document timed out.")
                    if len(body) > limit:
                        raise ClientMetadataDocumentError(
                            f"The client ID metadata document is larger than {limit} bytes; refused."
                        )
        except httpx.TimeoutException as exc:
            raise ClientMetadataDocumentError("Fetching the client ID metadata document timed out.") from exc
        except httpx.ConnectError as exc:
            raise _Unreachable from exc
        except httpx.HTTPError as exc:
            raise ClientMetadataDocumentError(
                f"The client ID metadata document could not be fetched ({type(exc).__name__})."
            ) from exc
        try:
            document = json.loads(bytes(body))
        except (ValueError, RecursionError) as exc:  # deeply nested arrays exhaust the parser's recursion limit
            raise ClientMetadataDocumentError("The client ID metadata document is not valid JSON.") from exc
        if not isinstance(document, dict):
            raise ClientMetadataDocumentError("The client ID metadata document must be a JSON object.")
        return document
