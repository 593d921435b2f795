"""Gateway settings (`NALAR_GATEWAY_...`)."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NALAR_GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    app: str = Field(default="app", description="App directory whose workflows are served")
    max_body_bytes: int = 1_048_576
    max_wait_s: float = 300.0
    idempotency_ttl_s: int = 86_400
    run_timeout_s: float = Field(default=7 * 24 * 3600, description="Deadline of a run that "
                                 "names none (its `timeout_s`), in seconds")
