"""The console's sign-in experience page: the tenant's branding, sign-in methods, sign-up and MFA policy, changed
through the same core use cases the updateBranding, updateSignInMethod, updateSignUpMethod and updateMfaPolicy tools
call (so the same checks,
the same refusals in the same words, and one audit row with the person as actor), beside a live preview of the
hosted page in a same-origin frame.

Each of the four forms is one use case: a refusal re-renders the page with the core's sentence next to that form
and the values as typed; a change redirects back (POST-redirect-GET) to the page showing the new version.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from idp_mcp.core.connectors import Connector
from idp_mcp.core.console import TenantAdministrator
from idp_mcp.core.custom_css import MAX_CSS_BYTES
from idp_mcp.core.sign_in_experience import BRANDING_FIELDS, MAX_URL, SignInExperience
from idp_mcp.core.tenants import may_write
from idp_mcp.domain import Tenant, User
from idp_mcp.errors import IdpError
from idp_mcp.web.console import Console, tenant_url
from idp_mcp.web.security import frame_own_pages

SECTIONS = ("branding", "sign-in", "sign-up", "mfa")
DARK_MODES = (("auto", "Follow the device"), ("off", "Always light"), ("on", "Always dark"))
MFA_POLICY_LABELS = (
    ("off", "Off: nobody is asked, unless an application asks with acr_values"),
    ("optional", "Optional: users who set up a factor are asked for it; others are offered to set one up"),
    ("required", "Required: every user proves a second factor, setting one up at their next sign-in"),
)
MFA_FACTOR_LABELS = (
    ("totp", "Authenticator app (TOTP), with backup codes"),
    ("email", "A code sent by email"),
    ("passkey", "Passkey"),
)
# Longer than any field may be, so a value cut here is still refused by the core's own limit, never saved cut.
_MAX_FIELD = max(MAX_CSS_BYTES, MAX_URL) + 1


@dataclass(frozen=True)
class _Shown:
    """What the four forms show: the stored values, or, for the form whose change was refused, the values typed."""

    branding: dict[str, str]
    sign_in: dict[str, Any]
    sign_up: dict[str, Any]
    mfa: dict[str, Any]


@dataclass(frozen=True)
class _Saved:
    """A form's use case: what the page shows again when the change was refused (``refused``)."""

    experience: SignInExperience
    connectors: list[Connector]
    shown: _Shown
    refused: IdpError | None


def _stored(experience: SignInExperience) -> _Shown:
    document = experience.document()
    branding = {name: "" if value is None else str(value) for name, value in document["branding"].items()}
    methods = {method.identifier: method for method in experience.sign_in_methods}
    email, username = methods.get("email"), methods.get("username")
    order = [method.identifier for method in experience.sign_in_methods]
    sign_in = {
        "email_password": bool(email and email.password),
        "email_code": bool(email and email.verification_code),
        "username_password": bool(username and username.password),
        "first": "username" if order[:1] == ["username"] else "email",
        "social": list(experience.social),
    }
    sign_up = {
        "enabled": experience.sign_up.enabled,
        "identifiers": list(experience.sign_up.identifiers),
        "password": experience.sign_up.password,
        "verifyEmail": experience.sign_up.verify_email,
    }
    return _Shown(branding, sign_in, sign_up, dict(document["mfa"]))


