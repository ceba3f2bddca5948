"""axe-core (pinned in tests/axe/package-lock.json) injected into a Playwright page: the WCAG 2 A and AA rules.
Installs its package with ``npm ci`` on first use (a fresh clone has no node_modules)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from playwright.async_api import Page

AXE_DIR = Path(__file__).resolve().parents[1] / "axe"
AXE_SCRIPT = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
WCAG_A_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def ensure_installed() -> None:
    if AXE_SCRIPT.is_file():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed for the accessibility tests: apt-get install nodejs npm")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(AXE_DIR)], check=True, timeout=300
    )


async def violations(page: Page) -> list[dict[str, Any]]:
    """The WCAG A/AA violations axe finds on the page as it is now: rule id, impact and the offending nodes."""
    ensure_installed()
    await page.add_script_tag(path=str(AXE_SCRIPT))
    result: dict[str, Any] = await page.evaluate(
        "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_A_AA
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [node["html"] for node in v["nodes"]][:5]}
        for v in result["violations"]
    ]
