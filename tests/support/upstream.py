"""A small OpenID provider on a loopback port, for the integration tests of connectors: a real HTTP server that the
app's upstream client talks to over real sockets, with knobs to make it misbehave (a wrong ``iss``/``aud``/``nonce``,
a signature by a key it does not publish, an error instead of a code, a slow answer). The end-to-end tests use
node-oidc-provider instead (tests/upstream/)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import ECKey

CLIENT_ID = "upstream-client"
CLIENT_SECRET = "upstream-client-secret-9f8e7d"


@dataclass
class Account:
    subject: str
    email: str | None = None
    email_verified: bool = False
    name: str | None = None


@dataclass
class FakeProvider:
    issuer: str = ""
    account: Account = field(default_factory=lambda: Account("alice-sub", "alice@example.com", True, "Alice"))
    id_token_overrides: dict[str, Any] = field(default_factory=dict)
    foreign_key: bool = False  # sign ID tokens with a key the JWKS does not hold
    authorize_error: str | None = None
    token_delay: float = 0.0
    discovery_issuer: str | None = None  # publish another issuer in discovery
    key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", parameters={"kid": "k1", "alg": "ES256"}))
    requests: list[dict[str, Any]] = field(default_factory=list)  # authorization requests received
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    _codes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def authorize(self, url: str) -> str:
        """What the provider's authorization endpoint answers for ``url`` (the user approves at once)."""
        query = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
        self.requests.append(query)
        if self.authorize_error:
            answer = {"error": self.authorize_error, "state": query["state"]}
        else:
            code = secrets.token_urlsafe(16)
            self._codes[code] = query
            answer = {"code": code, "state": query["state"]}
        return f"{query['redirect_uri']}?{urlencode(answer)}"

    def _token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        self.token_requests.append(form)
        if self.token_delay:
            time.sleep(self.token_delay)
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if authorization != expected:
            return 401, {"error": "invalid_client"}
        request = self._codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if (
            request is None
            or challenge != request["code_challenge"]
            or form.get("redirect_uri") != request["redirect_uri"]
        ):
            return 400, {"error": "invalid_grant"}
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": self.account.subject, "aud": CLIENT_ID, "nonce": request.get("nonce"),
            "iat": now, "exp": now + 300, **self.id_token_overrides,
        }  # fmt: skip
        key = ECKey.generate_key("P-256", parameters={"kid": "k1"}) if self.foreign_key else self.key
        id_token = jwt.encode({"alg": "ES256", "kid": "k1"}, {k: v for k, v in claims.items() if v is not None}, key)
        return 200, {"access_token": "at-" + self.account.subject, "token_type": "Bearer", "id_token": id_token}

    def _userinfo(self, authorization: str | None) -> tuple[int, dict[str, Any]]:
        if authorization != f"Bearer at-{self.account.subject}":
            return 401, {"error": "invalid_token"}
        info = {"sub": self.account.subject, "email": self.account.email, "email_verified": self.account.email_verified}
        return 200, {**info, "name": self.account.name}

    def handle(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path == "/.well-known/openid-configuration":
            return 200, {
                "issuer": self.discovery_issuer or self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token", "userinfo_endpoint": f"{self.issuer}/userinfo",
                "jwks_uri": f"{self.issuer}/jwks",
            }  # fmt: skip
        if method == "GET" and path == "/jwks":
            return 200, {"keys": [self.key.as_dict(private=False)]}
        if method == "POST" and path == "/token":
            form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
            return self._token(form, headers.get("authorization"))
        if method == "GET" and path == "/userinfo":
            return self._userinfo(headers.get("authorization"))
        return 404, {"error": "not_found"}


@contextmanager
def run_provider() -> Iterator[FakeProvider]:
    provider = FakeProvider()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {key.lower(): value for key, value in self.headers.items()}
            status, document = provider.handle(method, self.path.split("?", 1)[0], body, headers)
            payload = json.dumps(document).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                pass

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    provider.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
