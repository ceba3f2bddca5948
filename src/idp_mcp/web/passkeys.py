"""Passkeys on a tenant's hosted pages: passwordless sign-in (when the tenant's ``mfa.passkeyFirst`` is on), adding a
passkey after signing in, and a passkey as the second factor (the challenge page) or as the factor a user sets up
when the MFA policy asks (the enrollment page; the partial sign-in is core.mfa's). The ceremonies and their rules
are in ``core.passkeys``; this module relays.

The browser side is /static/passkeys.js (the CSP allows scripts from this origin only): it fetches the WebAuthn
options from a JSON endpoint (a CSRF-checked POST bound to the pending interaction), lets the authenticator answer,
and posts the answer (base64url JSON) with the page's form, so the result is an ordinary page or redirect.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from idp_mcp.core.mfa import MfaDecision, MfaExpired, PendingMfa
from idp_mcp.core.passkeys import MAX_RESPONSE
from idp_mcp.core.sessions import BrowserSession, Interaction
from idp_mcp.errors import CsrfFailed, IdpError
from idp_mcp.oauth.tenants import TenantProvider
from idp_mcp.web.hosted import HostedPages
from idp_mcp.web.hosted_experience import NOT_FOUND
from idp_mcp.web.mfa import MfaPages
from idp_mcp.web.pages import EXPIRED, MAX_FIELD

NO_PENDING = "This sign-in expired. Sign in again."
SIGN_IN_FIRST = "Sign in first, then add a passkey."


@dataclass(frozen=True)
class _Refusal:
    """Why a passkey request is answered with an error (the JSON endpoints and the pages show it differently)."""

    code: str
    message: str
    status: int


@dataclass(frozen=True)
class _Found:
    provider: TenantProvider
    interaction: Interaction
    form: dict[str, str | None]


class PasskeyPages:
    def __init__(self, hosted: HostedPages, mfa: MfaPages) -> None:
        self.hosted = hosted
        self.mfa = mfa
        self.pages = hosted.pages
        self.core = hosted.core
        self.cookies = hosted.cookies
        hosted.offer_passkey = self.offer_after_sign_in
        mfa.passkey_page = self.mfa_step  # the passkey step of the second-factor pages

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/t/{tenant}/passkeys/sign-in/options", self.sign_in_options, methods=["POST"]),
            Route("/t/{tenant}/passkeys/sign-in", self.sign_in, methods=["POST"]),
            Route("/t/{tenant}/interaction/{id}/passkey", self.offer_page, methods=["GET"]),
            Route("/t/{tenant}/passkeys/register/options", self.register_options, methods=["POST"]),
            Route("/t/{tenant}/passkeys/register", self.register, methods=["POST"]),
            Route("/t/{tenant}/passkeys/skip", self.skip, methods=["POST"]),
            Route("/t/{tenant}/passkeys/mfa/options", self.second_factor_options, methods=["POST"]),
            Route("/t/{tenant}/passkeys/mfa", self.second_factor, methods=["POST"]),
            Route("/t/{tenant}/passkeys/mfa/register/options", self.enroll_options, methods=["POST"]),
            Route("/t/{tenant}/passkeys/mfa/register", self.enroll, methods=["POST"]),
        ]

    # --- lookups ----------------------------------------------------------------------------------------------

    async def _request(self, request: Request) -> _Found | _Refusal:
        """The tenant, its pending interaction and the CSRF-checked form; or why not."""
        provider = await self.hosted.provider(request)
        if provider is None:
            return _Refusal("tenant.not_found", NOT_FOUND, 404)
        try:
            form = await self.pages.read_form(request)
        except CsrfFailed as exc:
            return _Refusal(exc.code, exc.message, exc.status)
        interaction = await self.hosted.interaction(provider, form.get("interaction") or "")
        if interaction is None:
            return _Refusal("interaction.expired", EXPIRED, 410)
        return _Found(provider, interaction, form)

    @staticmethod
    def _json_error(refusal: _Refusal) -> JSONResponse:
        return JSONResponse({"error": refusal.code, "message": refusal.message}, status_code=refusal.status)

    async def _error_page(self, request: Request, refusal: _Refusal) -> Response:
        return await self.pages.error_page(request, refusal.code, refusal.message, refusal.status)

    # --- passwordless sign-in ---------------------------------------------------------------------------------

    async def sign_in_options(self, request: Request) -> Response:
        """JSON options for ``navigator.credentials.get()``: any of this tenant's discoverable passkeys."""
        found = await self._request(request)
        if isinstance(found, _Refusal):
            return self._json_error(found)
        provider, interaction = found.provider, found.interaction
        try:  # the core refuses while the tenant does not let a passkey be the first factor
            options = await run_in_threadpool(
                self.core.passkeys.authentication_options, provider.tenant_id, interaction.id
            )
        except IdpError as exc:
            return self._json_error(_Refusal(exc.code, exc.message, exc.status))
        return Response(options, media_type="application/json", headers={"Cache-Control": "no-store"})

    async def sign_in(self, request: Request) -> Response:
        """The authenticator's answer: sign the user in, or show the sign-in page with what went wrong."""
        found = await self._request(request)
        if isinstance(found, _Refusal):
            return await self._error_page(request, found)
        provider, interaction, form = found.provider, found.interaction, found.form
        try:
            signed_in = await run_in_threadpool(
                self.core.passkeys.authenticate, provider.tenant_id, interaction.id,
                (form.get("credential") or "")[:MAX_RESPONSE + 1],
            )  # fmt: skip
        except IdpError as exc:
            return await self.hosted._render_sign_in(
                request, provider, interaction, error=exc.message, status=exc.status
            )
        return await self.hosted.sign_user_in(request, provider, interaction, signed_in.user, amr=signed_in.amr)

    # --- adding a passkey after signing in --------------------------------------------------------------------

    def offer_after_sign_in(self, tenant_id: str, interaction_id: str, user_id: str) -> str | None:
        """Where passkeys may be the first factor, a user who has none is offered to add one (skippable): the offer
        page's location, else None. Called in the sign-in's worker thread and transaction (web/hosted.py)."""
        if not self.core.passkeys.offer_after_sign_in(tenant_id, user_id):
            return None
        return f"/t/{tenant_id}/interaction/{interaction_id}/passkey"

    async def offer_page(self, request: Request) -> Response:
        tenant_id = request.path_params["tenant"]
        provider = await self.hosted.provider(request)
        if provider is None:
            return await self.pages.error_page(request, "tenant.not_found", NOT_FOUND, 404)
        interaction = await self.hosted.interaction(provider, request.path_params["id"])
        if interaction is None:
            return await self.pages.error_page(request, "interaction.expired", EXPIRED, 410)
        if await self.hosted._session(request, tenant_id) is None:
            return await self.hosted._render_sign_in(request, provider, interaction, error=SIGN_IN_FIRST)
        return await self._render_offer(request, provider, interaction)

    async def _render_offer(
        self, request: Request, provider: TenantProvider, interaction: Interaction, *, error: str | None = None,
        status: int = 200,
    ) -> Response:  # fmt: skip
        return await self.hosted.view.render(
            request, "hosted_passkey.html", provider.tenant_id, status=status, interaction_id=interaction.id,
            error=error,
        )  # fmt: skip

    async def register_options(self, request: Request) -> Response:
        """JSON options for ``navigator.credentials.create()`` for the signed-in user."""
        found = await self._request(request)
        if isinstance(found, _Refusal):
            return self._json_error(found)
        provider, interaction = found.provider, found.interaction
        session = await self.hosted._session(request, provider.tenant_id)
        if session is None:
            return self._json_error(_Refusal("session.required", SIGN_IN_FIRST, 401))
        try:
            options = await run_in_threadpool(
                self.core.passkeys.registration_options, provider.tenant_id, session.user_id, interaction.id
            )
        except IdpError as exc:
            return self._json_error(_Refusal(exc.code, exc.message, exc.status))
        return Response(options, media_type="application/json", headers={"Cache-Control": "no-store"})

    async def register(self, request: Request) -> Response:
        """The authenticator's answer: store the passkey and carry on to the application, or say what went wrong."""
        found = await self._request(request)
        if isinstance(found, _Refusal):
            return await self._error_page(request, found)
        provider, interaction, form = found.provider, found.interaction, found.form
        session = await self.hosted._session(request, provider.tenant_id)
        if session is None:
            return await self.hosted._render_sign_in(request, provider, interaction, error=SIGN_IN_FIRST)
        try:
            await run_in_threadpool(
                self.core.passkeys.register, provider.tenant_id, session.user_id, interaction.id,
                (form.get("credential") or "")[:MAX_RESPONSE + 1], (form.get("name") or "")[:MAX_FIELD],
            )  # fmt: skip
        except IdpError as exc:
            return await self._render_offer(request, provider, interaction, error=exc.message, status=exc.status)
        return await self._go_on(request, provider, interaction, session)

    async def skip(self, request: Request) -> Response:
        """Not now: carry on to the application without a passkey."""
        found = await self._request(request)
        if isinstance(found, _Refusal):
            return await self._error_page(request, found)
        provider, interaction = found.provider, found.interaction
        session = await self.hosted._session(request, provider.tenant_id)
        if session is None:
            return RedirectResponse(f"/t/{provider.tenant_id}/interaction/{interaction.id}", status_code=303)
        return await self._go_on(request, provider, interaction, session)

    async def _go_on(
        self, request: Request, provider: TenantProvider, interaction: Interaction, session: BrowserSession
    ) -> Response:
        """On to the application with the existing session, unless this request needs more than the session has
        (a step-up with acr_values, a policy made stricter since): core.mfa decides, as on every approval."""
        second = await self.hosted.second_factor_needed(request, provider, interaction, session)
        return second or await self.hosted._complete(request, provider, interaction, session)

    # --- a passkey as second factor, and its enrollment when the policy asks for one --------------------------

    async def mfa_step(
        self, request: Request, provider: TenantProvider, interaction: Interaction, pending: PendingMfa,
        enroll: bool, *, error: str | None = None, status: int = 200,
    ) -> Response:  # fmt: skip
        """The passkey step of a partial sign-in (web/mfa.py calls it): add a passkey (``enroll``) or use one,
        with links to the other factors the user may use instead."""
        if enroll:
            others = ["totp"] if "totp" in pending.enrollable else []
        else:
            others = [f for f in ("totp", "email", "backup_code") if f in pending.offered]
        return await self.hosted.view.render(
            request, "hosted_passkey_mfa.html", provider.tenant_id, status=status, interaction_id=interaction.id,
            enroll=enroll, others=others, skippable=enroll and pending.outcome == "offer", error=error,
        )  # fmt: skip

    async def _pending(self, request: Request, found: _Found, need: str) -> PendingMfa | _Refusal:
        """The browser's partial sign-in for this request, where a passkey may be ``need``ed ("offered" to prove
        it, "enrollable" to add one)."""
        pending = await self.mfa._pending(request, found.provider, found.interaction)
        if pending is None:
            return _Refusal("mfa.expired", NO_PENDING, 400)
        if "passkey" not in (pending.offered if need == "offered" else pending.enrollable):
            return _Refusal("mfa.unavailable", "A passkey cannot be used for this sign-in. Choose another way.", 403)
        return pending

    async def second_factor_options(self, request: Request) -> Response:
        """JSON options for ``navigator.credentials.get()`` limited to the partially signed-in user's passkeys."""
        found = await self._request(request)
        if isinstance(found, _Refusal):
            return self._json_error(found)
        pending = await self._pending(request, found, "offered")
        if isinstance(pending, _Refusal):
            return self._json_error(pending)
        options = await run_in_threadpool(
            self.core.passkeys.authentication_options, found.provider.tenant_id, found.interaction.id,
            pending.user_id,
        )  # fmt: skip
        return Response(options, media_type="application/json", headers={"Cache-Control": "no-store"})

    async def second_factor(self, request: Request) -> Response:
        """The authenticator's answer on the second-factor page: the session starts, or the page says why not."""
        found = await self._request(request)
        if isinstance(found, _Refusal):
            return await self._error_page(request, found)
        provider, interaction = found.provider, found.interaction
        pending = await self._pending(request, found, "offered")
        if isinstance(pending, _Refusal):
            return await self.mfa._expired(request, provider, interaction)
        device = self.cookies.device_for_sign_in(request)
        raw = self.cookies.mfa_pending(request, provider.tenant_id)
        try:
            # The challenge names the partially signed-in user: only their passkeys answer it.
            proven = await run_in_threadpool(
                self.core.passkeys.authenticate, provider.tenant_id, interaction.id,
                (found.form.get("credential") or "")[:MAX_RESPONSE + 1], pending.user_id,
            )  # fmt: skip
            decision = await run_in_threadpool(
                lambda: self.core.mfa.finish_with(raw, interaction.id, proven.amr[0], device=device)
            )
        except MfaExpired:
            return await self.mfa._expired(request, provider, interaction)
        except IdpError as exc:
            return await self.mfa_step(request, provider, interaction, pending, False, error=exc.message,
                                       status=exc.status)  # fmt: skip
        return await self.hosted.signed_in(request, provider, interaction, decision, device)

    async def enroll_options(self, request: Request) -> Response:
        """JSON options for ``navigator.credentials.create()`` for a user who must set up a second factor."""
        found = await self._request(request)
        if isinstance(found, _Refusal):
            return self._json_error(found)
        pending = await self._pending(request, found, "enrollable")
        if isinstance(pending, _Refusal):
            return self._json_error(pending)
        options = await run_in_threadpool(
            self.core.passkeys.registration_options, found.provider.tenant_id, pending.user_id, found.interaction.id
        )
        return Response(options, media_type="application/json", headers={"Cache-Control": "no-store"})

    async def enroll(self, request: Request) -> Response:
        """The new passkey as the user's second factor: stored, then the backup codes (shown once) and the session."""
        found = await self._request(request)
        if isinstance(found, _Refusal):
            return await self._error_page(request, found)
        provider, interaction, form = found.provider, found.interaction, found.form
        pending = await self._pending(request, found, "enrollable")
        if isinstance(pending, _Refusal):
            return await self.mfa._expired(request, provider, interaction)
        device = self.cookies.device_for_sign_in(request)
        raw = self.cookies.mfa_pending(request, provider.tenant_id)
        try:
            passkey = await run_in_threadpool(
                self.core.passkeys.register, provider.tenant_id, pending.user_id, interaction.id,
                (form.get("credential") or "")[:MAX_RESPONSE + 1], (form.get("name") or "")[:MAX_FIELD],
            )  # fmt: skip
        except IdpError as exc:
            return await self.mfa_step(request, provider, interaction, pending, True, error=exc.message,
                                       status=exc.status)  # fmt: skip
        method = "swk" if passkey.backed_up else "hwk"
        try:
            decision = await run_in_threadpool(
                lambda: self.core.mfa.finish_with(raw, interaction.id, method, device=device)
            )
        except MfaExpired:
            return await self.mfa._expired(request, provider, interaction)
        codes = await run_in_threadpool(self.core.mfa.new_backup_codes, provider.tenant_id, pending.user_id)
        return await self._backup_codes(request, provider, interaction, decision, codes, device)

    async def _backup_codes(
        self, request: Request, provider: TenantProvider, interaction: Interaction, decision: MfaDecision,
        codes: tuple[str, ...], device: str,
    ) -> Response:  # fmt: skip
        """As after a TOTP enrollment (web/mfa.py): the backup codes, shown once, with the new session's cookies;
        the page's button goes on through /mfa/continue."""
        assert decision.session is not None
        response = await self.hosted.view.render(
            request, "hosted_mfa_backup_codes.html", provider.tenant_id, interaction_id=interaction.id, codes=codes
        )
        response.headers["Cache-Control"] = "no-store"  # the codes are shown once
        self.cookies.set_session(response, decision.session, provider.tenant_id)
        self.cookies.set_device(response, device)
        self.cookies.clear_mfa_pending(response, provider.tenant_id)
        return response
