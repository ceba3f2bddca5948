"""A minimal MCP client over streamable HTTP, speaking JSON-RPC through Starlette's TestClient: the headers a real
client sends, the session id from initialize, and responses as either JSON or Server-Sent Events."""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx2
from starlette.testclient import TestClient

MCP_PATH = "/mcp"
PROTOCOL_VERSION = "2025-11-25"


def messages_of(response: httpx2.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages in a response body, whether plain JSON or an SSE stream of ``data:`` lines."""
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("text/event-stream"):
        messages: list[dict[str, Any]] = []
        for event in response.text.replace("\r\n", "\n").split("\n\n"):
            data = "\n".join(line[5:].lstrip() for line in event.split("\n") if line.startswith("data:"))
            if data:
                messages.append(json.loads(data))
        return messages
    if content_type.startswith("application/json"):
        body = response.json()
        return body if isinstance(body, list) else [body]
    raise AssertionError(f"unexpected MCP response: {response.status_code} {content_type} {response.text[:300]}")


class McpSession:
    def __init__(self, client: TestClient, access_token: str | None) -> None:
        self.client = client
        self.access_token = access_token
        self.protocol_version: str | None = None  # sent once negotiated, as the SDK's own client does
        self.session_id: str | None = None
        self._ids = itertools.count(1)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }
        if self.protocol_version is not None:
            headers["MCP-Protocol-Version"] = self.protocol_version
        if self.access_token is not None:
            headers["Authorization"] = f"Bearer {self.access_token}"
        if self.session_id is not None:
            headers["Mcp-Session-Id"] = self.session_id
        return {**headers, **(extra or {})}

    def post(self, message: dict[str, Any], headers: dict[str, str] | None = None) -> httpx2.Response:
        return self.client.post(MCP_PATH, content=json.dumps(message), headers=self.headers(headers))

    def initialize_response(
        self, protocol_version: str = PROTOCOL_VERSION, headers: dict[str, str] | None = None
    ) -> httpx2.Response:
        """The raw HTTP response to ``initialize`` (no ``MCP-Protocol-Version`` yet: nothing is negotiated)."""
        message = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": "initialize",
            "params": {
                "protocolVersion": protocol_version,
                "capabilities": {},
                "clientInfo": {"name": "idp-mcp-tests", "version": "0"},
            },
        }
        return self.post(message, headers)

    def initialize(self, protocol_version: str = PROTOCOL_VERSION) -> dict[str, Any]:
        """Initialize, keep the session id and negotiated version, send ``notifications/initialized``."""
        response = self.initialize_response(protocol_version)
        assert response.status_code == 200, response.text
        result = self._result_of(messages_of(response))
        self.session_id = response.headers.get("mcp-session-id")
        self.protocol_version = result["protocolVersion"]
        notified = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert notified.status_code == 202, notified.text
        return result

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and return its JSON-RPC response message (``result`` or ``error``)."""
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        response = self.post(message)
        assert response.status_code == 200, f"{response.status_code} {response.text}"
        matching = [m for m in messages_of(response) if m.get("id") == request_id]
        assert len(matching) == 1, response.text
        return matching[0]

    def list_tools(self) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = self._result_of([self.request("tools/list")])["tools"]
        return tools

    def call_tool(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``tools/call`` result; fails the test on a JSON-RPC (protocol) error."""
        params: dict[str, Any] = {"name": name}
        if arguments is not None:
            params["arguments"] = arguments
        return self._result_of([self.request("tools/call", params)])

    @staticmethod
    def _result_of(messages: list[dict[str, Any]]) -> dict[str, Any]:
        responses = [m for m in messages if "result" in m or "error" in m]
        assert len(responses) == 1, messages
        assert "error" not in responses[0], f"protocol error: {responses[0]['error']}"
        result: dict[str, Any] = responses[0]["result"]
        return result


def text_of(result: dict[str, Any]) -> str:
    """The text content of a tool result, joined."""
    return "\n".join(item["text"] for item in result.get("content", []) if item.get("type") == "text")
