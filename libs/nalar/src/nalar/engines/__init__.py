"""LLM engines behind `nalar.llm`: simulated (benchmarks, tests), OpenAI-compatible (vLLM or any
provider). An agent host builds one from `LLMSettings` and every agent on it shares it."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from nalar.engines.base import (
    Completion,
    Engine,
    EngineOverloaded,
    EngineUnavailable,
    LLMRequest,
    PromptTooLong,
)
from nalar.engines.simulated import SimulatedEngine, SimulatedParams


class LLMSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NALAR_LLM_", extra="ignore")

    backend: Literal["simulated", "openai"] = "simulated"
    base_url: str = Field(default="", description="OpenAI-compatible API root(s), comma "
                          "separated: a session keeps to one replica (its KV cache)")
    api_key: str = ""
    model: str = ""
    timeout_s: float = 120.0
    metrics: bool = Field(default=False, description="scrape the engines' Prometheus /metrics "
                          "(vLLM) for telemetry")
    time_scale: float = 1.0
    seed: int = 0
    sim_params: dict[str, Any] = Field(default_factory=dict, description="Overrides of the "
                                       "simulated engine's parameters (`SimulatedParams`), "
                                       "e.g. {\"max_batch\": 8, \"overload\": \"fail\"}")

    @field_validator("sim_params")
    @classmethod
    def _known_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        known = {f.name for f in fields(SimulatedParams)} - {"time_scale", "seed"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown simulated engine parameter(s) {unknown}; "
                             f"known: {sorted(known)}")
        return value


def build_engine(settings: LLMSettings) -> Engine:
    if settings.backend == "openai":
        from nalar.engines.openai import OpenAIEngine

        if not settings.base_url:
            raise ValueError("NALAR_LLM_BASE_URL is required with NALAR_LLM_BACKEND=openai")
        return OpenAIEngine(base_urls=[u.strip() for u in settings.base_url.split(",")
                                       if u.strip()],
                            api_key=settings.api_key, model=settings.model,
                            timeout_s=settings.timeout_s, scrape_metrics=settings.metrics)
    return SimulatedEngine(SimulatedParams(time_scale=settings.time_scale, seed=settings.seed,
                                           **settings.sim_params))


__all__ = ["Completion", "Engine", "EngineOverloaded", "EngineUnavailable", "LLMRequest",
           "LLMSettings", "PromptTooLong", "SimulatedEngine", "SimulatedParams", "build_engine"]
