"""Authentication at the gateway, on a real stack that requires it: API keys (created and
revoked with `nalar keys`, hashed at rest) and JWT bearer tokens; identity never comes from
the request body."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jwt
import pytest
import redis
from e2e_stack import (
    BASIC_APP,
    OPEN_POLICY,
    StackHandle,
    live_config,
    start_stack,
    stop_stack,
)
from nalar_common.testing import wait_until_sync

pytestmark = pytest.mark.e2e

SECRET = "test-jwt-secret-0123456789abcdef0123"
ISSUER, AUDIENCE = "https://idp.test", "nalar"
BODY = {"input": {"count": 2, "label": "auth"}}


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("authz") / "policy.yaml"
    path.write_text(OPEN_POLICY)  # services refuse to start without a policy
    return path


@pytest.fixture(scope="module")
def secured(nats_url: str, redis_url: str, policy_path: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    log = tmp_path_factory.mktemp("auth") / "nalar-up.log"
    handle = start_stack(BASIC_APP, nats_url, redis_url, log, nodes=1, extra_env={
        "NALAR_AUTH_ANONYMOUS": "", "NALAR_AUTH_JWT_KEY": SECRET,
        "NALAR_AUTH_JWT_ISSUER": ISSUER, "NALAR_AUTH_JWT_AUDIENCE": AUDIENCE,
        "NALAR_AUTH_POLICY_FILE": str(policy_path)})
    yield handle
    stop_stack(handle)


@pytest.fixture
def set_policy(policy_path: Path) -> Iterator[Callable[[str], None]]:
    """Write the stack's policy file; its services use it from the next request on."""
    with live_config(policy_path, OPEN_POLICY) as write:
        yield write


def keys(stack: StackHandle, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nalar", "keys", *args, "--redis-url",
                           stack.redis_url, "--prefix", stack.prefix],
                          capture_output=True, text=True, timeout=60)


def run(stack: StackHandle, headers: dict[str, str], body: object = None) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/workflows/typed/runs", params={"wait": 30},
                      json=BODY if body is None else body, headers=headers, timeout=60)


def token(**claims: object) -> str:
    base = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 60,
            "roles": ["analyst"], "tenant": "acme"}
    return jwt.encode({**base, **claims}, SECRET, algorithm="HS256")


def test_a_caller_without_credentials_gets_401(secured: StackHandle) -> None:
    r = run(secured, {})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    assert r.headers["www-authenticate"] == "Bearer"
    for path in ("/v1/workflows", "/v1/cluster", "/v1/policy", "/v1/dlq", "/v1/runs/abc"):
        assert httpx.get(secured.url + path).status_code == 401, path
    assert httpx.get(f"{secured.url}/healthz").status_code == 200  # probes stay open
    assert run(secured, {"Authorization": "Basic dTpw"}).status_code == 401
    assert run(secured, {"X-API-Key": "nk_aaaaaaaaaaaa_" + "x" * 43}).status_code == 401


def test_api_keys_are_created_listed_and_revoked(secured: StackHandle) -> None:
    made = keys(secured, "create", "--name", "ci-bot", "--role", "runner", "--tenant", "acme")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    key_id = key.split("_")[1]
    # at rest: the digest only, never the key or its secret
    stored = redis.Redis.from_url(secured.redis_url).hget(f"{secured.prefix}:nalar:apikeys",
                                                          key_id)
    assert stored is not None and key.split("_", 2)[2].encode() not in stored
    for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
        r = run(secured, headers)
        assert r.status_code == 200 and r.json()["result"] == "auth:2", r.text
        assert r.json()["started_by"] == {"name": "ci-bot", "roles": ["runner"],
                                          "tenant": "acme", "via": "api_key"}
    listed = json.loads(keys(secured, "ls", "--json").stdout)
    row = next(k for k in listed if k["id"] == key_id)
    assert row["name"] == "ci-bot" and row["revoked_at"] is None and "digest" not in row
    assert keys(secured, "revoke", key_id).returncode == 0
    r = run(secured, {"Authorization": f"Bearer {key}"})
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    assert keys(secured, "revoke", "nosuchkey000").returncode == 1
    assert keys(secured, "create", "--name", "bad name!").returncode == 2
    # a wrong secret for a real id is refused like an unknown key
    assert run(secured, {"X-API-Key": f"nk_{key_id}_{'y' * 43}"}).status_code == 401


