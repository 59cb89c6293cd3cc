"""Ordinance: a living policy engine for autonomous AI agents."""

__version__ = "0.1.0"
