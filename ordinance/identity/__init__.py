"""Verified identities: the registry of principals, signed records, the trust root.

Nobody is who they merely say they are: roles, approvers and publishers come from the
registry and from signatures checked against it, never from the record that claims them
(docs/identity.md)."""
