"""Global controller settings (`NALAR_GC_...`)."""

import os
import socket

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from nalar_global_controller.policies import DEFAULT_POLICIES


class GlobalControllerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NALAR_GC_", extra="ignore")

    interval_s: float = 0.5
    policies: str = Field(
        default=",".join(DEFAULT_POLICIES),
        description="Policies run in order: comma-separated module:Class, or a JSON list of "
                    'those and {"class": "module:Class", "params": {...}}; empty = none')
    controller_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    lease_ttl_s: float = 3.0
    telemetry_stale_s: float = 3.0
    refresh_s: float = 5.0
    action_ttl_s: float = Field(default=3.0, description="How long a one-shot action "
                                "(migrate, provision, release) stays in snapshots")
