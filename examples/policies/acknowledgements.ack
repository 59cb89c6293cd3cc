# Accepted findings of `ordinance check --analyze` (see docs/analysis.md, "The gate and
# acknowledgements"). Each entry is a cross-owner conflict the teams meant: one team's deny
# is supposed to win over another team's allow or approval. Ids come from
# `ordinance analyze examples/policies`; a finding not acknowledged here refuses the bundle.
acknowledgements:
  # email.send: email-exfiltration/send (allowing) vs pii-access/pii-resource-needs-clearance (denying)
  - id: conflict:43f70042d8a9
    justification: "privacy-office's clearance rule is meant to override email-exfiltration/send on email.send; an agent without clearance 3 never acts on a PII-classified resource, whatever the tool"
    by: data-protection, privacy-office
  # fs.delete: filesystem-safety/recursive-delete (allowing) vs pii-access/pii-resource-needs-clearance (denying)
  - id: conflict:7df52d3f6659
    justification: "privacy-office's clearance rule is meant to override filesystem-safety/recursive-delete on fs.delete; an agent without clearance 3 never acts on a PII-classified resource, whatever the tool"
    by: platform-security, privacy-office
  # fs.delete: filesystem-safety/workspace (allowing) vs pii-access/pii-resource-needs-clearance (denying)
  - id: conflict:677d3d08277f
    justification: "privacy-office's clearance rule is meant to override filesystem-safety/workspace on fs.delete; an agent without clearance 3 never acts on a PII-classified resource, whatever the tool"
    by: platform-security, privacy-office
  # fs.read: filesystem-safety/workspace (allowing) vs pii-access/pii-resource-needs-clearance (denying)
  - id: conflict:a7e4d013dd5a
    justification: "privacy-office's clearance rule is meant to override filesystem-safety/workspace on fs.read; an agent without clearance 3 never acts on a PII-classified resource, whatever the tool"
    by: platform-security, privacy-office
  # fs.write: filesystem-safety/large-write (allowing) vs pii-access/pii-resource-needs-clearance (denying)
  - id: conflict:4c6240fb91b4
    justification: "privacy-office's clearance rule is meant to override filesystem-safety/large-write on fs.write; an agent without clearance 3 never acts on a PII-classified resource, whatever the tool"
    by: platform-security, privacy-office
  # fs.write: filesystem-safety/workspace (allowing) vs pii-access/pii-resource-needs-clearance (denying)
  - id: conflict:76ee165dda6e
    justification: "privacy-office's clearance rule is meant to override filesystem-safety/workspace on fs.write; an agent without clearance 3 never acts on a PII-classified resource, whatever the tool"
    by: platform-security, privacy-office
  # fs.write: production-changes/manifest-edits (allowing) vs filesystem-safety/deny-secrets (denying)
  - id: conflict:5401ef7d416d
    justification: "key material under /workspace/deploy/prod/ stays denied; the approval route for prod manifest edits is not a way to write secrets"
    by: sre, platform-security
  # fs.write: production-changes/manifest-edits (allowing) vs pii-access/pii-resource-needs-clearance (denying)
  - id: conflict:40776b024522
    justification: "privacy-office's clearance rule is meant to override production-changes/manifest-edits on fs.write; an agent without clearance 3 never acts on a PII-classified resource, whatever the tool"
    by: sre, privacy-office
  # http.fetch: web-fetch/allowlisted (allowing) vs pii-access/pii-resource-needs-clearance (denying)
  - id: conflict:9eee53f33d49
    justification: "privacy-office's clearance rule is meant to override web-fetch/allowlisted on http.fetch; an agent without clearance 3 never acts on a PII-classified resource, whatever the tool"
    by: network-security, privacy-office
  # http.fetch: web-fetch/state-changing-methods (allowing) vs pii-access/pii-resource-needs-clearance (denying)
  - id: conflict:6f94a68d6f53
    justification: "privacy-office's clearance rule is meant to override web-fetch/state-changing-methods on http.fetch; an agent without clearance 3 never acts on a PII-classified resource, whatever the tool"
    by: network-security, privacy-office
  # infra.deploy: production-changes/changes (allowing) vs pii-access/pii-resource-needs-clearance (denying)
  - id: conflict:db396772014f
    justification: "privacy-office's clearance rule is meant to override production-changes/changes on infra.deploy; an agent without clearance 3 never acts on a PII-classified resource, whatever the tool"
    by: sre, privacy-office
  # infra.scale: production-changes/changes (allowing) vs pii-access/pii-resource-needs-clearance (denying)
  - id: conflict:5842fdb868ee
    justification: "privacy-office's clearance rule is meant to override production-changes/changes on infra.scale; an agent without clearance 3 never acts on a PII-classified resource, whatever the tool"
    by: sre, privacy-office
  # payments.refund: payments-guardrails/large-needs-approval (allowing) vs pii-access/pii-resource-needs-clearance (denying)
  - id: conflict:24de2e5d051d
    justification: "privacy-office's clearance rule is meant to override payments-guardrails/large-needs-approval on payments.refund; an agent without clearance 3 never acts on a PII-classified resource, whatever the tool"
    by: finance-risk, privacy-office
  # payments.refund: payments-guardrails/small-ok (allowing) vs pii-access/pii-resource-needs-clearance (denying)
  - id: conflict:b4b392b09bfc
    justification: "privacy-office's clearance rule is meant to override payments-guardrails/small-ok on payments.refund; an agent without clearance 3 never acts on a PII-classified resource, whatever the tool"
    by: finance-risk, privacy-office
  # payments.transfer: payments-guardrails/large-needs-approval (allowing) vs pii-access/pii-resource-needs-clearance (denying)
  - id: conflict:590ccc64a967
    justification: "privacy-office's clearance rule is meant to override payments-guardrails/large-needs-approval on payments.transfer; an agent without clearance 3 never acts on a PII-classified resource, whatever the tool"
    by: finance-risk, privacy-office
  # payments.transfer: payments-guardrails/small-ok (allowing) vs pii-access/pii-resource-needs-clearance (denying)
  - id: conflict:9bd30a26a8aa
    justification: "privacy-office's clearance rule is meant to override payments-guardrails/small-ok on payments.transfer; an agent without clearance 3 never acts on a PII-classified resource, whatever the tool"
    by: finance-risk, privacy-office
