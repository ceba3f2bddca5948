"""RFC 8707 resource indicators: choose_resource picks the one resource a request is for."""

from __future__ import annotations

import pytest

from idp_mcp.oauth.checks import InvalidTargetError, choose_resource

MCP = "https://id.example.com/mcp"
ALLOWED = (MCP,)


@pytest.mark.parametrize("requested", [[], [""]], ids=["absent", "empty-value"])
def test_absent_resource_gives_the_default(requested: list[str]) -> None:
    assert choose_resource(requested, ALLOWED, MCP) == MCP
    assert choose_resource(requested, ALLOWED, None) is None


def test_allowed_resource_is_chosen_on_exact_match() -> None:
    assert choose_resource([MCP], ALLOWED, None) == MCP


def test_same_resource_repeated_is_accepted() -> None:
    assert choose_resource([MCP, MCP], ALLOWED, None) == MCP


@pytest.mark.parametrize(
    "resource",
    [
        pytest.param("https://evil.example.com/mcp", id="other-host"),
        pytest.param(MCP + "/", id="trailing-slash"),
        pytest.param("https://ID.example.com/mcp", id="host-case"),
        pytest.param("http://id.example.com/mcp", id="http"),
        pytest.param("https://id.example.com", id="origin-only"),
    ],
)
def test_unknown_resource_is_refused_as_invalid_target(resource: str) -> None:
    with pytest.raises(InvalidTargetError) as excinfo:
        choose_resource([resource], ALLOWED, MCP)
    assert excinfo.value.error == "invalid_target"
    assert "Unknown resource" in excinfo.value.description
    assert MCP in excinfo.value.description


def test_two_different_resources_are_refused_as_invalid_target() -> None:
    with pytest.raises(InvalidTargetError) as excinfo:
        choose_resource([MCP, "https://other.example.com/api"], (MCP, "https://other.example.com/api"), MCP)
    assert excinfo.value.error == "invalid_target"
    assert "one resource at a time" in excinfo.value.description
