"""Formal analysis of policy bundles with Z3: conflicts, dead and redundant rules,
assertions, gaps and semantic diff, each finding with a witness request replayed through
the real evaluator. See docs/analysis.md."""

from ordinance.policy.analysis.checks import Finding, Options
from ordinance.policy.analysis.run import Report, analyze

__all__ = ["Finding", "Options", "Report", "analyze"]
