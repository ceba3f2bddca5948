"""The one-time setup code that guards the first-administrator page on a server reachable from the network.

Until an administrator exists, whoever reaches ``/setup`` first would own the server. Like Jupyter's token and
Grafana's first-start password, every start of a server without an administrator prints a fresh code on its
console; the page asks for it unless the request comes from this machine (see ``web/pages.py``). Only the code's
SHA-256 digest is stored (in ``server_secrets``, one row per start, so each replica's printed code works); all of
them are deleted once an administrator exists, and none is accepted after that.
"""

from __future__ import annotations

import ipaddress
import secrets
from urllib.parse import urlsplit

from idp_mcp.core.crypto import digest, digests_equal
from idp_mcp.domain import Clock
from idp_mcp.store.db import Database
from idp_mcp.store.repos import server_secrets as repo
from idp_mcp.store.repos import users as users_repo

PREFIX = "setup_code:"
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a console and typed by hand
GROUPS, GROUP_LENGTH = 3, 4  # 12 characters, 60 bits


def normalise(code: str) -> str:
    """What was typed, without the dashes and spaces people add or drop, in capitals."""
    return "".join(char for char in code.upper() if char not in " -\t")


def is_loopback_address(host: str | None) -> bool:
    """127.0.0.0/8 or ::1 (an IPv4-mapped loopback too); anything else, or no address, is not."""
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` names this machine: 127.0.0.0/8, [::1] or localhost."""
    host = urlsplit(url).hostname or ""
    return host == "localhost" or is_loopback_address(host)


def code_required(public_url: str, client_address: str | None) -> bool:
    """Whether the first-administrator page must ask for the setup code: always, except for a request from this
    machine to a server whose public URL is a loopback one (a local install, where whoever can reach it already
    controls the machine). A public URL that is not loopback means a proxy or the network may be in front, and a
    proxy on this machine makes every visitor look local, so there the code is always asked for."""
    return not (is_loopback_url(public_url) and is_loopback_address(client_address))


class SetupCodes:
    def __init__(self, db: Database, clock: Clock, admin_tenant_id: str) -> None:
        self._db = db
        self._clock = clock
        self._admin_tenant_id = admin_tenant_id

    def issue(self) -> str | None:
        """A fresh code when no administrator exists (its digest stored), else None (and old codes deleted)."""
        raw = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_LENGTH))
        code_digest = digest(raw)
        with self._db.transaction() as conn:
            if users_repo.count(conn, self._admin_tenant_id) > 0:
                repo.delete_named_like(conn, PREFIX)
                return None
            repo.insert_secret(conn, f"{PREFIX}{code_digest[:16]}", code_digest, self._clock())
        return "-".join(raw[i : i + GROUP_LENGTH] for i in range(0, len(raw), GROUP_LENGTH))

    def verify(self, code: str) -> bool:
        """Whether ``code`` is one printed since the last start without an administrator."""
        presented = digest(normalise(code)[:64])
        with self._db.read() as conn:
            stored = repo.values_named_like(conn, PREFIX)
        matched = False
        for value in stored:  # every one compared, in constant time each
            matched |= digests_equal(presented, value)
        return matched

    def forget(self) -> None:
        """Delete every code (an administrator exists now)."""
        with self._db.transaction() as conn:
            repo.delete_named_like(conn, PREFIX)
