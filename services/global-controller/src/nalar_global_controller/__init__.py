"""Nalar global controller: folds telemetry into a policy snapshot in KV, every interval."""