def test_jwt_bearer_tokens(secured: StackHandle) -> None:
    r = run(secured, {"Authorization": f"Bearer {token()}"})
    assert r.status_code == 200, r.text
    assert r.json()["started_by"] == {"name": "alice", "roles": ["analyst"], "tenant": "acme",
                                      "via": "jwt"}
    bad = {
        "expired": token(exp=time.time() - 5),
        "wrong audience": token(aud="other"),
        "wrong issuer": token(iss="https://evil.test"),
        "wrong key": jwt.encode({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE,
                                 "exp": time.time() + 60}, "not-the-secret-0123456789abcdef-0123",
                                algorithm="HS256"),
        "no subject": jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 60},
                                 SECRET, algorithm="HS256"),
        "unsigned": jwt.encode({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE,
                                "exp": time.time() + 60}, "", algorithm="none"),
        "roles not a list": token(roles={"admin": True}),
        "no issuer": jwt.encode({"sub": "alice", "aud": AUDIENCE, "exp": time.time() + 60,
                                 "tenant": "acme"}, SECRET, algorithm="HS256"),
        "no tenant": token(tenant=None),
        "tenant with a slash": token(tenant="acme/x"),
        "subject with a space": token(sub="alice smith"),
        "subject of 10 KB": token(sub="a" * 10_240),
    }
    for why, t in bad.items():
        r = run(secured, {"Authorization": f"Bearer {t}"})
        assert r.status_code == 401, f"{why}: {r.text}"
        assert r.json()["error"]["code"] == "unauthenticated", why
    # a refusal names the claim at fault (no default tenant is configured here)
    r = run(secured, {"Authorization": f"Bearer {token(tenant=None)}"})
    assert r.json()["error"]["details"] == {"claim": "tenant"}, r.text
    r = run(secured, {"Authorization": f"Bearer {token(sub='a' * 10_240)}"})
    assert "'sub'" in r.json()["error"]["message"] and len(r.text) < 1000


def test_a_forged_identity_in_the_body_changes_nothing(secured: StackHandle) -> None:
    key = keys(secured, "create", "--name", "mallory", "--role", "guest").stdout.strip()
    auth = {"Authorization": f"Bearer {key}"}
    forged = {**BODY, "principal": {"name": "root", "roles": ["admin"]}}
    r = run(secured, auth, forged)
    assert r.status_code == 422 and r.json()["error"]["details"]["errors"][0]["field"] == \
        "principal"
    # Ventis-style: every body field is workflow input, never identity
    r = httpx.post(f"{secured.url}/typed/run", json={"count": 1, "label": "v",
                                                     "user": "root"}, headers=auth)
    assert r.status_code in (202, 422)
    ok = run(secured, auth)
    assert ok.json()["started_by"]["name"] == "mallory"
    view = httpx.get(f"{secured.url}/v1/runs/{ok.json()['run_id']}", headers=auth).json()
    assert view["started_by"]["roles"] == ["guest"]


