"""Processors: deterministic functions of (state, record); no broker client imported here."""
