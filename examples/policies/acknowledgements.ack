# Accepted findings of `ordinance check --analyze` (see docs/analysis.md, "The gate and
# acknowledgements"). Each entry is a cross-owner conflict the teams meant: one team's deny
# is supposed to win over another team's allow or approval. An entry names one finding
# (`id`, from `ordinance analyze examples/policies`) or every conflict between rules
# matching two globs (`rules`) or between two policies (`policies`); a refusing finding
# no entry covers refuses the bundle, and an entry that covers nothing is reported unused.
acknowledgements:
  # every tool: any team's allowing rule vs pii-access/pii-resource-needs-clearance
  - rules: ["*", pii-access/pii-resource-needs-clearance]
    justification: "privacy-office's clearance rule is meant to override every other team's allow or approval, on every tool; an agent without clearance 3 never acts on a PII-classified resource, whatever the tool"
    by: privacy-office
  # fs.write, fs.delete: production-changes/manifest-edits (allowing) vs filesystem-safety/deny-secrets (denying)
  - rules: [production-changes/manifest-edits, filesystem-safety/deny-secrets]
    justification: "key material under /workspace/deploy/prod/ stays denied; the approval route for prod manifest edits is not a way to write secrets"
    by: sre, platform-security