def test_dev_key_file_is_read_by_the_nalar_command(secured: StackHandle,
                                                   tmp_path: Path) -> None:
    key = keys(secured, "create", "--name", "dev2", "--role", "admin").stdout.strip()
    (tmp_path / ".nalar").mkdir()
    (tmp_path / ".nalar" / "api-key").write_text(key + "\n")
    env = {"NALAR_GATEWAY_URL": secured.url, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "nalar", "run", str(BASIC_APP), "typed",
                          json.dumps(BODY), "--url", secured.url], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["started_by"]["name"] == "dev2"
    cluster = subprocess.run([sys.executable, "-m", "nalar", "cluster", "--url", secured.url],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert cluster.returncode == 0 and "n1" in cluster.stdout
    # without the file: refused
    out = subprocess.run([sys.executable, "-m", "nalar", "cluster", "--url", secured.url],
                         cwd=tmp_path / ".nalar", env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "unauthenticated" in out.stdout


POLICY = """
rules:
  - match: {role: admin}
    access: all
  - match: {role: analyst, tenant: acme}
    workflows: [typed, echo, aecho]
    agents: [Echo.echo]
  - match: {origin: ceo}          # a token claim, as in a Ventis file
    access: all
  - match: {}
    access: [typed]
"""


def test_rules_allow_and_deny_at_the_gateway_and_at_agent_calls(
        secured: StackHandle, set_policy: Callable[[str], None]) -> None:
    set_policy(POLICY)
    analyst = {"Authorization": f"Bearer {token(roles=['analyst'], tenant='acme')}"}
    other_tenant = {"Authorization": f"Bearer {token(roles=['analyst'], tenant='globex')}"}
    ceo = {"Authorization": f"Bearer {token(roles=[], origin='ceo')}"}

    def start(headers: dict[str, str], workflow: str, body: object) -> httpx.Response:
        return httpx.post(f"{secured.url}/v1/workflows/{workflow}/runs", params={"wait": 30},
                          json=body, headers=headers, timeout=60)

    # workflows, at the gateway: 403 with the rule that decided, nothing started
    assert start(analyst, "typed", BODY).status_code == 200
    denied = start(analyst, "chain", {"input": {"a": 1, "b": 2}})
    assert denied.status_code == 403, denied.text
    err = denied.json()["error"]
    assert err["code"] == "permission_denied" and err["details"]["rule"] == "rule 2"
    assert start(other_tenant, "typed", BODY).status_code == 200  # the default rule
    assert start(other_tenant, "echo", {"input": {"value": 1}}).status_code == 403
    assert start(ceo, "chain", {"input": {"a": 1, "b": 2}}).json()["status"] == "succeeded"
    # agent calls, at the local controller, with the run's principal: Echo.echo is granted,
    # Echo.aecho is not; the run fails with a typed error, never a result string
    assert start(analyst, "echo", {"input": {"value": "hi"}}).json()["result"] == "hi"
    failed = start(analyst, "aecho", {"input": {"value": "hi"}}).json()
    assert failed["status"] == "failed", failed
    assert failed["error"]["code"] == "permission_denied", failed
    assert "Echo.aecho" in failed["error"]["message"] and "result" not in failed
    # the Ventis alias is checked too
    r = httpx.post(f"{secured.url}/chain/run", json={"a": 1, "b": 1}, headers=other_tenant)
    assert r.status_code == 403


def test_policies_reload_without_a_restart(secured: StackHandle,
                                           set_policy: Callable[[str], None]) -> None:
    guest = {"Authorization": f"Bearer {token(roles=[])}"}
    set_policy("rules:\n  - match: {}\n    access: [typed]\n")
    assert run(secured, guest).status_code == 200
    set_policy("rules:\n  - match: {}\n    access: [echo]\n")
    assert run(secured, guest).status_code == 403
    set_policy("rules:\n  - match: {}\n    acces: [typed]\n")  # a bad edit: rules kept
    assert run(secured, guest).status_code == 403
    set_policy("rules:\n  - match: {}\n    access: all\n")
    assert run(secured, guest).status_code == 200


def test_a_tenant_sees_only_its_own_runs_and_sessions(secured: StackHandle) -> None:
    acme = {"X-API-Key": keys(secured, "create", "--name", "a1", "--role", "runner",
                              "--tenant", "acme").stdout.strip()}
    zeta = {"X-API-Key": keys(secured, "create", "--name", "z1", "--role", "runner",
                              "--tenant", "zeta").stdout.strip()}
    admin = {"X-API-Key": (secured.log.parent / "api-key").read_text().strip()}
    r = run(secured, acme)
    assert r.status_code == 200, r.text
    run_id, session = r.json()["run_id"], r.json()["session_id"]
    base = f"{secured.url}/v1/runs/{run_id}"
    for who, code in ((acme, 200), (admin, 200), (zeta, 404)):
        for path in ("", "/futures", "/journal", "/events?follow=false"):
            assert httpx.get(base + path, headers=who, timeout=30).status_code == code, path
        got = httpx.get(f"{secured.url}/v1/sessions/{session}", headers=who, timeout=30)
        assert got.status_code == code
    for path, body in (("/cancel", None), ("/replay", {}), ("/signals/resume", {"value": 1})):
        r = httpx.post(base + path, json=body, headers=zeta, timeout=30)
        assert r.status_code == 404 and "does not exist" in r.json()["error"]["message"], path
    # another tenant cannot join the session (and reach its state) either
    r = run(secured, zeta, {"input": BODY["input"], "session_id": session})
    assert r.status_code == 404, r.text
    assert run(secured, acme, {"input": BODY["input"], "session_id": session}).status_code == 200
    # idempotency keys are per tenant: the same key starts each tenant's own run
    keyed = {"input": BODY["input"], "idempotency_key": "order-123"}
    mine, theirs = run(secured, acme, keyed).json(), run(secured, zeta, keyed).json()
    assert mine["run_id"] != theirs["run_id"] and theirs["started_by"]["tenant"] == "zeta"
    assert run(secured, acme, keyed).json()["run_id"] == mine["run_id"]
    # operator endpoints and resuming paused runs need their roles
    for method, path in (("GET", "/v1/dlq"), ("GET", "/v1/dlq/1"), ("POST", "/v1/dlq/1/retry"),
                         ("PUT", "/v1/policy")):
        r = httpx.request(method, secured.url + path, headers=acme, timeout=30,
                          json={"policies": ["x:Y"]} if method == "PUT" else None)
        assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied", path
    assert httpx.get(f"{secured.url}/v1/dlq", headers=admin, timeout=30).status_code == 200
    r = httpx.post(f"{base}/signals/resume", json={"value": None}, headers=acme, timeout=30)
    assert r.status_code == 403 and "approver" in r.json()["error"]["message"]


def test_a_bad_emptied_or_deleted_policy_keeps_the_rules_in_force(
        secured: StackHandle, set_policy: Callable[[str], None], policy_path: Path) -> None:
    guest = {"Authorization": f"Bearer {token(roles=[])}"}
    set_policy("rules:\n  - match: {}\n    access: [echo]\n")
    assert run(secured, guest).status_code == 403
    for bad in ("", "rules: []\n", "rules:\n  - match: {role: adm"):  # emptied, none, cut off
        set_policy(bad)
        assert run(secured, guest).status_code == 403, bad  # never "allow everything"
    policy_path.unlink()
    assert run(secured, guest).status_code == 403
    wait_until_sync(lambda: "authz.policy.removed" in secured.log.read_text(),
                    what="the gateway to log the policy file's removal")
    assert run(secured, guest).status_code == 403  # the file noticed gone: still denied


def test_who_may_cancel_signal_and_replay_is_set_in_the_policy(
        secured: StackHandle, set_policy: Callable[[str], None]) -> None:
    set_policy("rules:\n  - {match: {}, access: all}\n"
               "runs:\n  cancel: [operator]\n  signal: [approver]\n  replay: [operator]\n")
    runner = {"Authorization": f"Bearer {token(roles=['runner'], tenant='acme')}"}
    operator = {"Authorization": f"Bearer {token(roles=['operator'], tenant='acme')}"}
    approver = {"Authorization": f"Bearer {token(roles=['approver'], tenant='acme')}"}
    started = httpx.post(f"{secured.url}/v1/workflows/approve/runs", json={
        "input": {"amount": 1}}, headers=runner, timeout=30).json()
    base = f"{secured.url}/v1/runs/{started['run_id']}"

    def view() -> dict[str, object]:
        return httpx.get(base, headers=runner, timeout=30).json()  # type: ignore[no-any-return]

    wait_until_sync(view, until=lambda v: v["status"] == "waiting",
                    what="the run waiting for its signal")
    for path, body in (("/cancel", None), ("/signals/approval", {"value": "yes"})):
        r = httpx.post(base + path, json=body, headers=runner, timeout=30)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"]["details"]["action"] in ("cancel", "signal")
    r = httpx.post(base + "/signals/approval", json={"value": "yes"}, headers=approver,
                   timeout=30)
    assert r.status_code == 202, r.text
    wait_until_sync(view, until=lambda v: v["status"] == "succeeded",
                    what="the signalled run to finish")
    assert httpx.post(base + "/replay", json={}, headers=runner, timeout=30).status_code == 403
    assert httpx.post(base + "/replay", json={}, headers=operator,
                      timeout=30).status_code == 202


def test_non_admins_see_no_tracebacks_and_no_session_ids(secured: StackHandle) -> None:
    user = {"X-API-Key": keys(secured, "create", "--name", "u1", "--role", "runner",
                              "--tenant", "acme").stdout.strip()}
    admin = {"X-API-Key": (secured.log.parent / "api-key").read_text().strip()}
    failed = httpx.post(f"{secured.url}/v1/workflows/fail/runs", params={"wait": 30},
                        json={"input": {"message": "boom"}}, headers=user, timeout=60).json()
    assert failed["status"] == "failed"
    base = f"{secured.url}/v1/runs/{failed['run_id']}"
    for path in ("", "/futures", "/journal", "/events?follow=false"):
        mine = httpx.get(base + path, headers=user, timeout=30).text
        assert "Traceback" not in mine and ".py" not in mine, path
    assert "Traceback" in httpx.get(base + "/futures", headers=admin, timeout=30).text
    # session ids in routing decisions: admins only
    for path in ("/v1/cluster", "/v1/policy"):
        body = httpx.get(secured.url + path, headers=user, timeout=30).text
        assert failed["session_id"] not in body, path


def test_tenant_and_idempotency_key_never_collide(secured: StackHandle) -> None:
    acme = {"X-API-Key": keys(secured, "create", "--name", "a2", "--role", "runner",
                              "--tenant", "acme").stdout.strip()}
    acme_x = {"X-API-Key": keys(secured, "create", "--name", "a3", "--role", "runner",
                                "--tenant", "acme:x").stdout.strip()}
    first = run(secured, acme, {"input": BODY["input"], "idempotency_key": "x:y"}).json()
    other = run(secured, acme_x, {"input": BODY["input"], "idempotency_key": "y"}).json()
    assert first["run_id"] != other["run_id"], (first, other)
    assert other["started_by"]["tenant"] == "acme:x"
    # a JWT tenant such as `acme/x` is refused outright
    bad = run(secured, {"Authorization": f"Bearer {token(tenant='acme/x')}"})
    assert bad.status_code == 401
