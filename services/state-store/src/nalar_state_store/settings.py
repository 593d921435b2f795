"""State store settings (`NALAR_STATE_...`)."""

from pydantic_settings import BaseSettings, SettingsConfigDict


class StateStoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NALAR_STATE_", extra="ignore")

    ack_wait_s: float = 30.0
