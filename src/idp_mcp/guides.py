"""Guides: ``instructions/*.md`` with YAML front matter (id, title, summary, tools), validated at start-up."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n(.*)\Z", re.DOTALL)
_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# Links between guides are written as relative Markdown links: [text](other-guide.md) or (other-guide.md#part).
_GUIDE_LINK = re.compile(r"\]\(([a-z0-9-]+)\.md(?:#[^)]*)?\)")


class GuideError(ValueError):
    """A guide is malformed; the message names the file and what to fix."""


@dataclass(frozen=True)
class Guide:
    id: str
    title: str
    summary: str
    tools: tuple[str, ...]
    body: str


def default_directory() -> Path:
    """Shipped inside the wheel as ``idp_mcp/instructions``; in a source checkout, the repository's folder."""
    packaged = Path(__file__).parent / "instructions"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "instructions"


def parse_guide(path: Path) -> Guide:
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    match = _FRONT_MATTER.match(text)
    if not match:
        raise GuideError(f"{path.name}: must start with YAML front matter between '---' lines")
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise GuideError(f"{path.name}: front matter is not valid YAML ({exc})") from exc
    if not isinstance(meta, dict):
        raise GuideError(f"{path.name}: front matter must be a mapping")
    for field in ("id", "title", "summary"):
        if not isinstance(meta.get(field), str) or not meta[field].strip():
            raise GuideError(f"{path.name}: front matter needs a non-empty '{field}'")
    tools = meta.get("tools")
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        raise GuideError(f"{path.name}: front matter needs 'tools', a list of tool names")
    if meta["id"] != path.stem or not _ID.match(meta["id"]):
        raise GuideError(f"{path.name}: 'id' must be kebab-case and equal the file name ('{path.stem}')")
    return Guide(
        meta["id"],
        meta["title"].strip(),
        meta["summary"].strip(),
        tuple(tools),
        match.group(2).strip() + "\n",
    )


class GuideLibrary:
    def __init__(self, guides: Iterable[Guide]) -> None:
        self._guides = {guide.id: guide for guide in sorted(guides, key=lambda g: g.id)}

    @classmethod
    def load(cls, directory: Path, known_tools: Iterable[str]) -> GuideLibrary:
        """Load and validate every guide; any problem raises :class:`GuideError` (start-up fails)."""
        if not directory.is_dir():
            raise GuideError(f"guides folder {directory} does not exist")
        guides = [parse_guide(path) for path in sorted(directory.glob("*.md"))]
        if not guides:
            raise GuideError(f"no guides in {directory}")
        library = cls(guides)
        library.validate(set(known_tools))
        return library

    def validate(self, known_tools: set[str]) -> None:
        for guide in self._guides.values():
            unknown = [tool for tool in guide.tools if tool not in known_tools]
            if unknown:
                raise GuideError(f"{guide.id}.md: unknown tool(s) {', '.join(unknown)}")
            for target in _GUIDE_LINK.findall(guide.body):
                if target not in self._guides:
                    raise GuideError(f"{guide.id}.md: broken link to '{target}.md'")

    def all(self) -> list[Guide]:
        return list(self._guides.values())

    def get(self, guide_id: str) -> Guide | None:
        return self._guides.get(guide_id)
