"""The Python floor for bench/run: the least a client-credentials token endpoint can do on this stack.

Starlette + PyJWT under uvicorn with the same options as ``idp-mcp serve``; one m2m client held in memory
(secret compared by SHA-256 digest, as idp-mcp stores it); an ES256 RFC 9068 access token with the same claims
idp-mcp issues. No database, no authlib, no audit, no key rotation, no scope or resource checks. It is not a
product: it shows how close any CPython token endpoint on uvicorn can get to node-oidc-provider on this machine.

    python bench/floor_server.py PORT CLIENT_ID SECRET
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
TTL = 3600


def build(port: int, client_id: str, secret: str) -> Starlette:
    issuer = f"http://127.0.0.1:{port}"
    key = ec.generate_private_key(ec.SECP256R1())
    secret_digest = hashlib.sha256(secret.encode()).digest()

    def refuse(error: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": error}, status_code=status, headers=NO_STORE)

    async def token(request: Request) -> JSONResponse:
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            return refuse("unsupported_grant_type")
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            presented_id, _, presented = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return refuse("invalid_client", 401)
        digest = hashlib.sha256(presented.encode()).digest()
        if scheme.lower() != "basic" or presented_id != client_id or not hmac.compare_digest(digest, secret_digest):
            return refuse("invalid_client", 401)
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "sub": client_id,
            "aud": issuer,
            "client_id": client_id,
            "scope": "",
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            "nbf": now,
            "exp": now + TTL,
        }
        access_token = jwt.encode(claims, key, algorithm="ES256", headers={"typ": "at+jwt", "kid": "floor"})
        body = {"access_token": access_token, "token_type": "Bearer", "expires_in": TTL, "scope": ""}
        return JSONResponse(body, headers=NO_STORE)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/token", token, methods=["POST"]), Route("/healthz", healthz)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("client_id")
    parser.add_argument("secret")
    args = parser.parse_args()
    uvicorn.run(
        build(args.port, args.client_id, args.secret),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        log_config=None,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        access_log=False,
    )


if __name__ == "__main__":
    main()
