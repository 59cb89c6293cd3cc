"""The audit trail: the hash chain over ``agent.decisions``, signed Merkle checkpoints,
verification, inclusion proofs, and the query index (docs/audit.md)."""
