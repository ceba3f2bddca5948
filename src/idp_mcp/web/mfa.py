"""The hosted second-factor pages: the challenge (a code from an authenticator app, a backup code, a code by email)
and TOTP enrollment (a QR code made here, the key as text, then the backup codes, shown once). The decisions live in
``core.mfa``; this module renders and relays. The partial sign-in is the cookie core.mfa issued, never a user id in
the page.

Passkeys plug in with :attr:`MfaPages.passkey_page` (reachable as ``hosted.mfa_pages``): it renders the passkey
step of a partial sign-in (enrollment or challenge) from the page data read in the request's transaction; once the
ceremony is verified, the same transaction calls ``core.mfa.finish_with(...)`` and ``hosted.started_sync(...)``
(enrollment: show ``core.mfa.new_backup_codes`` first).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import segno
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from idp_mcp.core.mail import Mailer, OutgoingEmail
from idp_mcp.core.mfa import (
    PENDING_TTL,
    Enrolled,
    MfaDecision,
    MfaExpired,
    MfaUnavailable,
    PendingMfa,
    SecondFactor,
    TotpEnrollment,
    masked,
)
from idp_mcp.core.sessions import Interaction
from idp_mcp.core.sign_in import HostedPage, InteractionPage
from idp_mcp.domain import as_utc
from idp_mcp.errors import IdpError
from idp_mcp.oauth.tenants import TenantProvider
from idp_mcp.web.hosted import HostedPages
from idp_mcp.web.hosted_experience import NOT_FOUND, deliver_later
from idp_mcp.web.pages import EXPIRED, MAX_FIELD

# (request, provider, interaction, partial sign-in, enroll?, the page data read in the request's transaction)
PasskeyPage = Callable[[Request, TenantProvider, Interaction, PendingMfa, bool, HostedPage], Awaitable[Response]]
EXPIRED_MFA = "This sign-in expired or had too many wrong codes. Sign in again."
_FACTORS: tuple[SecondFactor, ...] = ("totp", "passkey", "email", "backup_code")
_CODE_FACTORS: tuple[SecondFactor, ...] = ("totp", "backup_code", "email")  # what the code form may name


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

    # --- rendering ----------------------------------------------------------------------------------------------

    async def _challenge(
        self, request: Request, provider: TenantProvider, interaction: Interaction, pending: PendingMfa,
        factor: str | None, *, error: str | None = None, notice: str | None = None, status: int = 200,
        page: HostedPage | None = None,
    ) -> Response:  # fmt: skip
        usable = [f for f in _FACTORS if f in pending.offered and (f != "passkey" or self.passkey_page is not None)]
        if not usable:
            raise MfaUnavailable("None of your second factors can be used here. Ask an administrator for help.")
        chosen = factor if factor in usable else usable[0]
        others = [f for f in usable if f != chosen]
        return await self.view.render(
            request, "hosted_mfa.html", provider.tenant_id, status=status, page=page, interaction_id=interaction.id,
            factor=chosen, others=others, email=masked(pending.email) if pending.email else None, error=error,
            notice=notice,
        )  # fmt: skip

    async def _enrollment(
        self, request: Request, provider: TenantProvider, interaction: Interaction, page: HostedPage,
        enrollment: TotpEnrollment, *, error: str | None = None, status: int = 200, skippable: bool = False,
        passkey: bool = False,
    ) -> Response:  # fmt: skip
        """The TOTP enrollment page, with the ``enrollment`` core.mfa.begin_totp made in the request's transaction."""
        response = await self.view.render(
            request, "hosted_mfa_enroll.html", provider.tenant_id, status=status, page=page,
            interaction_id=interaction.id, secret=enrollment.secret, qr=qr_data_uri(enrollment.uri), error=error,
            skippable=skippable, passkey=passkey,
        )  # fmt: skip
        response.headers["Cache-Control"] = "no-store"  # the page shows the TOTP secret
        return response

    def _expired_page(
        self, request: Request, provider: TenantProvider, interaction: Interaction, found: InteractionPage
    ) -> Awaitable[Response]:
        """:meth:`_expired` from the page data read in the request's transaction."""

        async def render() -> Response:
            response = await self.view.sign_in(
                request, provider.tenant_id, interaction_id=interaction.id, application=found.application,
                error=EXPIRED_MFA, status=400, page=found.page,
            )  # fmt: skip
            self.cookies.clear_mfa_pending(response, provider.tenant_id)
            return response

        return render()

    # --- one transaction per request ----------------------------------------------------------------------------

    async def _in_one_transaction(
        self, request: Request, provider: TenantProvider, interaction_id: str,
        work: Callable[[Interaction, InteractionPage, PendingMfa], Awaitable[Response]],
    ) -> Response:  # fmt: skip
        """Run ``work`` (the use case, in the same transaction as the page's data and the partial sign-in, read
        first) in one hop; it returns the rendering to await after the hop (no transaction left open)."""
        raw = self.cookies.mfa_pending(request, provider.tenant_id)

        def run() -> Awaitable[Response]:
            with self.core.db.unit_of_work(writes=True):
                found = self.core.hosted_sign_in.interaction_page(provider.tenant_id, interaction_id[:MAX_FIELD], None)
                interaction = found.interaction
                if interaction is None:
                    return self.view_error(request, found, "interaction.expired", EXPIRED, 410)
                pending = self.core.mfa.pending(raw, interaction.id)
                if pending is None or pending.tenant_id != provider.tenant_id:
                    return self._expired_page(request, provider, interaction, found)
                try:
                    return work(interaction, found, pending)
                except MfaExpired:
                    return self._expired_page(request, provider, interaction, found)

        return await (await run_in_threadpool(run))

    def view_error(
        self, request: Request, found: InteractionPage, error: str, description: str, status: int
    ) -> Awaitable[Response]:
        async def render() -> Response:
            return self.view.error(request, found.page, error, description, status)

        return render()

    # --- routes -------------------------------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        provider = await self.hosted.provider(request)
        if provider is None:
            return await self.pages.error_page(request, "tenant.not_found", NOT_FOUND, 404)
        use = request.query_params.get("use")
        raw = self.cookies.mfa_pending(request, provider.tenant_id)

        def work(interaction: Interaction, found: InteractionPage, pending: PendingMfa) -> Awaitable[Response]:
            if pending.outcome in ("enroll", "offer"):
                passkey = "passkey" in pending.enrollable and self.passkey_page is not None
                if passkey and (use == "passkey" or "totp" not in pending.enrollable):
                    assert self.passkey_page is not None
                    return self.passkey_page(request, provider, interaction, pending, True, found.page)
                enrollment = self.core.mfa.begin_totp(raw, interaction.id, found.page.brand_name)
                return self._enrollment(
                    request, provider, interaction, found.page, enrollment, skippable=pending.outcome == "offer",
                    passkey=passkey,
                )  # fmt: skip
            if self.passkey_page is not None and "passkey" in pending.offered and use in (None, "passkey"):
                return self.passkey_page(request, provider, interaction, pending, False, found.page)
            return self._challenge(request, provider, interaction, pending, use, page=found.page)

        try:
            return await self._in_one_transaction(request, provider, request.path_params["id"], work)
        except IdpError as exc:
            return await self.pages.error_page(request, exc.code, exc.message, exc.status)

    async def verify(self, request: Request) -> Response:
        posted = await self.hosted.posted(request)
        if isinstance(posted, Response):
            return posted
        provider, form = posted
        chosen = form.get("factor") or ""
        code = (form.get("code") or "")[:64]
        device = self.cookies.device_for_sign_in(request)
        raw = self.cookies.mfa_pending(request, provider.tenant_id)

        def work(interaction: Interaction, found: InteractionPage, pending: PendingMfa) -> Awaitable[Response]:
            named = [f for f in _CODE_FACTORS if f == chosen]
            factor: SecondFactor = named[0] if named else pending.offered[0] if pending.offered else "totp"
            try:  # the code and the session, then the code for the application: one transaction
                decision = self.core.mfa.verify(raw, interaction.id, factor, code, device=device)
            except MfaExpired:
                raise
            except IdpError as exc:
                again = self.core.mfa.pending(raw, interaction.id)
                if again is None:  # that was the last attempt of this partial sign-in
                    return self._expired_page(request, provider, interaction, found)
                return self._challenge(
                    request, provider, interaction, again, factor, error=exc.message, status=exc.status,
                    page=found.page,
                )  # fmt: skip
            return self._signed_in(request, provider, interaction, decision, device)

        return await self._in_one_transaction(request, provider, form.get("interaction") or "", work)

    async def send_email(self, request: Request) -> Response:
        """The code is stored in the request's transaction; the email goes out after the response, outside it."""
        posted = await self.hosted.posted(request)
        if isinstance(posted, Response):
            return posted
        provider, _form = posted
        raw = self.cookies.mfa_pending(request, provider.tenant_id)

        def work(interaction: Interaction, found: InteractionPage, pending: PendingMfa) -> Awaitable[Response]:
            try:
                outgoing = self.core.mfa.send_email_code(raw, interaction.id)
            except IdpError as exc:
                return self._challenge(
                    request, provider, interaction, pending, "email", error=exc.message, status=exc.status,
                    page=found.page,
                )  # fmt: skip
            notice = "We sent a code. Codes sent before it no longer work."
            challenge = self._challenge(
                request, provider, interaction, pending, "email", notice=notice, page=found.page
            )
            return _sent_after(challenge, self.core.mailer, outgoing)  # like sign-in codes

        return await self._in_one_transaction(request, provider, _form.get("interaction") or "", work)

    async def enroll(self, request: Request) -> Response:
        posted = await self.hosted.posted(request)
        if isinstance(posted, Response):
            return posted
        provider, form = posted
        code = (form.get("code") or "")[:64]
        device = self.cookies.device_for_sign_in(request)
        raw = self.cookies.mfa_pending(request, provider.tenant_id)

        def work(interaction: Interaction, found: InteractionPage, pending: PendingMfa) -> Awaitable[Response]:
            try:
                enrolled = self.core.mfa.confirm_totp(raw, interaction.id, code, device=device)
            except MfaExpired:
                raise
            except IdpError as exc:
                again = self.core.mfa.pending(raw, interaction.id)
                if again is None:
                    return self._expired_page(request, provider, interaction, found)
                # A new key is shown: the app may have stored the old one, so it is added again from the new QR code.
                enrollment = self.core.mfa.begin_totp(raw, interaction.id, found.page.brand_name)
                return self._enrollment(
                    request, provider, interaction, found.page, enrollment, error=exc.message, status=exc.status,
                    skippable=again.outcome == "offer",
                )  # fmt: skip
            return self._backup_codes(request, provider, interaction, found.page, enrolled, device)

        return await self._in_one_transaction(request, provider, form.get("interaction") or "", work)

    async def _backup_codes(
        self, request: Request, provider: TenantProvider, interaction: Interaction, page: HostedPage,
        enrolled: Enrolled, device: str,
    ) -> Response:  # fmt: skip
        assert enrolled.decision.session is not None
        response = await self.view.render(
            request, "hosted_mfa_backup_codes.html", provider.tenant_id, page=page, interaction_id=interaction.id,
            codes=enrolled.backup_codes,
        )  # fmt: skip
        response.headers["Cache-Control"] = "no-store"  # the codes are shown once
        self.cookies.set_session(response, enrolled.decision.session, provider.tenant_id)
        self.cookies.set_device(response, device)
        self.cookies.clear_mfa_pending(response, provider.tenant_id)
        return response

    async def skip(self, request: Request) -> Response:
        """Not now: the optional enrollment is declined and the request goes on with the first factor."""
        posted = await self.hosted.posted(request)
        if isinstance(posted, Response):
            return posted
        provider, form = posted
        device = self.cookies.device_for_sign_in(request)
        raw = self.cookies.mfa_pending(request, provider.tenant_id)

        def work(interaction: Interaction, found: InteractionPage, pending: PendingMfa) -> Awaitable[Response]:
            try:
                decision = self.core.mfa.skip(raw, interaction.id, device=device)
            except MfaExpired:
                raise
            except IdpError as exc:
                return self.view_error(request, found, exc.code, exc.message, exc.status)
            return self._signed_in(request, provider, interaction, decision, device)

        return await self._in_one_transaction(request, provider, form.get("interaction") or "", work)

    def _signed_in(
        self, request: Request, provider: TenantProvider, interaction: Interaction, decision: MfaDecision, device: str
    ) -> Awaitable[Response]:
        """In the request's transaction: the session ``decision`` started goes on to the application."""
        assert decision.session is not None
        step = self.hosted.started_sync(provider, interaction, decision.session)
        return self.hosted.respond(request, provider, interaction, step, device)

    async def continue_(self, request: Request) -> Response:
        """After the backup codes were shown: finish the authorization request with the new session."""
        posted = await self.hosted.posted(request)
        if isinstance(posted, Response):
            return posted
        provider, form = posted
        session_id = self.cookies.session_id(request, provider.tenant_id)

        def run() -> Awaitable[Response]:
            with self.core.db.unit_of_work(writes=True):
                found = self.core.hosted_sign_in.interaction_page(
                    provider.tenant_id, (form.get("interaction") or "")[:MAX_FIELD], session_id
                )
                interaction, session = found.interaction, found.session
                if interaction is None:
                    return self.view_error(request, found, "interaction.expired", EXPIRED, 410)
                # Only a session that just started (the enrollment's): an older one goes through the interaction
                # page, which applies prompt=login and max_age. And it must satisfy the request, like every approval
                # with a session (with_session_sync asks core.mfa).
                if session is None or self.core.clock() - as_utc(session.auth_time) > PENDING_TTL:
                    return _redirect(f"/t/{provider.tenant_id}/interaction/{interaction.id}")
                step = self.hosted.with_session_sync(provider, interaction, session)
                return self.hosted.respond(request, provider, interaction, step)

        return await (await run_in_threadpool(run))


async def _redirect(location: str) -> Response:
    return RedirectResponse(location, status_code=303)


async def _sent_after(rendering: Awaitable[Response], mailer: Mailer, email: OutgoingEmail) -> Response:
    """The response, with ``email`` sent after it (outside any transaction)."""
    return deliver_later(await rendering, mailer, email)
