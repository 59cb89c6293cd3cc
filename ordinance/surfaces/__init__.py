"""Surfaces: the ways agents reach Ordinance without linking the Python client — thin
layers over `ordinance.client`, never a second decision path (HTTP decision API, MCP
gateway, framework adapters)."""
