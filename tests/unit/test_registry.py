"""The tool registry: the rules every tool definition must follow, and filtering by scope."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from idp_mcp.domain import SCOPE_READ, SCOPE_WRITE
from idp_mcp.mcp_server.registry import ToolContext, ToolRegistry, ToolSpec
from idp_mcp.mcp_server.tools import all_tools


class _Input(BaseModel):
    value: str = ""


class _Output(BaseModel):
    ok: bool


async def _handler(ctx: ToolContext, args: _Input) -> _Output:
    return _Output(ok=True)


def _spec(
    name: str = "getThing",
    *,
    description: str = "Return the thing.",
    scope: str = SCOPE_READ,
    read_only: bool = True,
    destructive: bool = False,
) -> ToolSpec[Any]:
    return ToolSpec(
        name=name,
        description=description,
        input_model=_Input,
        output_model=_Output,
        handler=_handler,
        scope=scope,
        toolset="test",
        read_only=read_only,
        destructive=destructive,
    )


# --- ToolSpec ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["getThing", "list", "createUser2", "a" * 64])
def test_lower_camel_case_tool_name_is_accepted(name: str) -> None:
    assert _spec(name).name == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("GetThing", id="upper-camel"),
        pytest.param("get_thing", id="snake"),
        pytest.param("get-thing", id="kebab"),
        pytest.param("get thing", id="space"),
        pytest.param("2getThing", id="leading-digit"),
        pytest.param("", id="empty"),
        pytest.param("a" * 65, id="too-long"),
    ],
)
def test_tool_name_that_is_not_lower_camel_case_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="must be lowerCamelCase verbNoun"):
        _spec(name)


@pytest.mark.parametrize(
    "description",
    ["Return the thing.", "Return the thing. Use it before changing anything.", "Is it there? Ask here!"],
)
def test_description_of_one_or_two_sentences_is_accepted(description: str) -> None:
    assert _spec(description=description).description == description


@pytest.mark.parametrize(
    "description",
    [
        pytest.param("Return the thing. Then more. And more.", id="three-sentences"),
        pytest.param("One! Two? Three.", id="three-with-other-punctuation"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
    ],
)
def test_description_that_is_not_one_or_two_sentences_is_refused(description: str) -> None:
    with pytest.raises(ValueError, match="one or two sentences"):
        _spec(description=description)


def test_tool_cannot_be_both_read_only_and_destructive() -> None:
    with pytest.raises(ValueError, match="cannot be both read-only and destructive"):
        _spec("deleteThing", read_only=True, destructive=True)
    assert _spec("deleteThing", scope=SCOPE_WRITE, read_only=False, destructive=True).destructive is True


# --- ToolRegistry --------------------------------------------------------------------------------------------


def test_registry_refuses_two_tools_with_the_same_name() -> None:
    with pytest.raises(ValueError, match="duplicate tool getThing"):
        ToolRegistry([_spec("getThing"), _spec("getThing", description="Another one.")])


def test_registry_keeps_tools_in_order_and_finds_them_by_name() -> None:
    registry = ToolRegistry([_spec("getThing"), _spec("listThings")])
    assert registry.names() == ["getThing", "listThings"]
    assert [tool.name for tool in registry.all()] == ["getThing", "listThings"]
    found = registry.get("listThings")
    assert found is not None and found.name == "listThings"
    assert registry.get("deleteThing") is None


def test_allowed_returns_only_the_tools_whose_scope_was_granted() -> None:
    registry = ToolRegistry(
        [_spec("getThing"), _spec("updateThing", scope=SCOPE_WRITE, read_only=False), _spec("listThings")]
    )
    assert [t.name for t in registry.allowed([SCOPE_READ])] == ["getThing", "listThings"]
    assert [t.name for t in registry.allowed([SCOPE_WRITE])] == ["updateThing"]
    assert [t.name for t in registry.allowed({SCOPE_READ, SCOPE_WRITE})] == ["getThing", "updateThing", "listThings"]
    assert registry.allowed([]) == []
    assert registry.allowed(["openid", "offline_access"]) == []


# --- the real inventory --------------------------------------------------------------------------------------


def test_real_inventory_builds_a_registry_without_duplicates() -> None:
    tools = all_tools()
    assert tools, "no tools registered"
    assert ToolRegistry(tools).names() == [tool.name for tool in tools]


@pytest.mark.parametrize("tool", all_tools(), ids=lambda tool: tool.name)
def test_every_real_tool_declares_a_matching_scope_and_pydantic_models(tool: ToolSpec[Any]) -> None:
    assert tool.scope in (SCOPE_READ, SCOPE_WRITE)
    expected_scope = SCOPE_READ if tool.read_only else SCOPE_WRITE
    assert tool.scope == expected_scope, f"{tool.name}: read_only={tool.read_only} needs scope {expected_scope}"
    assert tool.title, f"{tool.name} has no title"
    assert tool.toolset, f"{tool.name} has no toolset"
    assert issubclass(tool.input_model, BaseModel)
    assert issubclass(tool.output_model, BaseModel)
    assert tool.input_model.model_json_schema()["type"] == "object"
    assert tool.output_model.model_json_schema()["type"] == "object"


def test_read_scope_sees_only_read_only_tools_of_the_real_inventory() -> None:
    registry = ToolRegistry(all_tools())
    read_tools = registry.allowed([SCOPE_READ])
    assert read_tools and all(tool.read_only for tool in read_tools)
    assert len(registry.allowed([SCOPE_READ, SCOPE_WRITE])) == len(registry.all())
