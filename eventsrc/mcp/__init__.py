"""``eventsrc mcp``: the cluster as an MCP server, for OpenClaw and any other MCP client.

``tools`` holds what each tool does over a ``Cluster`` (plain async methods, errors are
``EventsrcError``); ``server`` wires them into an MCP server on the official SDK, stdio
or streamable HTTP, and is the entry point.
"""
