"""The hosted second-factor pages: the challenge (a code from an authenticator app, a backup code, a code by email)
and TOTP enrollment (a QR code made here, the key as text, then the backup codes, shown once). The decisions live in
``core.mfa``; this module renders and relays. The partial sign-in is the cookie core.mfa issued, never a user id in
the page.

Passkeys plug in with :attr:`MfaPages.passkey_page` (reachable as ``hosted.mfa_pages``): it renders the passkey
step of a partial sign-in (enrollment or challenge); once the ceremony is verified it calls
``core.mfa.finish_with(...)`` and ``hosted.signed_in(...)`` (enrollment: show ``core.mfa.new_backup_codes`` first).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import segno
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from idp_mcp.core.mfa import PENDING_TTL, MfaExpired, MfaUnavailable, PendingMfa, SecondFactor, masked
from idp_mcp.core.sessions import Interaction
from idp_mcp.domain import as_utc
from idp_mcp.errors import IdpError
from idp_mcp.oauth.tenants import TenantProvider
from idp_mcp.web.hosted import HostedPages
from idp_mcp.web.hosted_experience import NOT_FOUND
from idp_mcp.web.pages import EXPIRED, MAX_FIELD

PasskeyPage = Callable[[Request, TenantProvider, Interaction, PendingMfa, bool], Awaitable[Response]]
EXPIRED_MFA = "This sign-in expired or had too many wrong codes. Sign in again."
_FACTORS: tuple[SecondFactor, ...] = ("totp", "passkey", "email", "backup_code")


def qr_data_uri(uri: str) -> str:
    """The provisioning URI as an SVG QR code in a data: URI (the CSP allows data: images; no inline style)."""
    qr: Any = segno.make(uri, error="m")
    return str(qr.svg_data_uri(scale=4, dark="#000", light="#fff"))


class MfaPages:
    def __init__(self, hosted: HostedPages) -> None:
        self.hosted = hosted
        self.pages = hosted.pages
        self.core = hosted.core
        self.cookies = hosted.cookies
        self.view = hosted.view
        # Set by the passkeys pages: render the passkey step of a partial sign-in (its enrollment when
        # ``enroll`` is true, else its challenge). Without it passkeys are not offered on these pages.
        self.passkey_page: PasskeyPage | None = None
        hosted.mfa_pages = self  # so the passkeys pages can find these

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/t/{tenant}/interaction/{id}/mfa", self.page, methods=["GET"]),
            Route("/t/{tenant}/mfa/verify", self.verify, methods=["POST"]),
            Route("/t/{tenant}/mfa/email", self.send_email, methods=["POST"]),
            Route("/t/{tenant}/mfa/enroll", self.enroll, methods=["POST"]),
            Route("/t/{tenant}/mfa/continue", self.continue_, methods=["POST"]),
            Route("/t/{tenant}/mfa/skip", self.skip, methods=["POST"]),
        ]

    # --- lookups ------------------------------------------------------------------------------------------------

    async def _pending(self, request: Request, provider: TenantProvider, interaction: Interaction) -> PendingMfa | None:
        raw = self.cookies.mfa_pending(request, provider.tenant_id)
        pending = await run_in_threadpool(self.core.mfa.pending, raw, interaction.id)
        return pending if pending is not None and pending.tenant_id == provider.tenant_id else None

    async def _expired(self, request: Request, provider: TenantProvider, interaction: Interaction) -> Response:
        """Back to the sign-in page: the partial sign-in is gone (expired, too many wrong codes, another request)."""
        response = await self.hosted._render_sign_in(request, provider, interaction, error=EXPIRED_MFA, status=400)
        self.cookies.clear_mfa_pending(response, provider.tenant_id)
        return response

    # --- rendering ----------------------------------------------------------------------------------------------

    async def _challenge(
        self, request: Request, provider: TenantProvider, interaction: Interaction, pending: PendingMfa,
        factor: str | None, *, error: str | None = None, notice: str | None = None, status: int = 200,
    ) -> Response:  # fmt: skip
        usable = [f for f in _FACTORS if f in pending.offered and (f != "passkey" or self.passkey_page is not None)]
        if not usable:
            raise MfaUnavailable("None of your second factors can be used here. Ask an administrator for help.")
        chosen = factor if factor in usable else usable[0]
        others = [f for f in usable if f != chosen]
        return await self.view.render(
            request, "hosted_mfa.html", provider.tenant_id, status=status, interaction_id=interaction.id,
            factor=chosen, others=others, email=masked(pending.email) if pending.email else None, error=error,
            notice=notice,
        )  # fmt: skip

    async def _enrollment(
        self, request: Request, provider: TenantProvider, interaction: Interaction, *, error: str | None = None,
        status: int = 200, skippable: bool = False, passkey: bool = False,
    ) -> Response:  # fmt: skip
        page = await self.view.load(provider.tenant_id)
        raw = self.cookies.mfa_pending(request, provider.tenant_id)
        enrollment = await run_in_threadpool(self.core.mfa.begin_totp, raw, interaction.id, page.brand_name)
        response = await self.view.render(
            request, "hosted_mfa_enroll.html", provider.tenant_id, status=status, page=page,
            interaction_id=interaction.id, secret=enrollment.secret, qr=qr_data_uri(enrollment.uri), error=error,
            skippable=skippable, passkey=passkey,
        )  # fmt: skip
        response.headers["Cache-Control"] = "no-store"  # the page shows the TOTP secret
        return response

    # --- routes -------------------------------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        provider = await self.hosted.provider(request)
        if provider is None:
            return await self.pages.error_page(request, "tenant.not_found", NOT_FOUND, 404)
        interaction = await self.hosted.interaction(provider, request.path_params["id"][:MAX_FIELD])
        if interaction is None:
            return await self.pages.error_page(request, "interaction.expired", EXPIRED, 410)
        pending = await self._pending(request, provider, interaction)
        if pending is None:
            return await self._expired(request, provider, interaction)
        use = request.query_params.get("use")
        try:
            if pending.outcome in ("enroll", "offer"):
                passkey = "passkey" in pending.enrollable and self.passkey_page is not None
                if passkey and (use == "passkey" or "totp" not in pending.enrollable):
                    assert self.passkey_page is not None
                    return await self.passkey_page(request, provider, interaction, pending, True)
                return await self._enrollment(
                    request, provider, interaction, skippable=pending.outcome == "offer", passkey=passkey
                )
            if self.passkey_page is not None and "passkey" in pending.offered and use in (None, "passkey"):
                return await self.passkey_page(request, provider, interaction, pending, False)
            return await self._challenge(request, provider, interaction, pending, use)
        except IdpError as exc:
            return await self.pages.error_page(request, exc.code, exc.message, exc.status)

    async def verify(self, request: Request) -> Response:
        found = await self.hosted.interaction_form(request)
        if isinstance(found, Response):
            return found
        provider, interaction, form = found
        factor = form.get("factor") or ""
        code = (form.get("code") or "")[:64]
        pending = await self._pending(request, provider, interaction)
        if pending is None:
            return await self._expired(request, provider, interaction)
        if factor not in ("totp", "backup_code", "email"):
            factor = pending.offered[0] if pending.offered else "totp"
        device = self.cookies.device_for_sign_in(request)
        raw = self.cookies.mfa_pending(request, provider.tenant_id)
        try:
            decision = await run_in_threadpool(
                lambda: self.core.mfa.verify(raw, interaction.id, factor, code, device=device)  # type: ignore[arg-type]
            )
        except MfaExpired:
            return await self._expired(request, provider, interaction)
        except IdpError as exc:
            again = await self._pending(request, provider, interaction)
            if again is None:  # that was the last attempt of this partial sign-in
                return await self._expired(request, provider, interaction)
            return await self._challenge(
                request, provider, interaction, again, factor, error=exc.message, status=exc.status
            )
        return await self.hosted.signed_in(request, provider, interaction, decision, device)

    async def send_email(self, request: Request) -> Response:
        found = await self.hosted.interaction_form(request)
        if isinstance(found, Response):
            return found
        provider, interaction, _form = found
        pending = await self._pending(request, provider, interaction)
        if pending is None:
            return await self._expired(request, provider, interaction)
        raw = self.cookies.mfa_pending(request, provider.tenant_id)
        try:
            outgoing = await run_in_threadpool(self.core.mfa.send_email_code, raw, interaction.id)
        except IdpError as exc:
            return await self._challenge(
                request, provider, interaction, pending, "email", error=exc.message, status=exc.status
            )
        notice = "We sent a code. Codes sent before it no longer work."
        response = await self._challenge(request, provider, interaction, pending, "email", notice=notice)
        response.background = BackgroundTask(self.core.mailer.send, outgoing)  # after the response, like sign-in codes
        return response

    async def enroll(self, request: Request) -> Response:
        found = await self.hosted.interaction_form(request)
        if isinstance(found, Response):
            return found
        provider, interaction, form = found
        code = (form.get("code") or "")[:64]
        device = self.cookies.device_for_sign_in(request)
        raw = self.cookies.mfa_pending(request, provider.tenant_id)
        try:
            enrolled = await run_in_threadpool(
                lambda: self.core.mfa.confirm_totp(raw, interaction.id, code, device=device)
            )
        except MfaExpired:
            return await self._expired(request, provider, interaction)
        except IdpError as exc:
            again = await self._pending(request, provider, interaction)
            if again is None:
                return await self._expired(request, provider, interaction)
            # A new key is shown: the app may have stored the old one, so it is added again from the new QR code.
            return await self._enrollment(
                request, provider, interaction, error=exc.message, status=exc.status, skippable=again.outcome == "offer"
            )
        assert enrolled.decision.session is not None
        response = await self.view.render(
            request, "hosted_mfa_backup_codes.html", provider.tenant_id, interaction_id=interaction.id,
            codes=enrolled.backup_codes,
        )  # fmt: skip
        response.headers["Cache-Control"] = "no-store"  # the codes are shown once
        self.cookies.set_session(response, enrolled.decision.session, provider.tenant_id)
        self.cookies.set_device(response, device)
        self.cookies.clear_mfa_pending(response, provider.tenant_id)
        return response

    async def skip(self, request: Request) -> Response:
        """Not now: the optional enrollment is declined and the request goes on with the first factor."""
        found = await self.hosted.interaction_form(request)
        if isinstance(found, Response):
            return found
        provider, interaction, _form = found
        device = self.cookies.device_for_sign_in(request)
        raw = self.cookies.mfa_pending(request, provider.tenant_id)
        try:
            decision = await run_in_threadpool(lambda: self.core.mfa.skip(raw, interaction.id, device=device))
        except MfaExpired:
            return await self._expired(request, provider, interaction)
        except IdpError as exc:
            return await self.pages.error_page(request, exc.code, exc.message, exc.status)
        return await self.hosted.signed_in(request, provider, interaction, decision, device)

    async def continue_(self, request: Request) -> Response:
        """After the backup codes were shown: finish the authorization request with the new session."""
        found = await self.hosted.interaction_form(request)
        if isinstance(found, Response):
            return found
        provider, interaction, _form = found
        session = await self.hosted._session(request, provider.tenant_id)
        # Only a session that just started (the enrollment's): an older one goes through the interaction page, which
        # applies prompt=login and max_age. And it must satisfy the request, like every approval with a session.
        fresh = session is not None and self.core.clock() - as_utc(session.auth_time) <= PENDING_TTL
        if session is None or not fresh:
            return RedirectResponse(f"/t/{provider.tenant_id}/interaction/{interaction.id}", status_code=303)
        return await self.hosted._complete(request, provider, interaction, session)  # second factor checked there
