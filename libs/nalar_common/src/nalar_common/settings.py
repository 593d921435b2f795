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
    calls_max_bytes: int = Field(default=1 << 30, description="`max_bytes` of NALAR_CALLS "
                                 "(-1: no limit). Discard policy `new`: past it a publish "
                                 "fails loudly, nothing stored is deleted")
    runs_max_bytes: int = Field(default=4 << 30, description="`max_bytes` of the journal "
                                "NALAR_RUNS (-1: no limit); discard policy `new`, as above")
    streams_high_water: float = Field(default=0.9, gt=0, le=1, description="Fill of "
                                      "NALAR_CALLS or NALAR_RUNS (of its max_bytes) above "
                                      "which gateways refuse new runs with 503, leaving the "
                                      "rest to the runs they accepted")
    value_ref_bytes: int = Field(default=1 << 20, ge=1024, description="An argument or "
                                 "result larger than this (packed) is kept in the values "
                                 "bucket (NATS Object Store) and travels by reference; never "
                                 "more than a message holds (the server's max_payload less "
                                 "64 KiB)")
    pins_ttl_s: float | None = Field(default=None, description="TTL of a session's pin to "
                                     "an instance of a stateful agent (KV `nalar_pins`), "
                                     "from when it was written; unset: `runs_max_age_s`; "
                                     "0: pins never expire")


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

    jwt_issuer: str | None = Field(default=None, description="`iss` a bearer JWT must "
                                   "carry; required when `jwt_key` or `jwt_jwks_url` is set")
    jwt_audience: str | None = Field(default=None, description="`aud` a bearer JWT must "
                                     "carry; required when `jwt_key` or `jwt_jwks_url` is set")
    jwt_key: str | None = Field(default=None, description="Key that verifies bearer JWTs: a "
                                "shared secret (HS256/384/512) or a PEM public key "
                                "(RS*/ES*/PS*/EdDSA); unset: JWTs are not accepted")
    jwt_jwks_url: str | None = Field(default=None, description="A JWKS URL whose keys "
                                     "verify bearer JWTs (key rotation; the token's `kid` "
                                     "picks the key); instead of, or beside, `jwt_key`")
    jwt_roles_claim: str = "roles"
    jwt_tenant_claim: str = "tenant"
    jwt_default_tenant: str | None = Field(default=None, description="Tenant of a token "
                                           "without the tenant claim; unset: such a token "
                                           "is refused")
    anonymous: str | None = Field(default=None, description="JSON principal (`name`, "
                                  "`roles`, `tenant`) given to callers without credentials; "
                                  "unset (the default): they get 401. For tests and "
                                  "single-user machines only")
    policy: str = Field(default="file", description="`file`: the rules in `policy_file` "
                        "(a missing, empty or invalid file stops the service at start); "
                        "`none`: authorization off, every principal may run everything "
                        "(dev and test stacks only)")
    policy_file: str = Field(default="config/policy.yaml", description="Authorization rules "
                             "(docs/security.md)")
    resume_roles: str = Field(default="admin,approver", description="Roles that may resume "
                              "a run a guardrail paused (comma separated)")


class GuardrailSettings(BaseSettings):
    """What runs may spend (local controllers enforce it; docs/guardrails.md)."""

    model_config = SettingsConfigDict(env_prefix="NALAR_GUARDRAILS_", extra="ignore")

    mode: str = Field(default="file", alias="NALAR_GUARDRAILS", description="`file`: the "
                      "limits in `file` (a missing, empty or invalid file stops the service "
                      "at start); `none`: no limits (dev and test stacks only)")
    file: str = Field(default="config/guardrails.yaml", description="Limits on tokens, "
                      "cost, LLM calls, iterations and wall time (docs/guardrails.md)")


class PolicyClassSettings(BaseSettings):
    """Which control policies `NALAR_GC_POLICIES` and `PUT /v1/policy` may name: the built-in
    ones, those registered under the `nalar.policies` entry point group, and these."""

    model_config = SettingsConfigDict(env_prefix="NALAR_POLICIES_", extra="ignore")

    allow: str = Field(default="", description="More policy classes that may be used: "
                       "comma-separated `module:Class`")
