"""The one exception hierarchy every Ordinance error belongs to."""


class OrdinanceError(Exception):
    """Root of every error Ordinance raises."""