def _branding_changes(form: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Every branding field as the form has it (an empty one resets the field to its default), and as typed."""
    typed = {name: str(form.get(name) or "")[:_MAX_FIELD] for name in BRANDING_FIELDS}
    # Browsers send a textarea's line breaks as CRLF: keep the CSS as it was written, or an unchanged form would
    # count as a change.
    typed["customCss"] = typed["customCss"].replace("\r\n", "\n")
    changes: dict[str, Any] = {name: (value.strip() or None) for name, value in typed.items() if name != "customCss"}
    changes["customCss"] = typed["customCss"] or None
    return changes, typed


def _sign_in_changes(form: dict[str, Any], connectors: list[Connector], current: tuple[str, ...]) -> tuple[
    dict[str, Any], dict[str, Any]
]:  # fmt: skip
    """The complete, ordered list of methods the boxes describe (an identifier with no box ticked is not offered)
    and the connector buttons ticked: those already shown keep their order, new ones follow in the list's order."""
    ticked = {key: form.get(key) == "on" for key in ("email_password", "email_code", "username_password")}
    first = "username" if form.get("first") == "username" else "email"
    methods: dict[str, dict[str, Any]] = {}
    if ticked["email_password"] or ticked["email_code"]:
        methods["email"] = {
            "identifier": "email", "password": ticked["email_password"], "verificationCode": ticked["email_code"],
        }  # fmt: skip
    if ticked["username_password"]:
        methods["username"] = {"identifier": "username", "password": True, "verificationCode": False}
    order = ["username", "email"] if first == "username" else ["email", "username"]
    chosen = set(form.get("social") or [])
    known = [connector.id for connector in connectors]
    social = [cid for cid in current if cid in chosen] + [cid for cid in known if cid in chosen and cid not in current]
    social += sorted(chosen - set(social))  # an id that is not a connector (any more): the core says so
    changes = {"methods": [methods[identifier] for identifier in order if identifier in methods], "social": social}
    return changes, {**ticked, "first": first, "social": social}


def _sign_up_changes(form: dict[str, Any]) -> dict[str, Any]:
    identifiers = [identifier for identifier in ("email", "username") if identifier in (form.get("identifiers") or [])]
    return {
        "enabled": form.get("enabled") == "on",
        "identifiers": identifiers,
        "password": form.get("password") == "on",
        "verifyEmail": form.get("verifyEmail") == "on",
    }


def _mfa_changes(form: dict[str, Any]) -> dict[str, Any]:
    policy = form.get("policy")
    return {
        "policy": policy if isinstance(policy, str) else "",  # an unknown value: the core says which are allowed
        "factors": [factor for factor, _ in MFA_FACTOR_LABELS if factor in (form.get("factors") or [])],
        "passkeyFirst": form.get("passkeyFirst") == "on",
    }


async def _ticked(request: Request, name: str) -> list[str]:
    """The values of a group of checkboxes (the form was read, and its CSRF token checked, already)."""
    values = (await request.form()).getlist(name)
    return [value for value in values if isinstance(value, str) and "\x00" not in value][:20]


class ConsoleSignInExperience:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.core = console.core

    def routes(self) -> list[BaseRoute]:
        page = "/console/t/{tenant}/sign-in-experience"
        return [
            Route(page, self.console._page(self.page), methods=["GET"]),
            *(Route(f"{page}/{section}", self.console._page(self.save), methods=["POST"]) for section in SECTIONS),
        ]

    def _read(self, tenant_id: str) -> tuple[SignInExperience, list[Connector]]:
        """The experience and the tenant's connectors (in the caller's unit of work)."""
        return self.core.sign_in_experiences.get(tenant_id), self.core.connectors.list(tenant_id)

    async def page(self, request: Request) -> Response:
        """The experience as it is, with a preview of the hosted page; ``?saved=`` after a change."""
        access, (experience, connectors) = await self.console._as_admin(request, lambda a: self._read(a.tenant.id))
        saved = request.query_params.get("saved")
        return self._render(
            request, access.user, access.tenant, experience, connectors, _stored(experience),
            saved=saved if saved in SECTIONS else "",
        )  # fmt: skip

    async def save(self, request: Request) -> Response:
        """One of the four forms: CSRF first, then the write role, then the core's use case with the person as
        actor, in one transaction."""
        form = await self.console.pages.read_form(request)
        section = request.url.path.rsplit("/", 1)[1]
        back = tenant_url(request.path_params["tenant"], "sign-in-experience")
        ticked = {"sign-in": "social", "sign-up": "identifiers", "mfa": "factors"}.get(section)
        if ticked is not None:
            form[ticked] = await _ticked(request, ticked)
        experiences = self.core.sign_in_experiences

        def save(access: TenantAdministrator) -> _Saved:
            tenant_id, actor = access.tenant.id, access.actor
            experience, connectors = self._read(tenant_id)
            shown = _stored(experience)
            try:
                if section == "branding":
                    branding, typed = _branding_changes(form)
                    shown = replace(shown, branding=typed)
                    experiences.update_branding(tenant_id, branding, actor)
                elif section == "sign-in":
                    sign_in, methods = _sign_in_changes(form, connectors, experience.social)
                    shown = replace(shown, sign_in=methods)
                    experiences.update_sign_in(tenant_id, sign_in, actor)
                elif section == "sign-up":
                    sign_up = _sign_up_changes(form)
                    shown = replace(shown, sign_up=sign_up)
                    experiences.update_sign_up(tenant_id, sign_up, actor)
                else:
                    mfa = _mfa_changes(form)
                    shown = replace(shown, mfa=mfa)
                    experiences.update_mfa(tenant_id, mfa, actor)
            except IdpError as exc:  # the change rolled back (its savepoint): the page again, as typed
                return _Saved(experience, connectors, shown, exc)
            return _Saved(experience, connectors, shown, None)

        access, saved = await self.console._as_admin(request, save, next_url=back, write=True)
        if saved.refused is not None:
            status = saved.refused.status if 400 <= saved.refused.status < 500 else 400
            return self._render(
                request, access.user, access.tenant, saved.experience, saved.connectors, saved.shown, status=status,
                error=saved.refused.message, failed=section,
            )  # fmt: skip
        return RedirectResponse(f"{back}?saved={section}", status_code=303)

    def _render(
        self, request: Request, user: User, tenant: Tenant, experience: SignInExperience, connectors: list[Connector],
        shown: _Shown, *, status: int = 200, saved: str = "", error: str = "", failed: str = "",
    ) -> Response:  # fmt: skip
        preview = f"/t/{tenant.id}/preview"
        response = self.console._render(
            request, "console/sign_in_experience.html", status=status, user=user, tenant=tenant,
            section="sign-in-experience", experience=experience, shown=shown, connectors=connectors,
            may_write=may_write(request.state.role), saved=saved, error=error, failed=failed,
            adjusted=[adjustment.document() for adjustment in experience.branding.colours().adjusted],
            email_connector=self.core.sign_in_experiences.email_connector, dark_modes=DARK_MODES,
            mfa_policies=MFA_POLICY_LABELS, mfa_factors=MFA_FACTOR_LABELS,
            action=tenant_url(tenant.id, "sign-in-experience"),
            preview_url=f"{preview}?v={experience.version}", sign_up_preview_url=f"{preview}?screen=sign-up",
        )  # fmt: skip
        return frame_own_pages(response)
