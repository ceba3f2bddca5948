"""Rate limits on attempts, counted in the database so that every replica sees the same counts.

A limit is a fixed window per key, starting at the key's first attempt: at most ``max_hits`` attempts until the
window ends, then the count starts again. An attempt is counted *before* it is checked (so concurrent attempts
cannot all slip under the limit while a slow check runs); a caller gives it back when it succeeds. While a key is
at its limit, nothing is counted and the caller is told how long to wait.

Dynamic client registration counts every registration per client address (same /64 rule).

Password sign-in uses two keys: the client address (IPv6 by its /64, which one host usually owns whole), and either
the identifier typed (whether or not an account has it, so the limit tells nothing about which accounts exist) or,
from a browser the account signed in from before (a known device), that device's own count for the account. So
anyone may use up an identifier's shared allowance, which then refuses unknown browsers for the rest of the window,
but not the allowance of the owner's own browsers.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from idp_mcp.core.crypto import digest
from idp_mcp.domain import Clock, as_utc
from idp_mcp.store.db import Database
from idp_mcp.store.repos import rate_limits as repo

Kind = Literal["identifier", "device", "address"]
PASSWORD_SIGN_IN = "password_sign_in"
CLIENT_REGISTRATION = "client_registration"
PURGE_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class Limit:
    kind: Kind
    value: str
    max_hits: int


@dataclass(frozen=True)
class Exceeded:
    """A limit that is reached: which one, and the seconds until its window ends."""

    kind: Kind
    retry_after: int

    @property
    def message(self) -> str:
        minutes = max(1, math.ceil(self.retry_after / 60))
        return f"Too many attempts; try again in {minutes} minute{'s' if minutes != 1 else ''}."


@dataclass(frozen=True)
class SignInLimits:
    """How many failed password sign-ins are allowed per identifier and per client address in a window."""

    per_identifier: int = 5
    per_address: int = 30
    window_seconds: int = 900

    def limits(self, identifier: str, client_address: str | None, known_device: str | None = None) -> list[Limit]:
        """The limits one attempt counts against. From a known device of the account (``known_device``, its key),
        the per-identifier allowance is that device's own, so failures from elsewhere do not hold it up."""
        if known_device is not None:
            limits = [Limit("device", known_device, self.per_identifier)]
        else:
            limits = [Limit("identifier", normalise_identifier(identifier), self.per_identifier)]
        if client_address:
            limits.append(Limit("address", address_key(client_address), self.per_address))
        return limits


def normalise_identifier(identifier: str) -> str:
    """One key for every spelling of an identifier that could reach the same account (emails ignore case)."""
    return identifier.strip().lower()


def address_key(host: str) -> str:
    """The part of a client address an attacker cannot cheaply change: an IPv4 address (IPv4-mapped IPv6 too), or
    the /64 an IPv6 address belongs to. Anything that is not an IP address (a Unix socket's name) is used as is."""
    try:
        ip = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return host.strip().lower()[:255]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RateLimits:
    def __init__(self, db: Database, clock: Clock, purge_interval_seconds: float = PURGE_INTERVAL_SECONDS) -> None:
        self._db = db
        self._clock = clock
        self._purge_interval = purge_interval_seconds
        self._purged_at = time.monotonic()
        self._lock = threading.Lock()

    @staticmethod
    def key(purpose: str, tenant_id: str, kind: Kind, value: str) -> str:
        return digest("\x00".join((purpose, tenant_id, kind, value)))

    def hit(self, purpose: str, tenant_id: str, limits: list[Limit], window_seconds: int) -> Exceeded | None:
        """Count one attempt against every limit, or, when one of them is reached already, count nothing and say
        which (the one with the longest wait). Atomic across processes: the counters are locked while deciding."""
        now = self._clock()
        window = timedelta(seconds=window_seconds)
        by_key = {self.key(purpose, tenant_id, limit.kind, limit.value): limit for limit in limits}
        fresh = {"tenant_id": tenant_id, "purpose": purpose, "hits": 0, "window_start": now, "expires_at": now + window}
        exceeded: Exceeded | None = None
        with self._db.transaction() as conn:
            rows = repo.lock(conn, [{"key_digest": key, **fresh} for key in by_key])
            updates = []
            for key, limit in by_key.items():
                row = rows.get(key)
                if row is None or row.hits == 0 or as_utc(row.expires_at) <= now:
                    hits, window_start, expires_at = 0, now, now + window
                else:
                    hits, window_start, expires_at = row.hits, as_utc(row.window_start), as_utc(row.expires_at)
                if hits >= limit.max_hits:
                    wait = max(1, math.ceil((expires_at - now).total_seconds()))
                    if exceeded is None or wait > exceeded.retry_after:
                        exceeded = Exceeded(limit.kind, wait)
                updates.append(
                    {
                        **fresh,
                        "key_digest": key,
                        "hits": hits + 1,
                        "window_start": window_start,
                        "expires_at": expires_at,
                    }
                )
            if exceeded is None:
                for values in updates:
                    repo.save(conn, values)
        self._maybe_purge()
        return exceeded

    def forget(self, purpose: str, tenant_id: str, kind: Kind, value: str) -> None:
        """Start the key's count again (a sign-in succeeded for this identifier)."""
        with self._db.transaction() as conn:
            repo.forget(conn, self.key(purpose, tenant_id, kind, value))

    def give_back(self, purpose: str, tenant_id: str, kind: Kind, value: str) -> None:
        """Take back one counted attempt (it succeeded, so it was not a failure)."""
        with self._db.transaction() as conn:
            repo.give_back(conn, self.key(purpose, tenant_id, kind, value))

    def _maybe_purge(self) -> None:
        # Counters of windows long gone are garbage; every process sweeps now and then, which is plenty.
        with self._lock:
            if time.monotonic() - self._purged_at < self._purge_interval:
                return
            self._purged_at = time.monotonic()
        with self._db.transaction() as conn:
            repo.purge(conn, self._clock())
