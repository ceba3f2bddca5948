"""A tenant's hosted "Forgot password?" pages: ask for a code by email, then enter it with a new password.

They work inside a pending authorization request (the sign-in page links here with its interaction, and the user
returns to that sign-in page afterwards) and without one (the link in an email an administrator had sent). The
rules (who may, the limits, what a change ends) live in ``core.recovery``; this module renders and relays.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from idp_mcp.core.mail import OutgoingEmail
from idp_mcp.core.recovery import NOT_OFFERED
from idp_mcp.core.sign_in import InteractionPage
from idp_mcp.errors import CsrfFailed, IdpError, TenantNotFound
from idp_mcp.web.hosted import HostedPages
from idp_mcp.web.hosted_experience import NOT_FOUND
from idp_mcp.web.pages import MAX_FIELD, client_host

PASSWORD_CHANGED = "Your password was changed, and you were signed out everywhere. Sign in with your new password."
RESENT = "We sent a new code. Codes sent before it no longer work."


class RecoveryPages:
    def __init__(self, hosted: HostedPages) -> None:
        self.pages = hosted.pages
        self.core = hosted.core
        self.view = hosted.view

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/t/{tenant}/forgot-password", self.ask_page, methods=["GET"]),
            Route("/t/{tenant}/forgot-password", self.send_code, methods=["POST"]),
            Route("/t/{tenant}/forgot-password/reset", self.reset_page, methods=["GET"]),
            Route("/t/{tenant}/forgot-password/reset", self.reset_submit, methods=["POST"]),
            Route("/t/{tenant}/forgot-password/done", self.done_page, methods=["GET"]),
        ]

    # --- lookups and rendering ------------------------------------------------------------------------------

    async def _found(self, request: Request, interaction_id: str) -> InteractionPage | Response:
        """The tenant's page data and the interaction to carry (None when absent, expired or another tenant's), in
        one hop; or the error page when the tenant does not exist or does not offer resets."""
        tenant_id = request.path_params["tenant"]
        try:
            found = await run_in_threadpool(
                self.core.hosted_sign_in.interaction_page, tenant_id, interaction_id[:MAX_FIELD], None
            )
        except TenantNotFound:
            return self.view.error(request, None, "tenant.not_found", NOT_FOUND, 404)
        return self._not_offered(request, found) or found

    def _not_offered(self, request: Request, found: InteractionPage) -> Response | None:
        if self.core.password_recovery.offered(found.page.experience):
            return None
        return self.view.error(request, found.page, "password_reset.not_offered", NOT_OFFERED, 404)

    async def _render(
        self, request: Request, template: str, found: InteractionPage, *, status: int = 200, **context: Any
    ) -> Response:
        tenant_id = found.page.tenant.id
        interaction_id = found.interaction.id if found.interaction else ""
        return await self.view.render(
            request, template, tenant_id, status=status, page=found.page, interaction_id=interaction_id,
            sign_in_url=f"/t/{tenant_id}/interaction/{interaction_id}" if interaction_id else "", **context,
        )  # fmt: skip

    async def _form(self, request: Request) -> dict[str, Any] | Response:
        try:
            return await self.pages.read_form(request)
        except CsrfFailed as exc:
            return await self.pages.error_page(request, exc.code, exc.message, exc.status)

    def _interaction_page(self, request: Request, form: dict[str, Any]) -> InteractionPage:
        """In the caller's unit of work: the tenant's page data and the interaction the form carries."""
        interaction_id = (form.get("interaction") or "")[:MAX_FIELD]
        return self.core.hosted_sign_in.interaction_page(request.path_params["tenant"], interaction_id, None)

    # --- ask for a code ---------------------------------------------------------------------------------------

    async def ask_page(self, request: Request) -> Response:
        found = await self._found(request, request.query_params.get("interaction") or "")
        if isinstance(found, Response):
            return found
        email = (request.query_params.get("email") or "").strip()[:MAX_FIELD]
        return await self._render(request, "hosted_forgot_password.html", found, email=email)

    async def send_code(self, request: Request) -> Response:
        """Issue a code and show where to enter it: the same page whether or not the address has an account; the
        email (if any) goes out after the response, so the time taken does not tell either. One transaction: the
        page's data, the request's count and the code."""
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        email = (form.get("email") or "").strip()[:MAX_FIELD]
        resend = form.get("resend") == "1"

        def request_code() -> tuple[InteractionPage, OutgoingEmail | IdpError | None]:
            with self.core.db.unit_of_work(writes=True):
                found = self._interaction_page(request, form)
                if not self.core.password_recovery.offered(found.page.experience):
                    return found, None
                try:
                    return found, self.core.password_recovery.request(
                        found.page.tenant.id, email, client_address=client_host(request)
                    )
                except IdpError as exc:
                    return found, exc

        try:
            found, outcome = await run_in_threadpool(request_code)
        except TenantNotFound:
            return self.view.error(request, None, "tenant.not_found", NOT_FOUND, 404)
        refused = self._not_offered(request, found)
        if refused is not None:
            return refused
        if isinstance(outcome, IdpError):
            template = "hosted_reset_password.html" if resend else "hosted_forgot_password.html"
            return await self._render(
                request, template, found, status=outcome.status, email=email, error=outcome.message
            )
        response = await self._render(
            request, "hosted_reset_password.html", found, email=email.lower(), notice=RESENT if resend else None
        )
        return _deliver_later(response, self, outcome)

    # --- enter the code and a new password --------------------------------------------------------------------

    async def reset_page(self, request: Request) -> Response:
        """Where the link in a reset email lands: the code and new password form for the address in the link."""
        found = await self._found(request, request.query_params.get("interaction") or "")
        if isinstance(found, Response):
            return found
        email = (request.query_params.get("email") or "").strip()[:MAX_FIELD]
        if not email:
            return await self._render(request, "hosted_forgot_password.html", found, email="")
        return await self._render(request, "hosted_reset_password.html", found, email=email)

    async def reset_submit(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        email = (form.get("email") or "").strip()[:MAX_FIELD]
        password = (form.get("password") or "")[:MAX_FIELD]
        code = (form.get("code") or "")[:MAX_FIELD]
        mismatch = password != (form.get("password_confirm") or "")[:MAX_FIELD]
        recovery = self.core.password_recovery

        def reset() -> tuple[InteractionPage, IdpError | None]:
            # Two transactions (see TRANSACTION_BUDGETS): the page's data and the checks that need no account read;
            # the new password is hashed with Argon2id outside any transaction; then the code and the password.
            with self.core.db.unit_of_work(writes=False):
                found = self._interaction_page(request, form)
                if mismatch or not recovery.offered(found.page.experience):
                    return found, None
                try:
                    checked = recovery.check_reset(found.page.tenant.id, email, password)
                except IdpError as exc:
                    return found, exc
            try:
                recovery.apply_reset(checked, code, checked.hash_password())
            except IdpError as exc:
                return found, exc
            return found, None

        try:
            found, refused = await run_in_threadpool(reset)  # one hop
        except TenantNotFound:
            return self.view.error(request, None, "tenant.not_found", NOT_FOUND, 404)
        not_offered = self._not_offered(request, found)
        if not_offered is not None:
            return not_offered
        if mismatch:
            return await self._render(
                request, "hosted_reset_password.html", found, status=400, email=email,
                error="The two new passwords are not the same. Type the same password in both fields.",
            )  # fmt: skip
        if refused is not None:
            return await self._render(
                request, "hosted_reset_password.html", found, status=refused.status, email=email, error=refused.message
            )
        # POST-redirect-GET: reloading the next page must not send the (spent) code again.
        query = {"email": email, **({"interaction": found.interaction.id} if found.interaction else {})}
        return RedirectResponse(f"/t/{found.page.tenant.id}/forgot-password/done?{urlencode(query)}", status_code=303)

    async def done_page(self, request: Request) -> Response:
        """Back to the sign-in page of the pending request with a notice; nobody is signed in by a reset, so the
        next sign-in goes through every step the tenant asks for. Without a request: say to return to the app."""
        found = await self._found(request, request.query_params.get("interaction") or "")
        if isinstance(found, Response):
            return found
        if found.interaction is None:
            return await self._render(request, "hosted_password_changed.html", found, notice=PASSWORD_CHANGED)
        email = (request.query_params.get("email") or "").strip()[:MAX_FIELD]
        by_email = "email" in found.page.experience.password_identifiers
        return await self.view.sign_in(
            request, found.page.tenant.id, interaction_id=found.interaction.id, application=found.application,
            page=found.page, notice=PASSWORD_CHANGED, identifier=email if by_email else "",
        )  # fmt: skip


def _deliver_later(response: Response, pages: RecoveryPages, email: OutgoingEmail | None) -> Response:
    """Send after the response: the time a request takes must not depend on whether an email went out."""
    if email is not None:
        response.background = BackgroundTask(pages.core.mailer.send, email)
    return response
