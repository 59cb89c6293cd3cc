"""The policy monitor: a fold of the decisions log into metrics and alerts (issue 14)."""
