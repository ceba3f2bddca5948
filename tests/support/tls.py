"""A loopback HTTPS server with a self-signed certificate, for client ID metadata documents."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost; returns (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp-mcp test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class Document:
    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_per_chunk: float = 0.0


@dataclass
class DocumentServer:
    base_url: str
    ca_bundle: Path
    documents: dict[str, Document]

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def serve_json(self, path: str, document: dict[str, Any]) -> str:
        self.documents[path] = Document(json.dumps(document).encode(), headers={"Content-Type": "application/json"})
        return self.url(path)


@contextmanager
def https_document_server(directory: Path) -> Iterator[DocumentServer]:
    cert, key = self_signed_certificate(directory)
    documents: dict[str, Document] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            document = documents.get(self.path)
            if document is None:
                self.send_error(404)
                return
            self.send_response(document.status)
            for name, value in document.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(document.body)))
            self.end_headers()
            if not document.delay_per_chunk:
                self.wfile.write(document.body)
                return
            for index in range(0, len(document.body), 16):
                self.wfile.write(document.body[index : index + 16])
                self.wfile.flush()
                time.sleep(document.delay_per_chunk)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield DocumentServer(f"https://127.0.0.1:{server.server_address[1]}", cert, documents)
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class HangingServer:
    """An HTTPS server that completes the TLS handshake and then never answers."""

    base_url: str
    ca_bundle: Path
    port: int
    accepted: list[float] = field(default_factory=list)  # when each connection was accepted

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"


@contextmanager
def hanging_https_server(directory: Path) -> Iterator[HangingServer]:
    """A slow remote host as an attacker would run it: it takes connections and holds them, silent, until closed."""
    import asyncio

    cert, key = self_signed_certificate(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_state.accepted.append(time.monotonic())
        try:
            while await reader.read(4096):
                pass  # read the request, answer nothing
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def start() -> None:
        server = await asyncio.start_server(hold, "127.0.0.1", 0, ssl=context)
        holder["server"] = server
        started.set()

    def run() -> None:
        loop.run_until_complete(start())
        loop.run_forever()

    server_state = HangingServer(base_url="", ca_bundle=cert, port=0)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    server_state.port = holder["server"].sockets[0].getsockname()[1]
    server_state.base_url = f"https://127.0.0.1:{server_state.port}"
    try:
        yield server_state
    finally:

        async def stop() -> None:
            holder["server"].close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
