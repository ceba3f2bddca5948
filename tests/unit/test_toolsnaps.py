"""Tool schema snapshots ("toolsnaps"): what an MCP client sees of each tool is pinned in tests/unit/toolsnaps/.

A change to a tool's name, description, schemas, hints or scope is a change to the agent-facing API, so it
must show up in review as a change to a committed JSON file. After an intended change, regenerate with:

    UPDATE_TOOLSNAPS=1 python -m pytest tests/unit/test_toolsnaps.py
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from idp_mcp.mcp_server.registry import ToolSpec
from idp_mcp.mcp_server.server import _describe
from idp_mcp.mcp_server.tools import all_tools

SNAPSHOT_DIR = Path(__file__).parent / "toolsnaps"
UPDATING = os.environ.get("UPDATE_TOOLSNAPS") == "1"


def _snapshot(tool: ToolSpec[Any]) -> dict[str, Any]:
    """The tool as tools/list describes it (the same ``_describe`` the server uses), plus its scope."""
    described = _describe(tool)
    annotations = described.annotations
    assert annotations is not None
    return {
        "name": described.name,
        "title": described.title,
        "description": described.description,
        "inputSchema": described.input_schema,
        "outputSchema": described.output_schema,
        "readOnlyHint": annotations.read_only_hint,
        "destructiveHint": annotations.destructive_hint,
        "idempotentHint": annotations.idempotent_hint,
        "scope": tool.scope,
    }


def _render(snapshot: dict[str, Any]) -> str:
    return json.dumps(snapshot, indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("tool", all_tools(), ids=lambda tool: tool.name)
def test_tool_definition_matches_its_committed_snapshot(tool: ToolSpec[Any]) -> None:
    path = SNAPSHOT_DIR / f"{tool.name}.json"
    actual = _render(_snapshot(tool))
    if UPDATING:
        SNAPSHOT_DIR.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(
            f"No snapshot for tool {tool.name}: {path} is missing. If the tool is new, run "
            "UPDATE_TOOLSNAPS=1 python -m pytest tests/unit/test_toolsnaps.py and commit the file."
        )
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"toolsnaps/{tool.name}.json (committed)",
                tofile=f"{tool.name} (current code)",
            )
        )
        pytest.fail(
            f"The definition of tool {tool.name} changed; agents will see a different API.\n{diff}\n"
            "If the change is intended, run UPDATE_TOOLSNAPS=1 python -m pytest tests/unit/test_toolsnaps.py "
            "and commit the updated snapshot.",
            pytrace=False,
        )


def test_every_snapshot_belongs_to_an_existing_tool() -> None:
    names = {tool.name for tool in all_tools()}
    stale = sorted(path.name for path in SNAPSHOT_DIR.glob("*.json") if path.stem not in names)
    if stale and UPDATING:
        for name in stale:
            (SNAPSHOT_DIR / name).unlink()
        return
    assert not stale, (
        f"Snapshots for tools that no longer exist: {', '.join(stale)}. Delete them from tests/unit/toolsnaps/ "
        "(or run with UPDATE_TOOLSNAPS=1) if the tools were removed on purpose."
    )


def test_snapshot_records_the_fields_an_mcp_client_sees() -> None:
    snapshot = _snapshot(all_tools()[0])
    assert set(snapshot) == {
        "name",
        "title",
        "description",
        "inputSchema",
        "outputSchema",
        "readOnlyHint",
        "destructiveHint",
        "idempotentHint",
        "scope",
    }
    assert snapshot["inputSchema"]["type"] == "object"
    assert snapshot["outputSchema"]["type"] == "object"
