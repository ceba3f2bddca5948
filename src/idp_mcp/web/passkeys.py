"""Passkeys on a tenant's hosted pages: passwordless sign-in (when the tenant's ``mfa.passkeyFirst`` is on) and adding
a passkey after signing in. The ceremonies are in ``core.passkeys``; this module relays.

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

from idp_mcp.core.passkeys import MAX_RESPONSE, passkey_first
from idp_mcp.core.sessions import BrowserSession, Interaction
from idp_mcp.domain import User
from idp_mcp.errors import CsrfFailed, IdpError, TenantNotFound
from idp_mcp.oauth.tenants import TenantProvider, TenantProviders
from idp_mcp.web.hosted import HostedPages
from idp_mcp.web.pages import EXPIRED, MAX_FIELD

NOT_OFFERED = "Signing in with a passkey is not offered here. Use another way to sign in."
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
    def __init__(self, hosted: HostedPages) -> None:
        self.hosted = hosted
        self.pages = hosted.pages
        self.core = hosted.core
        self.cookies = hosted.cookies
        self.providers: TenantProviders = hosted.providers
        hosted.offer_passkey = self.offer_after_sign_in

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/t/{tenant}/passkeys/sign-in/options", self.sign_in_options, methods=["POST"]),
            Route("/t/{tenant}/passkeys/sign-in", self.sign_in, methods=["POST"]),
            Route("/t/{tenant}/interaction/{id}/passkey", self.offer_page, methods=["GET"]),
            Route("/t/{tenant}/passkeys/register/options", self.register_options, methods=["POST"]),
            Route("/t/{tenant}/passkeys/register", self.register, methods=["POST"]),
            Route("/t/{tenant}/passkeys/skip", self.skip, methods=["POST"]),
        ]

    # --- lookups ----------------------------------------------------------------------------------------------

    async def _request(self, request: Request) -> _Found | _Refusal:
        """The tenant, its pending interaction and the CSRF-checked form; or why not."""
        try:
            provider = await run_in_threadpool(self.providers.get, request.path_params["tenant"])
        except TenantNotFound:
            return _Refusal("tenant.not_found", "This sign-in page does not exist.", 404)
        try:
            form = await self.pages.read_form(request)
        except CsrfFailed as exc:
            return _Refusal(exc.code, exc.message, exc.status)
        interaction_id = (form.get("interaction") or "")[:MAX_FIELD]
        interaction = await run_in_threadpool(self.core.sessions.get_interaction, interaction_id)
        if interaction is None or interaction.tenant_id != provider.tenant_id:
            return _Refusal("interaction.expired", EXPIRED, 410)
        return _Found(provider, interaction, form)

    async def _session(self, request: Request, tenant_id: str) -> BrowserSession | None:
        session = await run_in_threadpool(self.core.sessions.get, self.cookies.session_id(request, tenant_id))
        return session if session and session.tenant_id == tenant_id else None

    async def _passkey_first(self, tenant_id: str) -> bool:
        page = await self.hosted.view.load(tenant_id)
        return passkey_first(page.experience)

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
        if not await self._passkey_first(provider.tenant_id):
            return self._json_error(_Refusal("sign_in.method_not_offered", NOT_OFFERED, 403))
        options = await run_in_threadpool(self.core.passkeys.authentication_options, provider.tenant_id, interaction.id)
        return Response(options, media_type="application/json", headers={"Cache-Control": "no-store"})

    async def sign_in(self, request: Request) -> Response:
        """The authenticator's answer: sign the user in, or show the sign-in page with what went wrong."""
        found = await self._request(request)
        if isinstance(found, _Refusal):
            return await self._error_page(request, found)
        provider, interaction, form = found.provider, found.interaction, found.form
        if not await self._passkey_first(provider.tenant_id):
            return await self.hosted._render_sign_in(request, provider, interaction, error=NOT_OFFERED, status=403)
        try:
            signed_in = await run_in_threadpool(
                self.core.passkeys.authenticate, provider.tenant_id, interaction.id,
                (form.get("credential") or "")[:MAX_RESPONSE + 1],
            )  # fmt: skip
        except IdpError as exc:
            return await self.hosted._render_sign_in(
                request, provider, interaction, error=exc.message, status=exc.status
            )
        return await self.hosted.sign_user_in(request, provider, interaction, signed_in.user)

    # --- adding a passkey after signing in --------------------------------------------------------------------

    async def offer_after_sign_in(
        self, provider: TenantProvider, interaction: Interaction, user: User
    ) -> Response | None:
        """Where passkeys may be the first factor, a user who has none is offered to add one (skippable)."""
        tenant_id = provider.tenant_id
        if not await run_in_threadpool(self.core.passkeys.offer_after_sign_in, tenant_id, user.id):
            return None
        return RedirectResponse(f"/t/{tenant_id}/interaction/{interaction.id}/passkey", status_code=303)

    async def offer_page(self, request: Request) -> Response:
        tenant_id = request.path_params["tenant"]
        try:
            provider = await run_in_threadpool(self.providers.get, tenant_id)
        except TenantNotFound:
            return await self.pages.error_page(request, "tenant.not_found", "This sign-in page does not exist.", 404)
        interaction = await self.hosted._interaction(provider, request.path_params["id"][:MAX_FIELD])
        if interaction is None:
            return await self.pages.error_page(request, "interaction.expired", EXPIRED, 410)
        if await self._session(request, tenant_id) is None:
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
        session = await self._session(request, provider.tenant_id)
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
        session = await self._session(request, provider.tenant_id)
        if session is None:
            return await self.hosted._render_sign_in(request, provider, interaction, error=SIGN_IN_FIRST)
        try:
            await run_in_threadpool(
                self.core.passkeys.register, provider.tenant_id, session.user_id, interaction.id,
                (form.get("credential") or "")[:MAX_RESPONSE + 1], (form.get("name") or "")[:MAX_FIELD],
            )  # fmt: skip
        except IdpError as exc:
            return await self._render_offer(request, provider, interaction, error=exc.message, status=exc.status)
        return await self.hosted._complete(request, provider, interaction, session)

    async def skip(self, request: Request) -> Response:
        """Not now: carry on to the application without a passkey."""
        found = await self._request(request)
        if isinstance(found, _Refusal):
            return await self._error_page(request, found)
        provider, interaction = found.provider, found.interaction
        session = await self._session(request, provider.tenant_id)
        if session is None:
            return RedirectResponse(f"/t/{provider.tenant_id}/interaction/{interaction.id}", status_code=303)
        return await self.hosted._complete(request, provider, interaction, session)
