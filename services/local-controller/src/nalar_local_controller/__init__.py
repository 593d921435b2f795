"""Nalar local controller: one per node; admits, queues, routes and dispatches calls."""
