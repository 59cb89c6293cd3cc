"""Implementations of the ``ordinance`` sub-commands (argument parsing lives in cli.py)."""
