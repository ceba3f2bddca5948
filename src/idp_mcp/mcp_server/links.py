"""The URLs tools hand to agents, built in one place: a tenant's OpenID Connect issuer, its discovery document,
an application's page in the web console, and the guides on the /docs pages."""

from __future__ import annotations

from idp_mcp.settings import Settings


def tenant_issuer(settings: Settings, tenant_id: str) -> str:
    """The issuer of the tokens a tenant's applications receive."""
    return f"{settings.public_url}/t/{tenant_id}/oidc"


def discovery_url(settings: Settings, tenant_id: str) -> str:
    """The OpenID Connect discovery document of a tenant's issuer."""
    return f"{tenant_issuer(settings, tenant_id)}/.well-known/openid-configuration"


def console_application_url(settings: Settings, tenant_id: str, application_id: str) -> str:
    """The application's page in the web console, where a person creates production secrets."""
    return f"{settings.public_url}/console/t/{tenant_id}/applications/{application_id}"


def docs_url(settings: Settings, guide_id: str, anchor: str = "") -> str:
    """A guide on the public /docs pages, at one heading when ``anchor`` is given."""
    return f"{settings.public_url}/docs/{guide_id}" + (f"#{anchor}" if anchor else "")


def sign_in_preview_url(settings: Settings, tenant_id: str) -> str:
    """The tenant's hosted sign-in page with its current sign-in experience, without an application's request."""
    return f"{settings.public_url}/t/{tenant_id}/preview"


def connector_secret_url(settings: Settings, tenant_id: str, connector_id: str, expires: int, signature: str) -> str:
    """The console page where a person sets a connector's client secret: signed, valid for a short time."""
    page = f"{settings.public_url}/console/t/{tenant_id}/connectors/{connector_id}/secret"
    return f"{page}?expires={expires}&sig={signature}"
