"""Known devices: browsers a user has signed in from, named by a long-lived random cookie.

A password sign-in from a known device is counted against a limit of its own instead of the identifier's shared one,
so failures caused by someone else (anywhere, for any reason) never lock the owner out of a browser they used before.
Only the SHA-256 digest of (tenant, user, cookie value) is stored: the cookie names the device for that account only.
"""

from __future__ import annotations

from idp_mcp.core.crypto import digest, new_secret

#: Longer cookie values are not ours: they are ignored (and never reach the database).
MAX_DEVICE_TOKEN = 128


def new_device_token() -> str:
    return new_secret(32)


def usable(token: str | None) -> str | None:
    """The cookie value if it can be one of ours, else None."""
    return token if token and 20 <= len(token) <= MAX_DEVICE_TOKEN else None


def device_key(tenant_id: str, user_id: str, token: str) -> str:
    return digest("\x00".join(("known_device", tenant_id, user_id, token)))
