"""Nalar agent host: runs agent methods and workflow drivers of an app, publishes their results."""
