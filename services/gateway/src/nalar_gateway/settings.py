"""Gateway settings (`NALAR_GATEWAY_...`)."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NALAR_GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    app: str = Field(default="app", description="App directory whose workflows are served")
    max_body_bytes: int = Field(default=1_048_576, description="Largest request body; a "
                                "run's input must also fit one NATS message (the server's "
                                "max_payload, less room for headers), else 413")
    max_json_depth: int = Field(default=64, ge=1, le=500, description="How deeply a request "
                                "body may nest (objects and arrays); deeper: 422")
    max_wait_s: float = 300.0
    idempotency_ttl_s: int = 86_400
    run_timeout_s: float = Field(default=7 * 24 * 3600, description="Deadline of a run that "
                                 "names none (its `timeout_s`), in seconds")
    sse_max_per_principal: int = Field(default=8, ge=1, description="Live event streams "
                                       "(`GET /v1/runs/{id}/events`) one caller may hold "
                                       "open at once; more: 429 `too_many_streams`")
    sse_max_total: int = Field(default=256, ge=1, description="Live event streams the "
                               "gateway holds open at once, all callers together; more: 429")
    sse_ping_s: float = Field(default=15.0, gt=0, description="While following, an SSE "
                              "comment (`: ping`) after this many seconds without an event, "
                              "so proxies keep the stream and dead clients are found")
    shutdown_grace_s: int = Field(default=5, ge=1, description="On SIGTERM, seconds that open "
                                  "requests (event streams, `?wait`) may go on before they "
                                  "are cut")
