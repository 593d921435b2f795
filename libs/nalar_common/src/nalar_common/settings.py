"""Settings shared by every process, one pydantic-settings class per concern (`NALAR_<CONCERN>_`).

Each process builds its settings once in `main()` and passes them down; nothing reads the
environment at import time.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class NatsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NALAR_NATS_", extra="ignore")

    url: str = "nats://127.0.0.1:4222"
    prefix: str = Field(default="", description="Name prefix for subjects, streams and buckets")
    user: str | None = None
    password: str | None = None
    futures_max_age_s: float = 7 * 24 * 3600
    runs_max_age_s: float = 7 * 24 * 3600
    instance_ttl_s: float = 5.0
    call_ack_wait_s: float = 30.0
    dlq_max_age_s: float = 30 * 24 * 3600
    dlq_max_msgs: int = 100_000


class RedisSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NALAR_REDIS_", extra="ignore")

    url: str = "redis://127.0.0.1:6379/0"


class LogSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NALAR_LOG_", extra="ignore")

    level: str = "INFO"
    json_output: bool | None = Field(default=None, alias="NALAR_LOG_JSON",
                                     description="JSON lines; default: when not a terminal")


class NodeSettings(BaseSettings):
    """Where a process sits in the cluster: its node (one local controller per node)."""

    model_config = SettingsConfigDict(env_prefix="NALAR_NODE_", extra="ignore")

    name: str = "n1"


class AuthSettings(BaseSettings):
    """Who may call (the gateway) and what they may run (the gateway and local controllers)."""

    model_config = SettingsConfigDict(env_prefix="NALAR_AUTH_", extra="ignore")

    jwt_issuer: str | None = Field(default=None, description="`iss` a bearer JWT must carry")
    jwt_audience: str | None = Field(default=None, description="`aud` a bearer JWT must carry")
    jwt_key: str | None = Field(default=None, description="Key that verifies bearer JWTs: a "
                                "shared secret (HS256/384/512) or a PEM public key "
                                "(RS*/ES*/PS*); unset: JWTs are not accepted")
    jwt_roles_claim: str = "roles"
    jwt_tenant_claim: str = "tenant"
    anonymous: str | None = Field(default=None, description="JSON principal (`name`, "
                                  "`roles`, `tenant`) given to callers without credentials; "
                                  "unset (the default): they get 401. For tests and "
                                  "single-user machines only")
    policy_file: str = Field(default="config/policy.yaml", description="Authorization rules; "
                             "a missing file allows everything")
    resume_roles: str = Field(default="admin,approver", description="Roles that may resume "
                              "a run a guardrail paused (comma separated)")


class GuardrailSettings(BaseSettings):
    """What runs may spend (local controllers enforce it; docs/guardrails.md)."""

    model_config = SettingsConfigDict(env_prefix="NALAR_GUARDRAILS_", extra="ignore")

    file: str = Field(default="config/guardrails.yaml", description="Limits on tokens, "
                      "cost, LLM calls, iterations and wall time; a missing file sets none")
