"""Business operations. Knows nothing of HTTP or MCP."""
