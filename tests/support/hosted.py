"""Driving a tenant's hosted pages in process: start an authorization request at the tenant's issuer, read the
forms of the page it leads to, and send them with their CSRF token."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.testclient import TestClient

from tests.support.inprocess import csrf_from, pkce_pair

TENANT = "default"
CALLBACK = "http://127.0.0.1:7777/callback"


@dataclass
class HostedRequest:
    """An authorization request waiting on the hosted page."""

    client: TestClient
    path: str  # /t/<tenant>/interaction/<id>
    verifier: str
    tenant: str = TENANT

    @property
    def interaction_id(self) -> str:
        return self.path.rsplit("/", 1)[1]

    def page(self, path: str | None = None) -> Any:
        return self.client.get(path or self.path)

    def post(self, action: str, fields: dict[str, str], page_html: str) -> Any:
        """POST a hosted form (the CSRF token and interaction taken from the page it is on)."""
        data = {"csrf_token": csrf_from(page_html), "interaction": self.interaction_id, **fields}
        return self.client.post(f"/t/{self.tenant}/{action}", data=data, follow_redirects=False)


def start(client: TestClient, client_id: str, *, tenant: str = TENANT, scope: str = "openid email") -> HostedRequest:
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code", "client_id": client_id, "redirect_uri": CALLBACK, "scope": scope, "state": "st",
        "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip
    response = client.get(f"/t/{tenant}/oidc/authorize", params=params, follow_redirects=False)
    assert response.status_code == 302, response.text
    return HostedRequest(client, urlsplit(response.headers["location"]).path, verifier, tenant)


def redirected_with_code(response: Any) -> dict[str, str]:
    """The query of a redirect back to the application, which must carry a code."""
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(CALLBACK), location
    query = {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
    assert query.get("code") and query.get("state") == "st", query
    return query


def input_names(html: str, action: str) -> list[str]:
    """The names of the visible inputs of the form that posts to ``action``."""
    match = re.search(rf'<form[^>]*action="{re.escape(action)}"[^>]*>(.*?)</form>', html, re.DOTALL)
    assert match, f"no form posting to {action}"
    names = []
    for tag in re.findall(r"<input\b[^>]*>", match.group(1)):
        kind, name = re.search(r'type="([^"]+)"', tag), re.search(r'name="([^"]+)"', tag)
        if name and not (kind and kind.group(1) == "hidden"):
            names.append(name.group(1))
    return names
