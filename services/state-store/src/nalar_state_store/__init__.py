"""Nalar state store: the session registry, leases and state inspection, in Redis."""
