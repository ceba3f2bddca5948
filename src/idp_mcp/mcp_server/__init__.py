"""The remote MCP server: a tool registry, thin tools over the core, and the streamable-HTTP app."""
