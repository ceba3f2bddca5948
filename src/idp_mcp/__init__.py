"""idp-mcp: a self-hostable identity provider that AI agents administer through MCP."""

__version__ = "0.1.0"
