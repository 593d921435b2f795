"""State store settings (`NALAR_STATE_...`)."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StateStoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NALAR_STATE_", extra="ignore")

    ack_wait_s: float = 30.0
    start_grace_s: float = Field(default=5.0, ge=0, description="A run whose driver has "
                                 "not started this long after its `created` event is "
                                 "started by the state store (its gateway died in between)")
    session_ttl_s: float | None = Field(default=None, description="A session, its managed "
                                        "state included, is collected this long after its "
                                        "newest run; unset: `NALAR_NATS_RUNS_MAX_AGE_S` (the "
                                        "journal's retention); 0: never")
    session_gc_interval_s: float = Field(default=30.0, gt=0, description="How often due "
                                         "sessions are collected")
