"""Agent host settings (`NALAR_AGENT_HOST_...`)."""

import os
import socket

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AgentHostSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NALAR_AGENT_HOST_", extra="ignore")

    app: str = Field(default="app", description="App directory (agents/, workflows/)")
    host_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    agents: str = Field(default="", description="Comma-separated agents to host; empty = all")
    drivers: bool = True
    driver_concurrency: int = 256
    threads: int = 64
    heartbeat_s: float = 1.0
    grace_s: float = 10.0
    state_lease_ttl_ms: int = 10_000
    state_wait_s: float = 60.0
    ledger_ttl_s: int = Field(default=7 * 24 * 3600, ge=7 * 24 * 3600, description="How long "
                              "the idempotency ledger keeps a side effect's recorded result; "
                              "at least the longest run (the gateway caps `timeout_s` at 7 d)")
    ledger_claim_ttl_ms: int = Field(default=3_000, description="How long a side effect's "
                                     "claim outlives its attempt (renewed every third of it "
                                     "while it runs): a retry after a crash waits this long")
    slots: int = Field(default=0, description="Most agent instances run at once (provisioning "
                       "may add instances up to it); 0 = no limit")
    engine_startup_s: float = Field(default=0.0, description="Time a newly provisioned "
                                    "instance takes before it serves (its engine start-up)")
