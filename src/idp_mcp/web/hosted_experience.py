"""A tenant's hosted pages as its sign-in experience shapes them: the branded stylesheet, the sign-in page with the
methods the tenant offers, sign-in with a code sent by email, sign-up, and a preview without an authorization
request. The rules (who may sign in how, what a code proves, which fields sign-up keeps) live in ``core.sign_in``;
this module renders and relays. Everything works without JavaScript.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from idp_mcp.core.brand_colours import Palette
from idp_mcp.core.mail import Mailer, OutgoingEmail
from idp_mcp.core.mfa import AMR_EMAIL, AMR_PASSWORD
from idp_mcp.core.passkeys import passkey_first
from idp_mcp.core.sessions import Interaction
from idp_mcp.core.sign_in import HostedPage, InteractionPage, SignUpForm, SignUpStarted
from idp_mcp.core.sign_in_experience import Branding
from idp_mcp.core.verification_codes import Purpose
from idp_mcp.errors import IdpError, TenantNotFound
from idp_mcp.oauth.tenants import TenantProvider, TenantProviders
from idp_mcp.web.pages import EXPIRED, MAX_FIELD, Pages
from idp_mcp.web.security import framed_by_own_pages, run_passkey_script

if TYPE_CHECKING:  # the hosted pages build this module's view; only the type is needed here
    from idp_mcp.web.hosted import HostedPages, NextStep

NOT_FOUND = "This sign-in page does not exist."
PASSKEY_TEMPLATES = frozenset({"hosted_passkey.html", "hosted_passkey_mfa.html"})  # they load /static/passkeys.js
# After a sign-up with an unverified address: the same words whether the account is new or existed already.
SIGN_UP_DONE = "Thanks. Sign in with your email address to continue. If it already had an account, use that password."
_LABELS = {"email": "Email", "username": "Username"}
R = TypeVar("R")


# --- the branded stylesheet -----------------------------------------------------------------------------------


def branding_stylesheet(branding: Branding) -> str:
    """CSS custom properties for the tenant's colours (their accessible variants: see ``core.brand_colours``), then
    its (already validated) custom CSS."""
    colours = branding.colours()

    def variables(palette: Palette) -> str:
        return f"--primary: {palette.button}; --primary-ink: {palette.ink}; --primary-text: {palette.text};"

    light_vars, dark_vars = variables(colours.light), variables(colours.dark)
    css = (
        f":root {{ {light_vars} }}\n"
        f":root.dark {{ {dark_vars} }}\n"
        f"@media (prefers-color-scheme: dark) {{ :root:not(.light) {{ {dark_vars} }} }}\n"
    )
    if branding.custom_css:
        css += f"/* The tenant's custom CSS */\n{branding.custom_css}\n"
    return css


# --- rendering --------------------------------------------------------------------------------------------------


class ExperienceView:
    """Renders a tenant's hosted pages with its branding and the methods its experience offers."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.core = pages.core

    async def load(self, tenant_id: str) -> HostedPage:
        """The tenant's page data (tenant, experience, connector buttons): one hop, one read transaction."""
        return await run_in_threadpool(self.core.hosted_sign_in.page, tenant_id)

    async def render(
        self, request: Request, template: str, tenant_id: str, *, status: int = 200, page: HostedPage | None = None,
        **context: Any,
    ) -> Response:  # fmt: skip
        page = page or await self.load(tenant_id)
        experience = page.experience
        response = self.pages.render(
            request, template, status=status, tenant=page.tenant, experience=experience,
            branding=experience.branding, brand_name=page.brand_name, sign_up=experience.sign_up,
            **{"preview": False, **context},
        )  # fmt: skip
        if template in PASSKEY_TEMPLATES or (context.get("passkey_first") and not context.get("preview")):
            run_passkey_script(response)  # these pages load /static/passkeys.js; every other page runs no script
        return response

    def error(
        self, request: Request, page: HostedPage | None, error: str, description: str, status: int,
        **context: object,
    ) -> Response:  # fmt: skip
        """An error page in the tenant's branding, from page data read already (in the request's transaction);
        ``page`` None: there is no such tenant to brand it with, so the plain page."""
        if page is None:
            plain = "not_found.html" if error == "not_found" else "error.html"  # the administrators' 404 and way back
            return self.pages.render(request, plain, status=status, error=error, description=description)
        experience = page.experience
        return self.pages.render(
            request, "hosted_error.html", status=status, tenant=page.tenant, experience=experience,
            branding=experience.branding, brand_name=page.brand_name, preview=False, error=error,
            description=description, **context,
        )  # fmt: skip

    async def sign_in(
        self, request: Request, tenant_id: str, *, interaction_id: str | None, application: str | None,
        error: str | None = None, identifier: str = "", email: str = "", notice: str | None = None,
        status: int = 200, page: HostedPage | None = None,
    ) -> Response:  # fmt: skip
        """The sign-in page: a password form and an email-code form, in the order of the tenant's methods.
        ``page``: the tenant's page data when the caller has read it already (else one hop reads it)."""
        page = page or await self.load(tenant_id)
        experience = page.experience
        codes = page.email_codes
        sections: list[str] = []  # "password" and "code" forms, in the order of the first method using each
        for method in experience.sign_in_methods:
            for section, offered in (("password", method.password), ("code", method.verification_code and codes)):
                if offered and section not in sections:
                    sections.append(section)
        password_identifiers = list(experience.password_identifiers)
        label = " or ".join(_LABELS[i] for i in password_identifiers)
        preview = interaction_id is None
        sign_up_url = None
        if experience.sign_up.enabled:
            sign_up_url = (
                f"/t/{tenant_id}/preview?screen=sign-up"
                if preview
                else f"/t/{tenant_id}/interaction/{interaction_id}/sign-up"
            )
        forgot_url = None
        if self.core.password_recovery.offered(experience):
            forgot_url = f"/t/{tenant_id}/forgot-password" + ("" if preview else f"?interaction={interaction_id}")
        return await self.render(
            request, "hosted_sign_in.html", tenant_id, status=status, page=page, interaction_id=interaction_id or "",
            application=application, error=error, identifier=identifier, email=email, notice=notice,
            sections=sections, password_identifiers=password_identifiers, password_label=label.capitalize(),
            sign_up_url=sign_up_url, preview=preview, social=list(page.social), forgot_url=forgot_url,
            passkey_first=passkey_first(experience),
        )  # fmt: skip

    async def sign_up(
        self, request: Request, tenant_id: str, *, interaction_id: str | None, application: str | None,
        error: str | None = None, values: dict[str, str] | None = None, status: int = 200,
        page: HostedPage | None = None,
    ) -> Response:  # fmt: skip
        preview = interaction_id is None
        sign_in_url = f"/t/{tenant_id}/preview" if preview else f"/t/{tenant_id}/interaction/{interaction_id}"
        return await self.render(
            request, "hosted_sign_up.html", tenant_id, status=status, page=page, interaction_id=interaction_id or "",
            application=application, error=error, values={"email": "", "username": "", **(values or {})},
            sign_in_url=sign_in_url, preview=preview,
        )  # fmt: skip

    async def code(
        self, request: Request, tenant_id: str, *, interaction_id: str, purpose: str, email: str,
        error: str | None = None, notice: str | None = None, status: int = 200, page: HostedPage | None = None,
    ) -> Response:  # fmt: skip
        verify = "sign-in/code/verify" if purpose == "sign_in" else "sign-up/verify"
        back = f"/t/{tenant_id}/interaction/{interaction_id}" + ("" if purpose == "sign_in" else "/sign-up")
        return await self.render(
            request, "hosted_code.html", tenant_id, status=status, page=page, interaction_id=interaction_id,
            purpose=purpose,
            email=email, error=error, notice=notice, verify_url=f"/t/{tenant_id}/{verify}", back_url=back,
        )  # fmt: skip


