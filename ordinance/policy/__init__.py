"""The policy language: parse -> validate against a schema -> compile -> evaluate."""
