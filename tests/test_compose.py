"""docker-compose.yml against the code: entry points exist, every NALAR_* variable is a real
settings field, the stack has the shape `nalar up` starts. Needs no Docker engine.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from nalar.engines import LLMSettings
from nalar_agent_host.settings import AgentHostSettings
from nalar_common.settings import (
    AuthSettings,
    GuardrailSettings,
    LogSettings,
    NatsSettings,
    NodeSettings,
    RedisSettings,
)
from nalar_gateway.settings import GatewaySettings
from nalar_global_controller.settings import GlobalControllerSettings
from nalar_local_controller.settings import LocalControllerSettings
from nalar_state_store.settings import StateStoreSettings
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
IMAGE_ROOT = Path("/app")  # where deploy/Dockerfile puts the repository

SETTINGS: tuple[type[BaseSettings], ...] = (
    NatsSettings, RedisSettings, LogSettings, NodeSettings, GatewaySettings,
    GlobalControllerSettings, LocalControllerSettings, AgentHostSettings, StateStoreSettings,
    LLMSettings, AuthSettings, GuardrailSettings,
)


def env_names(cls: type[BaseSettings]) -> set[str]:
    """The variables pydantic-settings reads for `cls`: an alias replaces prefix + field name."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias or field.alias
        if alias is None or cls.model_config.get("populate_by_name"):
            names.add(f"{prefix}{field_name}".upper())
        if isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names.update(c.upper() for c in alias.choices if isinstance(c, str))
    return names


VALID_ENV = set().union(*(env_names(cls) for cls in SETTINGS))


def load_services(path: Path = COMPOSE) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    services = doc["services"]
    assert isinstance(services, dict) and services
    return services


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the ["KEY=value", ...] form
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def module_of(service: dict[str, Any]) -> str | None:
    """`nalar_x` for a service whose command is `python -m nalar_x`, else None."""
    cmd = service.get("command")
    if cmd is None:
        return None
    argv = shlex.split(cmd) if isinstance(cmd, str) else [str(a) for a in cmd]
    if len(argv) >= 3 and Path(argv[0]).name.startswith("python") and argv[1] == "-m":
        return argv[2] if argv[2].startswith("nalar_") else None
    return None


def image_of(service: dict[str, Any]) -> str:
    return str(service.get("image", "")).split(":")[0].rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return load_services()


def test_env_names_honour_aliases() -> None:
    assert "NALAR_LOG_JSON" in VALID_ENV
    assert "NALAR_LOG_JSON_OUTPUT" not in VALID_ENV
    assert {"NALAR_NATS_URL", "NALAR_NODE_NAME", "NALAR_GC_INTERVAL_S",
            "NALAR_AGENT_HOST_HOST_ID"} <= VALID_ENV


def test_entry_points_exist(services: dict[str, dict[str, Any]]) -> None:
    modules = {name: module_of(svc) for name, svc in services.items()}
    assert any(modules.values()), "no service runs `python -m nalar_<name>`"
    for name, module in modules.items():
        if module is None:
            continue
        assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"
        assert importlib.util.find_spec(f"{module}.__main__") is not None, (
            f"{name}: {module} has no __main__")


def test_env_vars_are_settings_fields(services: dict[str, dict[str, Any]]) -> None:
    unknown = {f"{name}: {key}" for name, svc in services.items()
               for key in environment(svc) if key.startswith("NALAR_") and key not in VALID_ENV}
    assert not unknown, f"not a field of any settings class: {sorted(unknown)}"


def test_stack_shape(services: dict[str, dict[str, Any]]) -> None:
    images = {image_of(svc) for svc in services.values()}
    assert "nats" in images
    assert images & {"valkey", "redis"}
    by_module: dict[str, list[dict[str, Any]]] = {}
    for svc in services.values():
        if (module := module_of(svc)) is not None:
            by_module.setdefault(module, []).append(svc)
    for module in ("nalar_gateway", "nalar_global_controller", "nalar_state_store"):
        assert module in by_module, f"no service runs {module}"

    def nodes(module: str) -> list[str]:
        return [environment(svc).get("NALAR_NODE_NAME", "") for svc in by_module.get(module, [])]

    lc_nodes = nodes("nalar_local_controller")
    assert "" not in lc_nodes, "a local controller without NALAR_NODE_NAME"
    assert len(lc_nodes) == len(set(lc_nodes)), f"two local controllers share a node: {lc_nodes}"
    paired = set(lc_nodes) & set(nodes("nalar_agent_host"))
    assert len(paired) >= 2, f"need two nodes with a controller and a host, got {sorted(paired)}"


def test_gateway_reachable_and_apps_shipped(services: dict[str, dict[str, Any]]) -> None:
    gateways = [svc for svc in services.values() if module_of(svc) == "nalar_gateway"]
    for gw in gateways:
        env = environment(gw)
        assert env.get("NALAR_GATEWAY_HOST") == "0.0.0.0", "gateway only on container loopback"
        assert gw.get("ports"), "gateway port not published"
    for name, svc in services.items():
        for key in ("NALAR_GATEWAY_APP", "NALAR_AGENT_HOST_APP"):
            if app := environment(svc).get(key):
                assert Path(app).is_relative_to(IMAGE_ROOT), f"{name}: {key}={app} not in image"
                in_repo = ROOT / Path(app).relative_to(IMAGE_ROOT)
                assert in_repo.is_dir(), f"{name}: {key}={app} is not {in_repo} in the image"


def test_build_dockerfiles_exist(services: dict[str, dict[str, Any]]) -> None:
    builds = [svc["build"] for svc in services.values() if "build" in svc]
    assert builds, "no service builds the Nalar image"
    for build in builds:
        context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile",
                                                                          "Dockerfile")
        assert (context / dockerfile).is_file(), f"missing {context / dockerfile}"


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose is not on PATH (install it to validate the file)")
def test_docker_compose_config_accepts_file() -> None:
    env = {"PATH": os.environ["PATH"], "NALAR_NATS_PASSWORD": "n" * 24,
           "NALAR_REDIS_PASSWORD": "r" * 24}
    proc = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    # without the passwords the stack does not start at all
    bare = {"PATH": os.environ["PATH"]}
    proc = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False, env=bare)
    assert proc.returncode != 0 and "NALAR_NATS_PASSWORD" in proc.stderr + proc.stdout


def test_servers_require_credentials_and_callers_keys(
        services: dict[str, dict[str, Any]]) -> None:
    assert "--pass" in services["nats"]["command"]
    assert "--requirepass" in services["redis"]["command"]
    for name, svc in services.items():
        env = environment(svc)
        if module_of(svc) is None:
            continue
        assert env.get("NALAR_NATS_USER") and env.get("NALAR_NATS_PASSWORD"), name
        if "NALAR_REDIS_URL" in env:
            assert env["NALAR_REDIS_URL"].startswith("redis://:${NALAR_REDIS_PASSWORD"), name
        assert "NALAR_AUTH_ANONYMOUS" not in env, f"{name}: callers without a key let in"
        if module_of(svc) in ("nalar_gateway", "nalar_local_controller"):
            policy = env.get("NALAR_AUTH_POLICY_FILE", "")
            assert (ROOT / Path(policy).relative_to(IMAGE_ROOT)).is_file(), (name, policy)
        if module_of(svc) == "nalar_local_controller":  # guardrails: the file and the counts
            limits = env.get("NALAR_GUARDRAILS_FILE", "")
            assert (ROOT / Path(limits).relative_to(IMAGE_ROOT)).is_file(), (name, limits)
            assert "NALAR_REDIS_URL" in env, name
