"""Chromium's virtual WebAuthn authenticator, through Playwright's CDP session: a platform authenticator (like a
laptop's fingerprint reader) that keeps discoverable credentials and verifies the user, with no prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from playwright.async_api import CDPSession, Page


@dataclass
class VirtualAuthenticator:
    cdp: CDPSession
    authenticator_id: str

    async def credentials(self) -> list[dict[str, Any]]:
        result = await self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.authenticator_id})
        return list(result["credentials"])


async def add_virtual_authenticator(page: Page) -> VirtualAuthenticator:
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable", {"enableUI": False})
    added = await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
                "isUserVerified": True, "automaticPresenceSimulation": True,
            }
        },
    )  # fmt: skip
    return VirtualAuthenticator(cdp, added["authenticatorId"])
