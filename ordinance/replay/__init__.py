"""Replay and forensics: the historical log run through the processors' own code.

- ``source``: where records come from — a live log (read only, never written) or an
  exported Avro container file, so an auditor can replay without the cluster.
- ``bundles``: bundle contents and the policy lifecycle from ``policy.changes`` /
  ``policy.active``; the rollout in force at an event time.
- ``verify``: the enforcer's fold and ``decide`` re-run over ``agent.decisions``; every
  recorded decision that the log does not reproduce is a finding.
- ``whatif``: the recorded actions, with the recorded window state, under a candidate.
"""
