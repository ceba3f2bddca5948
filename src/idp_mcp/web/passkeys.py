"""Passkeys on a tenant's hosted pages: passwordless sign-in (when the tenant's ``mfa.passkeyFirst`` is on), adding a
passkey after signing in, and a passkey as the second factor (the challenge page) or as the factor a user sets up
when the MFA policy asks (the enrollment page; the partial sign-in is core.mfa's). The ceremonies and their rules
are in ``core.passkeys``; this module relays.

The browser side is /static/passkeys.js (the CSP allows scripts from this origin only): it fetches the WebAuthn
options from a JSON endpoint (a CSRF-checked POST bound to the pending interaction), lets the authenticator answer,
and posts the answer (base64url JSON) with the page's form, so the result is an ordinary page or redirect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from idp_mcp.core.mfa import MfaDecision, MfaExpired, PendingMfa
from idp_mcp.core.passkeys import MAX_RESPONSE
from idp_mcp.core.sessions import BrowserSession, Interaction
from idp_mcp.core.sign_in import HostedPage, InteractionPage
from idp_mcp.errors import CsrfFailed, IdpError
from idp_mcp.oauth.tenants import TenantProvider
from idp_mcp.web.hosted import HostedPages
from idp_mcp.web.hosted_experience import NOT_FOUND
from idp_mcp.web.mfa import MfaPages
from idp_mcp.web.pages import EXPIRED, MAX_FIELD

NO_PENDING = "This sign-in expired. Sign in again."
SIGN_IN_FIRST = "Sign in first, then add a passkey."
_NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class _Refusal:
    """Why a passkey request is answered with an error (the JSON endpoints and the pages show it differently)."""

    code: str
    message: str
    status: int


@dataclass(frozen=True)
class _Found:
    """A request about a pending interaction, with what its transaction read first (``found``: the tenant's page
    data, the interaction, its application's name and the browser's tenant session)."""

    provider: TenantProvider
    interaction: Interaction
    form: dict[str, Any]
    found: InteractionPage

    @property
    def page(self) -> HostedPage:
        return self.found.page

    @property
    def session(self) -> BrowserSession | None:
        return self.found.session

    def credential(self) -> str:
        return (self.form.get("credential") or "")[: MAX_RESPONSE + 1]


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

    # --- one hop, one transaction per request -------------------------------------------------------------------

    async def _in_one_transaction(
        self, request: Request, work: Callable[[_Found], Awaitable[Response]], *, json: bool
    ) -> Response:
        """For a POST about a pending interaction: the tenant and the CSRF-checked form, then in one hop and one
        transaction the page's data, the interaction and the session (read first) and ``work``, the use case (a
        WebAuthn verification is CPU only: it stays inside). ``work`` returns the rendering to await after the hop,
        so no transaction stays open while it renders. ``json``: refusals as the JSON endpoints answer them."""
        provider = await self.hosted.provider(request)
        if provider is None:
            return await self._refuse(request, _Refusal("tenant.not_found", NOT_FOUND, 404), json=json)
        try:
            form = await self.pages.read_form(request)
        except CsrfFailed as exc:
            return await self._refuse(request, _Refusal(exc.code, exc.message, exc.status), json=json)
        session_id = self.cookies.session_id(request, provider.tenant_id)

        def run() -> Awaitable[Response]:
            with self.core.db.unit_of_work(writes=True):
                found = self.core.hosted_sign_in.interaction_page(
                    provider.tenant_id, (form.get("interaction") or "")[:MAX_FIELD], session_id
                )
                if found.interaction is None:
                    expired = _Refusal("interaction.expired", EXPIRED, 410)
                    return _done(self._json(expired) if json else self._error(request, found.page, expired))
                return work(_Found(provider, found.interaction, form, found))

        return await (await run_in_threadpool(run))

    async def _refuse(self, request: Request, refusal: _Refusal, *, json: bool) -> Response:
        """A refusal before any page data was read (no such tenant, a bad CSRF token)."""
        if json:
            return self._json(refusal)
        return await self.pages.error_page(request, refusal.code, refusal.message, refusal.status)

    @staticmethod
    def _json(refusal: _Refusal) -> JSONResponse:
        return JSONResponse({"error": refusal.code, "message": refusal.message}, status_code=refusal.status)

    def _error(self, request: Request, page: HostedPage, refusal: _Refusal) -> Response:
        return self.hosted.view.error(request, page, refusal.code, refusal.message, refusal.status)

    @staticmethod
    def _options(options: str) -> Awaitable[Response]:
        return _done(Response(options, media_type="application/json", headers=_NO_STORE))

    def _sign_in_page(self, request: Request, found: _Found, error: str, status: int = 200) -> Awaitable[Response]:
        """The sign-in page again, from the page data read in the request's transaction."""
        return self.hosted.view.sign_in(
            request, found.provider.tenant_id, interaction_id=found.interaction.id, application=found.found.application,
            error=error, status=status, page=found.page,
        )  # fmt: skip

    # --- passwordless sign-in ---------------------------------------------------------------------------------

    async def sign_in_options(self, request: Request) -> Response:
        """JSON options for ``navigator.credentials.get()``: any of this tenant's discoverable passkeys."""

        def work(found: _Found) -> Awaitable[Response]:
            try:  # the core refuses while the tenant does not let a passkey be the first factor
                options = self.core.passkeys.authentication_options(found.provider.tenant_id, found.interaction.id)
            except IdpError as exc:
                return _done(self._json(_Refusal(exc.code, exc.message, exc.status)))
            return self._options(options)

        return await self._in_one_transaction(request, work, json=True)

    async def sign_in(self, request: Request) -> Response:
        """The authenticator's answer: sign the user in (the challenge, the verification, the session and the code
        in one transaction), or show the sign-in page with what went wrong (the challenge stays used up)."""
        device = self.cookies.device_for_sign_in(request)

        def work(found: _Found) -> Awaitable[Response]:
            provider, interaction = found.provider, found.interaction
            try:
                signed_in = self.core.passkeys.authenticate(provider.tenant_id, interaction.id, found.credential())
            except IdpError as exc:
                return self._sign_in_page(request, found, exc.message, exc.status)
            step = self.hosted.first_factor_done_sync(
                provider, interaction, signed_in.user.id, signed_in.amr, device=device,
                previous_pending=self.cookies.mfa_pending(request, provider.tenant_id),
            )  # fmt: skip
            return self.hosted.respond(request, provider, interaction, step, device)

        return await self._in_one_transaction(request, work, json=False)

    # --- adding a passkey after signing in --------------------------------------------------------------------

    def offer_after_sign_in(self, tenant_id: str, interaction_id: str, user_id: str) -> str | None:
        """Where passkeys may be the first factor, a user who has none is offered to add one (skippable): the offer
        page's location, else None. Called in the sign-in's worker thread and transaction (web/hosted.py)."""
        if not self.core.passkeys.offer_after_sign_in(tenant_id, user_id):
            return None
        return f"/t/{tenant_id}/interaction/{interaction_id}/passkey"

    async def offer_page(self, request: Request) -> Response:
        """The offer to add a passkey, for a signed-in browser: the page's data, the interaction and the session in
        one read."""
        provider = await self.hosted.provider(request)
        if provider is None:
            return await self.pages.error_page(request, "tenant.not_found", NOT_FOUND, 404)
        tenant_id = provider.tenant_id
        found = await run_in_threadpool(
            self.core.hosted_sign_in.interaction_page, tenant_id, request.path_params["id"][:MAX_FIELD],
            self.cookies.session_id(request, tenant_id),
        )  # fmt: skip
        interaction = found.interaction
        if interaction is None:
            return self._error(request, found.page, _Refusal("interaction.expired", EXPIRED, 410))
        here = _Found(provider, interaction, {}, found)
        if found.session is None:
            return await self._sign_in_page(request, here, SIGN_IN_FIRST)
        return await self._render_offer(request, here)

    def _render_offer(
        self, request: Request, found: _Found, *, error: str | None = None, status: int = 200
    ) -> Awaitable[Response]:
        return self.hosted.view.render(
            request, "hosted_passkey.html", found.provider.tenant_id, status=status, page=found.page,
            interaction_id=found.interaction.id, error=error,
        )  # fmt: skip

    async def register_options(self, request: Request) -> Response:
        """JSON options for ``navigator.credentials.create()`` for the signed-in user."""

        def work(found: _Found) -> Awaitable[Response]:
            if found.session is None:
                return _done(self._json(_Refusal("session.required", SIGN_IN_FIRST, 401)))
            try:
                options = self.core.passkeys.registration_options(
                    found.provider.tenant_id, found.session.user_id, found.interaction.id
                )
            except IdpError as exc:
                return _done(self._json(_Refusal(exc.code, exc.message, exc.status)))
            return self._options(options)

        return await self._in_one_transaction(request, work, json=True)

    async def register(self, request: Request) -> Response:
        """The authenticator's answer: store the passkey and carry on to the application, or say what went wrong."""

        def work(found: _Found) -> Awaitable[Response]:
            session = found.session
            if session is None:
                return self._sign_in_page(request, found, SIGN_IN_FIRST)
            try:
                self.core.passkeys.register(
                    found.provider.tenant_id, session.user_id, found.interaction.id, found.credential(),
                    (found.form.get("name") or "")[:MAX_FIELD],
                )  # fmt: skip
            except IdpError as exc:  # the challenge stays used up
                return self._render_offer(request, found, error=exc.message, status=exc.status)
            return self._go_on(request, found, session)

        return await self._in_one_transaction(request, work, json=False)

    async def skip(self, request: Request) -> Response:
        """Not now: carry on to the application without a passkey."""

        def work(found: _Found) -> Awaitable[Response]:
            if found.session is None:
                location = f"/t/{found.provider.tenant_id}/interaction/{found.interaction.id}"
                return _done(RedirectResponse(location, status_code=303))
            return self._go_on(request, found, found.session)

        return await self._in_one_transaction(request, work, json=False)

    def _go_on(self, request: Request, found: _Found, session: BrowserSession) -> Awaitable[Response]:
        """On to the application with the existing session, in the request's transaction; with_session_sync asks
        core.mfa first whether the session is enough (a step-up with acr_values, a policy made stricter since)."""
        step = self.hosted.with_session_sync(found.provider, found.interaction, session)
        return self.hosted.respond(request, found.provider, found.interaction, step)

    # --- a passkey as second factor, and its enrollment when the policy asks for one --------------------------

    def mfa_step(
        self, request: Request, provider: TenantProvider, interaction: Interaction, pending: PendingMfa,
        enroll: bool, page: HostedPage, *, error: str | None = None, status: int = 200,
    ) -> Awaitable[Response]:  # fmt: skip
        """The passkey step of a partial sign-in (web/mfa.py calls it with the page data its transaction read): add a
        passkey (``enroll``) or use one, with links to the other factors the user may use instead."""
        if enroll:
            others = ["totp"] if "totp" in pending.enrollable else []
        else:
            others = [f for f in ("totp", "email", "backup_code") if f in pending.offered]
        return self.hosted.view.render(
            request, "hosted_passkey_mfa.html", provider.tenant_id, status=status, page=page,
            interaction_id=interaction.id, enroll=enroll, others=others,
            skippable=enroll and pending.outcome == "offer", error=error,
        )  # fmt: skip

    def _pending(self, request: Request, found: _Found, need: str) -> PendingMfa | _Refusal:
        """The browser's partial sign-in for this request, where a passkey may be ``need``ed ("offered" to prove
        it, "enrollable" to add one); read in the request's transaction."""
        raw = self.cookies.mfa_pending(request, found.provider.tenant_id)
        pending = self.core.mfa.pending(raw, found.interaction.id)
        if pending is None or pending.tenant_id != found.provider.tenant_id:
            return _Refusal("mfa.expired", NO_PENDING, 400)
        if "passkey" not in (pending.offered if need == "offered" else pending.enrollable):
            return _Refusal("mfa.unavailable", "A passkey cannot be used for this sign-in. Choose another way.", 403)
        return pending

    def _expired(self, request: Request, found: _Found) -> Awaitable[Response]:
        """Back to the sign-in page: the partial sign-in is gone (see web/mfa.py)."""
        return self.mfa._expired_page(request, found.provider, found.interaction, found.found)

    async def second_factor_options(self, request: Request) -> Response:
        """JSON options for ``navigator.credentials.get()`` limited to the partially signed-in user's passkeys."""

        def work(found: _Found) -> Awaitable[Response]:
            pending = self._pending(request, found, "offered")
            if isinstance(pending, _Refusal):
                return _done(self._json(pending))
            return self._options(
                self.core.passkeys.authentication_options(
                    found.provider.tenant_id, found.interaction.id, pending.user_id
                )
            )

        return await self._in_one_transaction(request, work, json=True)

    async def second_factor(self, request: Request) -> Response:
        """The authenticator's answer on the second-factor page: the challenge, the verification, the session and
        the code for the application in one transaction; or the page says why not (the challenge stays used up)."""
        device = self.cookies.device_for_sign_in(request)

        def work(found: _Found) -> Awaitable[Response]:
            provider, interaction = found.provider, found.interaction
            pending = self._pending(request, found, "offered")
            if isinstance(pending, _Refusal):
                return self._expired(request, found)
            raw = self.cookies.mfa_pending(request, provider.tenant_id)
            try:
                # The challenge names the partially signed-in user: only their passkeys answer it.
                proven = self.core.passkeys.authenticate(
                    provider.tenant_id, interaction.id, found.credential(), pending.user_id
                )
                decision = self.core.mfa.finish_with(raw, interaction.id, proven.amr[0], device=device)
            except MfaExpired:
                return self._expired(request, found)
            except IdpError as exc:
                return self.mfa_step(
                    request, provider, interaction, pending, False, found.page, error=exc.message, status=exc.status
                )
            assert decision.session is not None
            step = self.hosted.started_sync(provider, interaction, decision.session)
            return self.hosted.respond(request, provider, interaction, step, device)

        return await self._in_one_transaction(request, work, json=False)

    async def enroll_options(self, request: Request) -> Response:
        """JSON options for ``navigator.credentials.create()`` for a user who must set up a second factor."""

        def work(found: _Found) -> Awaitable[Response]:
            pending = self._pending(request, found, "enrollable")
            if isinstance(pending, _Refusal):
                return _done(self._json(pending))
            return self._options(
                self.core.passkeys.registration_options(found.provider.tenant_id, pending.user_id, found.interaction.id)
            )

        return await self._in_one_transaction(request, work, json=True)

    async def enroll(self, request: Request) -> Response:
        """The new passkey as the user's second factor: stored, the session started and the backup codes made (shown
        once), in one transaction."""
        device = self.cookies.device_for_sign_in(request)

        def work(found: _Found) -> Awaitable[Response]:
            provider, interaction = found.provider, found.interaction
            pending = self._pending(request, found, "enrollable")
            if isinstance(pending, _Refusal):
                return self._expired(request, found)
            raw = self.cookies.mfa_pending(request, provider.tenant_id)
            try:
                passkey = self.core.passkeys.register(
                    provider.tenant_id, pending.user_id, interaction.id, found.credential(),
                    (found.form.get("name") or "")[:MAX_FIELD],
                )  # fmt: skip
            except IdpError as exc:  # the challenge stays used up
                return self.mfa_step(
                    request, provider, interaction, pending, True, found.page, error=exc.message, status=exc.status
                )
            method = "swk" if passkey.backed_up else "hwk"
            try:
                decision = self.core.mfa.finish_with(raw, interaction.id, method, device=device)
            except MfaExpired:
                return self._expired(request, found)
            codes = self.core.mfa.new_backup_codes(provider.tenant_id, pending.user_id)
            return self._backup_codes(request, found, decision, codes, device)

        return await self._in_one_transaction(request, work, json=False)

    async def _backup_codes(
        self, request: Request, found: _Found, decision: MfaDecision, codes: tuple[str, ...], device: str
    ) -> Response:
        """As after a TOTP enrollment (web/mfa.py): the backup codes, shown once, with the new session's cookies;
        the page's button goes on through /mfa/continue."""
        assert decision.session is not None
        tenant_id = found.provider.tenant_id
        response = await self.hosted.view.render(
            request, "hosted_mfa_backup_codes.html", tenant_id, page=found.page, interaction_id=found.interaction.id,
            codes=codes,
        )  # fmt: skip
        response.headers["Cache-Control"] = "no-store"  # the codes are shown once
        self.cookies.set_session(response, decision.session, tenant_id)
        self.cookies.set_device(response, device)
        self.cookies.clear_mfa_pending(response, tenant_id)
        return response


async def _done(response: Response) -> Response:
    """A response made already, as the rendering a use case hands back to await after its hop."""
    return response