def deliver_later(response: Response, mailer: Mailer, email: OutgoingEmail | None) -> Response:
    """Send after the response: the time a request takes must not depend on whether an email went out."""
    if email is not None:
        response.background = BackgroundTask(mailer.send, email)
    return response


@dataclass(frozen=True)
class Pending(Generic[R]):
    """A POST about a pending interaction, after its one transaction: the form, what the page shows, and what the
    use case returned (or its error)."""

    provider: TenantProvider
    form: dict[str, Any]
    interaction: Interaction
    page: HostedPage
    application: str | None
    outcome: R | IdpError


def _email(form: dict[str, Any]) -> str:
    return (form.get("email") or "")[:MAX_FIELD]


def _purpose(form: dict[str, Any]) -> Purpose:
    return "sign_up" if form.get("purpose") == "sign_up" else "sign_in"


# --- routes -------------------------------------------------------------------------------------------------------


class HostedExperiencePages:
    def __init__(self, hosted: HostedPages) -> None:
        self.hosted = hosted
        self.pages = hosted.pages
        self.core = hosted.pages.core
        self.providers: TenantProviders = hosted.providers
        self.view: ExperienceView = hosted.view

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/t/{tenant}/branding.css", self.stylesheet, methods=["GET"]),
            Route("/t/{tenant}/preview", self.preview, methods=["GET"]),
            Route("/t/{tenant}/sign-in/code", self.send_sign_in_code, methods=["POST"]),
            Route("/t/{tenant}/sign-in/code/verify", self.verify_sign_in_code, methods=["POST"]),
            Route("/t/{tenant}/code/resend", self.resend_code, methods=["POST"]),
            Route("/t/{tenant}/interaction/{id}/sign-up", self.sign_up_page, methods=["GET"]),
            Route("/t/{tenant}/sign-up", self.sign_up_submit, methods=["POST"]),
            Route("/t/{tenant}/sign-up/verify", self.verify_sign_up, methods=["POST"]),
        ]

    # --- one transaction per POST ------------------------------------------------------------------------------

    async def _pending(
        self, request: Request, work: Callable[[TenantProvider, Interaction, dict[str, Any]], R]
    ) -> Pending[R] | Response:
        """For a POST about a pending interaction: in one hop and one transaction, the page's data (tenant,
        experience, interaction, application) and ``work(provider, interaction, form)``, the use case; an error of
        ``work`` is returned, after what it wrote committed (a refused code stays counted). Or the page to show
        instead (unknown tenant, bad CSRF token, expired interaction)."""
        posted = await self.hosted.posted(request)
        if isinstance(posted, Response):
            return posted
        provider, form = posted

        def run() -> tuple[InteractionPage, tuple[R | IdpError] | None]:
            with self.core.db.unit_of_work(writes=True):
                found = self.core.hosted_sign_in.interaction_page(
                    provider.tenant_id, (form.get("interaction") or "")[:MAX_FIELD], None
                )
                if found.interaction is None:
                    return found, None
                try:
                    return found, (work(provider, found.interaction, form),)
                except IdpError as exc:
                    return found, (exc,)

        found, outcome = await run_in_threadpool(run)
        if found.interaction is None or outcome is None:
            return self.view.error(request, found.page, "interaction.expired", EXPIRED, 410)
        return Pending(provider, form, found.interaction, found.page, found.application, outcome[0])

    # --- stylesheet and preview ---------------------------------------------------------------------------------

    async def stylesheet(self, request: Request) -> Response:
        try:  # one hop, one read transaction (the experience comes from its versioned cache when unchanged)
            page = await self.view.load(request.path_params["tenant"])
        except TenantNotFound:
            return Response("/* no such tenant */\n", status_code=404, media_type="text/css")
        return Response(
            branding_stylesheet(page.experience.branding),
            media_type="text/css",
            # Pages link it with ?v=<version>, so a change shows at once; the short max-age bounds a stale copy.
            headers={"Cache-Control": "public, max-age=60"},
        )

    async def preview(self, request: Request) -> Response:
        """The hosted page as users will see it with the current experience; its forms are inactive."""
        tenant_id = request.path_params["tenant"]
        try:
            page = await self.view.load(tenant_id)
        except TenantNotFound:
            return self.view.error(request, None, "tenant.not_found", NOT_FOUND, 404)
        if request.query_params.get("screen") == "sign-up":
            response = await self.view.sign_up(request, tenant_id, interaction_id=None, application=None, page=page)
        else:
            response = await self.view.sign_in(request, tenant_id, interaction_id=None, application=None, page=page)
        return framed_by_own_pages(response)  # the console's sign-in experience page shows it in a frame

    # --- sign-in with an email code -----------------------------------------------------------------------------

    async def send_sign_in_code(self, request: Request) -> Response:
        """One transaction stores the code; the email goes out after the response, outside it (see
        :func:`deliver_later`)."""
        found = await self._pending(
            request, lambda provider, _, form: self.core.hosted_sign_in.request_sign_in_code(
                provider.tenant_id, _email(form).strip()
            ),
        )  # fmt: skip
        if isinstance(found, Response):
            return found
        email, tenant_id = _email(found.form).strip(), found.provider.tenant_id
        if isinstance(found.outcome, IdpError):
            return await self.view.sign_in(
                request, tenant_id, interaction_id=found.interaction.id, application=found.application,
                error=found.outcome.message, email=email, status=found.outcome.status, page=found.page,
            )  # fmt: skip
        response = await self.view.code(
            request, tenant_id, interaction_id=found.interaction.id, purpose="sign_in", email=email.lower(),
            page=found.page,
        )  # fmt: skip
        return deliver_later(response, self.core.mailer, found.outcome)

    async def verify_sign_in_code(self, request: Request) -> Response:
        return await self._verify_code(request, "sign_in")

    async def resend_code(self, request: Request) -> Response:
        """Like :meth:`send_sign_in_code`: the code in one transaction, the email after the response."""
        found = await self._pending(
            request, lambda provider, _, form: self.core.hosted_sign_in.resend_code(
                provider.tenant_id, _purpose(form), _email(form)
            ),
        )  # fmt: skip
        if isinstance(found, Response):
            return found
        email, purpose, tenant_id = _email(found.form), _purpose(found.form), found.provider.tenant_id
        if isinstance(found.outcome, IdpError):
            return await self.view.code(
                request, tenant_id, interaction_id=found.interaction.id, purpose=purpose, email=email,
                error=found.outcome.message, status=found.outcome.status, page=found.page,
            )  # fmt: skip
        response = await self.view.code(
            request, tenant_id, interaction_id=found.interaction.id, purpose=purpose, email=email,
            notice="We sent a new code. Codes sent before it no longer work.", page=found.page,
        )  # fmt: skip
        return deliver_later(response, self.core.mailer, found.outcome)

    # --- sign-up ------------------------------------------------------------------------------------------------

    async def sign_up_page(self, request: Request) -> Response:
        tenant_id = request.path_params["tenant"]
        try:  # one hop, one read transaction for everything the page shows
            found = await run_in_threadpool(
                self.core.hosted_sign_in.interaction_page, tenant_id, request.path_params["id"], None
            )
        except TenantNotFound:
            return self.view.error(request, None, "tenant.not_found", NOT_FOUND, 404)
        if found.interaction is None:
            return self.view.error(request, found.page, "interaction.expired", EXPIRED, 410)
        if not found.page.experience.sign_up.enabled:
            return self.view.error(
                request, found.page, "sign_up.disabled",
                "Creating an account is not available here. Go back and sign in.", 403,
            )  # fmt: skip
        return await self.view.sign_up(
            request, tenant_id, interaction_id=found.interaction.id, application=found.application, page=found.page
        )

    async def sign_up_submit(self, request: Request) -> Response:
        posted = await self.hosted.posted(request)
        if isinstance(posted, Response):
            return posted
        provider, form = posted
        tenant_id = provider.tenant_id
        values = {key: (form.get(key) or "").strip()[:MAX_FIELD] for key in ("email", "username")}
        sign_up_form = SignUpForm(
            email=values["email"] or None, username=values["username"] or None,
            password=(form.get("password") or "")[:MAX_FIELD] or None,
        )  # fmt: skip
        device = self.hosted.cookies.device_for_sign_in(request)
        previous = self.hosted.cookies.mfa_pending(request, tenant_id)
        sign_in = self.core.hosted_sign_in

        def start() -> tuple[InteractionPage, SignUpStarted | IdpError | None, NextStep | None]:
            # Two transactions (see TRANSACTION_BUDGETS): the page and the form's checks read; the password's
            # Argon2id hash is made outside any transaction; then the account (or the code) and, for an account
            # that may sign in at once, the session and the code for the application.
            with self.core.db.unit_of_work(writes=False):
                found = sign_in.interaction_page(tenant_id, (form.get("interaction") or "")[:MAX_FIELD], None)
                if found.interaction is None:
                    return found, None, None
                try:
                    checked = sign_in.check_sign_up(tenant_id, sign_up_form)
                except IdpError as exc:
                    return found, exc, None
            password_hash = checked.hash_password()
            with self.core.db.unit_of_work(writes=True):
                try:
                    started = sign_in.create_sign_up(checked, password_hash)
                except IdpError as exc:
                    return found, exc, None
                if started.user is None:
                    return found, started, None
                # A sign-up with a password (or a username only): the password is the proof.
                return found, started, self.hosted.first_factor_done_sync(
                    provider, found.interaction, started.user.id, (AMR_PASSWORD,), device=device,
                    previous_pending=previous,
                )  # fmt: skip

        found, started, step = await run_in_threadpool(start)
        interaction = found.interaction
        if interaction is None or started is None:
            return self.view.error(request, found.page, "interaction.expired", EXPIRED, 410)
        if isinstance(started, IdpError):
            return await self.view.sign_up(
                request, tenant_id, interaction_id=interaction.id, application=found.application,
                error=started.message, values=values, status=started.status, page=found.page,
            )  # fmt: skip
        if step is not None:
            return await self.hosted.respond(request, provider, interaction, step, device)
        if started.sign_in_email is not None:
            # The same page whether the account was just created or existed already (see SignUpStarted).
            response = await self.view.sign_in(
                request, tenant_id, interaction_id=interaction.id, application=found.application,
                identifier=started.sign_in_email, email=started.sign_in_email, notice=SIGN_UP_DONE, page=found.page,
            )  # fmt: skip
            return deliver_later(response, self.core.mailer, started.email)
        assert started.pending_email is not None
        response = await self.view.code(
            request, tenant_id, interaction_id=interaction.id, purpose="sign_up", email=started.pending_email,
            page=found.page,
        )  # fmt: skip
        return deliver_later(response, self.core.mailer, started.email)

    async def verify_sign_up(self, request: Request) -> Response:
        return await self._verify_code(request, "sign_up")

    async def _verify_code(self, request: Request, purpose: Literal["sign_in", "sign_up"]) -> Response:
        """Check an emailed code, then sign the user in (or finish their sign-up): one transaction, which keeps a
        wrong attempt counted; a bad code re-renders."""
        device = self.hosted.cookies.device_for_sign_in(request)
        finish = (
            self.core.hosted_sign_in.with_email_code
            if purpose == "sign_in"
            else self.core.hosted_sign_in.finish_sign_up
        )

        def verify(provider: TenantProvider, interaction: Interaction, form: dict[str, Any]) -> NextStep:
            user = finish(provider.tenant_id, _email(form), (form.get("code") or "")[:MAX_FIELD])
            # The code came back from the inbox: that is the first factor, whether signing in or finishing a sign-up.
            return self.hosted.first_factor_done_sync(
                provider, interaction, user.id, (AMR_EMAIL,), device=device,
                previous_pending=self.hosted.cookies.mfa_pending(request, provider.tenant_id),
            )  # fmt: skip

        found = await self._pending(request, verify)
        if isinstance(found, Response):
            return found
        if isinstance(found.outcome, IdpError):
            return await self.view.code(
                request, found.provider.tenant_id, interaction_id=found.interaction.id, purpose=purpose,
                email=_email(found.form), error=found.outcome.message, status=found.outcome.status, page=found.page,
            )  # fmt: skip
        return await self.hosted.respond(request, found.provider, found.interaction, found.outcome, device)
