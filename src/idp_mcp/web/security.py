"""The pages' Content-Security-Policy (no script, never framed, never framing) and its four narrow exceptions: the
console's sign-in experience page frames the tenant's preview; only the preview may be framed, by this origin only;
the page that shows a new secret once runs this origin's copy-button script; and the hosted pages that offer a
passkey run this origin's passkey script, which fetches the WebAuthn options from this origin."""

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


def run_passkey_script(response: Response) -> Response:
    """Let this page run /static/passkeys.js and let it fetch from this origin (the ceremonies' options)."""
    response.headers["Content-Security-Policy"] = (
        f"{_BASE}; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
    )
    return response


def run_own_scripts(response: Response) -> Response:
    """Let this page run scripts from this origin's /static (the one-time secret's copy button); no inline script."""
    response.headers["Content-Security-Policy"] = f"{_BASE}; script-src 'self'; frame-ancestors 'none'"
    return response
