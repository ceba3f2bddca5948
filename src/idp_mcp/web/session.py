"""Cookies: the browser session (server-side, by digest) and a double-submit CSRF token."""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

from idp_mcp.core import devices
from idp_mcp.errors import CsrfFailed
from idp_mcp.settings import Settings


class CookieJar:
    def __init__(self, settings: Settings) -> None:
        self.secure = settings.is_https
        # __Host- cookies are bound to this exact origin (no Domain, Path=/, Secure): only possible on https.
        prefix = "__Host-" if self.secure else ""
        self.session_name = f"{prefix}idp_session"
        self.csrf_name = f"{prefix}idp_csrf"
        self.session_max_age = settings.session_ttl
        # One per browser, for every account signed in from it: what makes it a known device (core/devices.py).
        self.device_name = f"{prefix}idp_device"
        self.device_max_age = settings.known_device_ttl

    def _session_cookie(self, tenant_id: str | None) -> str:
        # Administrators and each tenant's end users have separate sessions in the same browser.
        return self.session_name if tenant_id is None else f"{self.session_name}_{tenant_id}"

    def session_id(self, request: Request, tenant_id: str | None = None) -> str | None:
        return request.cookies.get(self._session_cookie(tenant_id))

    def set_session(self, response: Response, raw: str, tenant_id: str | None = None) -> None:
        response.set_cookie(
            self._session_cookie(tenant_id), raw, max_age=self.session_max_age, httponly=True, secure=self.secure,
            samesite="lax", path="/",
        )  # fmt: skip

    def clear_session(self, response: Response, tenant_id: str | None = None) -> None:
        response.delete_cookie(
            self._session_cookie(tenant_id), path="/", secure=self.secure, httponly=True, samesite="lax"
        )

    def _pending_cookie(self, tenant_id: str) -> str:
        return f"{self.session_name.replace('session', 'mfa')}_{tenant_id}"

    def mfa_pending(self, request: Request, tenant_id: str) -> str | None:
        """The browser's sign-in waiting for its second factor (core.mfa), by its cookie value."""
        return request.cookies.get(self._pending_cookie(tenant_id))

    def set_mfa_pending(self, response: Response, raw: str, tenant_id: str, max_age: int) -> None:
        response.set_cookie(
            self._pending_cookie(tenant_id), raw, max_age=max_age, httponly=True, secure=self.secure,
            samesite="lax", path="/",
        )  # fmt: skip

    def clear_mfa_pending(self, response: Response, tenant_id: str) -> None:
        response.delete_cookie(
            self._pending_cookie(tenant_id), path="/", secure=self.secure, httponly=True, samesite="lax"
        )

    def device_id(self, request: Request) -> str | None:
        return devices.usable(request.cookies.get(self.device_name))

    def device_for_sign_in(self, request: Request) -> str:
        """The browser's device cookie value, or a new one for a browser that has none yet."""
        return self.device_id(request) or devices.new_device_token()

    def set_device(self, response: Response, token: str) -> None:
        """(Re)send the device cookie; every sign-in moves its expiry on, as it does the stored device's."""
        response.set_cookie(
            self.device_name, token, max_age=self.device_max_age, httponly=True, secure=self.secure, samesite="lax",
            path="/",
        )  # fmt: skip

    def csrf_token(self, request: Request) -> str:
        """The token forms must echo; reuses the cookie's value or makes a new one (see ``ensure_csrf``)."""
        existing = request.cookies.get(self.csrf_name)
        if existing and 20 <= len(existing) <= 128:
            return existing
        token: str = request.state.__dict__.setdefault("new_csrf", secrets.token_urlsafe(32))
        return token

    def ensure_csrf(self, request: Request, response: Response) -> None:
        new = request.state.__dict__.get("new_csrf")
        if new:
            response.set_cookie(self.csrf_name, new, httponly=True, secure=self.secure, samesite="lax", path="/")

    def check_csrf(self, request: Request, submitted: str | None) -> None:
        cookie = request.cookies.get(self.csrf_name)
        if not cookie or not submitted or not hmac.compare_digest(cookie.encode(), submitted.encode()):
            raise CsrfFailed("This form expired or was not sent from this site. Reload the page and try again.")
