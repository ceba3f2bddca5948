"""Error pages on a tenant's issuer (every page under /t/<tenant>/): shown in the tenant's branding (its stylesheet,
name, logo and legal links) rather than the administrators' look, since the people who see them are the tenant's
users. The redirect URI error also shows the URI that was refused and exactly how to register it: the tool call,
and the application's page in the console. That URI is whatever the link said, so it is only ever shown as escaped
text, never made a link or a place to go.
"""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from idp_mcp.core.sign_in import HostedPage
from idp_mcp.errors import TenantNotFound
from idp_mcp.store.transaction_tally import apart
from idp_mcp.web.console import application_url
from idp_mcp.web.hosted_experience import ExperienceView
from idp_mcp.web.pages import Pages

MAX_SHOWN_URI = 2048  # longer ones are cut, with a note: the page stays readable
# The request's use case failed (or never began): the look to show that in is no part of it.
_APART = "the tenant's branding for an error page, read after the use case failed"


class TenantErrorPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.core = pages.core
        self.view = ExperienceView(pages)

    async def error_page(self, request: Request, tenant_id: str, error: str, description: str, status: int) -> Response:
        """The error in the tenant's branding; the plain page when there is no such tenant to brand it with."""
        try:
            with apart(_APART):
                page: HostedPage | None = await run_in_threadpool(self.core.hosted_sign_in.page, tenant_id)
        except TenantNotFound:
            page = None
        return self.view.error(request, page, error, description, status)

    async def redirect_uri_error(
        self, request: Request, client_id: str, rejected: str, error: str, description: str
    ) -> Response:
        """A known application asked to return to a URI it did not register: show that URI, and how to add it."""
        tenant_id = request.path_params["tenant"]
        try:  # one hop, one read transaction: the tenant's page and the application's name
            with apart(_APART):
                page, application = await run_in_threadpool(
                    self.core.hosted_sign_in.application_page, tenant_id, client_id
                )
        except TenantNotFound:
            return self.pages.render(request, "error.html", status=400, error=error, description=description)
        if application is None:  # deleted since the request was checked
            return self.view.error(request, page, error, description, 400)
        shown = rejected[:MAX_SHOWN_URI]
        return self.view.error(
            request, page, error, description, 400, application=application, application_id=client_id,
            rejected=shown, cut=len(rejected) > MAX_SHOWN_URI,
            tool_call=f'updateApplication {{"applicationId": {json.dumps(client_id)}, "redirectUris": '
            f"[…the current redirectUris, {json.dumps(shown)}]}}",
            console_url=application_url(tenant_id, client_id),
        )  # fmt: skip
