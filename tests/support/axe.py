"""axe-core (pinned in tests/axe/package-lock.json) run in a Playwright page: the WCAG 2 A and AA rules, as
violations a test can assert on. Installs the package with ``npm ci`` on first use (a fresh clone has no
node_modules)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from playwright.async_api import Page

AXE_DIR = Path(__file__).resolve().parents[1] / "axe"
AXE_SOURCE = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.0, 2.1 and 2.2 at levels A and AA: the success criteria the pages promise.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def ensure_installed() -> None:
    if AXE_SOURCE.is_file():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed for the accessibility tests: apt-get install nodejs npm")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(AXE_DIR)], check=True, timeout=300
    )


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """The WCAG 2 A/AA violations axe finds in the page as it is now.

    The pages' Content-Security-Policy (script-src none) blocks a script element, so ``add_script_tag`` cannot
    inject axe; the library is evaluated through the DevTools protocol instead, which the CSP does not govern, and the
    page keeps its real policy (no ``bypass_csp``), so what axe measures is what users get."""
    ensure_installed()
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(AXE_SOURCE.read_text() + "\n;undefined")
    result = await page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})", WCAG_TAGS
    )
    return list(result["violations"])


def describe(violations: list[dict[str, Any]]) -> str:
    """One line per failing element: rule, impact, selector and axe's summary of what to fix."""
    lines = []
    for violation in violations:
        for node in violation["nodes"]:
            summary = " ".join((node.get("failureSummary") or "").split())
            lines.append(f"{violation['id']} ({violation['impact']}) {node['target']}: {summary}")
    return "\n".join(lines)
