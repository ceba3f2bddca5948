"""The pages' Content-Security-Policy, and the two narrow exceptions to "never framed, never framing": the console's
sign-in experience page frames the tenant's preview, and only the preview may be framed, by this origin only."""

from __future__ import annotations

from starlette.responses import Response

_BASE = "default-src 'none'; style-src 'self'; img-src 'self' https: data:; base-uri 'none'"
# Every page: no script at all, styles from this origin only, and never inside a frame (clickjacking on consent).
PAGE_CSP = f"{_BASE}; frame-ancestors 'none'"


def frame_own_pages(response: Response) -> Response:
    """Let this page show same-origin pages in an iframe (the console's live preview of a hosted page)."""
    response.headers["Content-Security-Policy"] = f"{_BASE}; frame-src 'self'; frame-ancestors 'none'"
    return response


def framed_by_own_pages(response: Response) -> Response:
    """Let pages of this origin (and only them) frame this one: for the preview, whose forms are inactive anyway
    (``form-action 'none'`` makes sure nothing is ever submitted from it)."""
    response.headers["Content-Security-Policy"] = f"{_BASE}; form-action 'none'; frame-ancestors 'self'"
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response
