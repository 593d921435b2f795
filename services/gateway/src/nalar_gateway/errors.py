"""Errors of the gateway's own making, beside the shared tree in `nalar_common.errors`.

    ValueError
    └── nalar_common.configfile.ConfigError   a config file a service cannot start with
        └── ConfigError    settings the gateway cannot start with (`python -m nalar_gateway`
                           exits 2)
"""

from __future__ import annotations

from nalar_common.configfile import ConfigError as ConfigFileError


class ConfigError(ConfigFileError):
    """A setting is missing or invalid; the message names it (`NALAR_AUTH_JWT_ISSUER`, ...).

    Raised while the gateway is built, before it serves: a misconfigured gateway stops at
    start rather than accepting tokens it cannot check properly.
    """

    def __init__(self, message: str, *, settings: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.settings = settings  # the environment variables at fault
