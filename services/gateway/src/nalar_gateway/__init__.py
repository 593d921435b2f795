"""Nalar gateway: the HTTP API (FastAPI) that admits runs and shows their futures and events."""
