"""The desk: where people and the bank's systems act on cases, as who they are (API, identities, approvals)."""
