class OrdinanceError(Exception):
    """Root of every error Ordinance raises."""
