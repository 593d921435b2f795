"""Local controller settings (`NALAR_LC_...`)."""

from pydantic_settings import BaseSettings, SettingsConfigDict


class LocalControllerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NALAR_LC_", extra="ignore")

    telemetry_interval_s: float = 0.2
    no_instance_timeout_s: float = 30.0
    max_held: int = 50_000
    housekeeping_interval_s: float = 1.0
    max_call_bytes: int = 1_048_576
    recheck_interval_s: float = 5.0
