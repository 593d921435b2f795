"""Shared foundation of every Nalar process: wire format, names, settings, errors, bus and state."""

from nalar_common.envelope import Envelope, FutureRef
from nalar_common.errors import NalarError, RetryableError, TerminalError
from nalar_common.subjects import Headers, Names

__all__ = [
    "Envelope",
    "FutureRef",
    "Headers",
    "NalarError",
    "Names",
    "RetryableError",
    "TerminalError",
]
