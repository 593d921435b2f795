"""Bearer JWTs at the gateway's Authenticator, with real signed tokens: issuer and audience
are required settings; the tenant claim is required unless a default tenant is configured;
`sub`, tenant and roles are held to the API-key charset; keys come from a static key or a
real JWKS server (rotation, unknown kids, the server down)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from nalar_common.auth import KeyStore, Principal
from nalar_common.errors import Unauthenticated, Unavailable
from nalar_common.settings import AuthSettings
from nalar_common.subjects import Names
from nalar_gateway.auth import Authenticator
from nalar_gateway.errors import ConfigError
from nalar_gateway.jwks import JwksKeys

SECRET = "test-jwt-secret-0123456789abcdef0123"
ISSUER, AUDIENCE = "https://idp.test", "nalar"


# -- a real JWKS endpoint ------------------------------------------------------------------

class JwksServer:
    """Serves `{"keys": self.keys}` on 127.0.0.1 and counts the fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # listening from here
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()


class RsaKey:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        public: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def sign(self, **claims: Any) -> str:
        return jwt.encode(payload(**claims), self.private, algorithm="RS256",
                          headers={"kid": self.kid})


def payload(**claims: Any) -> dict[str, Any]:
    base = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 60,
            "roles": ["analyst"], "tenant": "acme"}
    return {k: v for k, v in {**base, **claims}.items() if v is not None}


def hs(**claims: Any) -> str:
    return jwt.encode(payload(**claims), SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def key_a() -> RsaKey:
    return RsaKey("key-a")


@pytest.fixture(scope="module")
def key_b() -> RsaKey:
    return RsaKey("key-b")


@pytest.fixture
def jwks(key_a: RsaKey) -> Iterator[JwksServer]:
    server = JwksServer()
    server.keys = [key_a.jwk()]
    yield server
    server.stop()


@pytest.fixture
async def keystore(redis_url: str, names: Names) -> AsyncIterator[KeyStore]:
    client = aioredis.Redis.from_url(redis_url)
    yield KeyStore(client, names)
    await client.aclose()


def settings(**overrides: Any) -> AuthSettings:
    base: dict[str, Any] = {"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE, "jwt_key": None,
                            "jwt_jwks_url": None, "jwt_default_tenant": None,
                            "anonymous": None}
    return AuthSettings(**{**base, **overrides})


async def bearer(auth: Authenticator, token: str) -> Principal:
    return await auth.authenticate(f"Bearer {token}", None)


# -- settings that stop the gateway --------------------------------------------------------

@pytest.mark.parametrize("source", [{"jwt_key": SECRET}, {"jwt_jwks_url": "https://idp.test/k"}])
@pytest.mark.parametrize(("unset", "env"), [
    ({"jwt_issuer": None}, ("NALAR_AUTH_JWT_ISSUER",)),
    ({"jwt_audience": ""}, ("NALAR_AUTH_JWT_AUDIENCE",)),  # compose passes unset as ""
    ({"jwt_issuer": "", "jwt_audience": None},
     ("NALAR_AUTH_JWT_ISSUER", "NALAR_AUTH_JWT_AUDIENCE")),
])
def test_jwts_need_an_issuer_and_an_audience(keystore: KeyStore, source: dict[str, str],
                                             unset: dict[str, Any],
                                             env: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as caught:
        Authenticator(keystore, settings(**source, **unset))
    assert caught.value.settings == env
    assert all(name in str(caught.value) for name in env)


def test_without_a_jwt_source_no_issuer_is_needed_and_jwts_are_refused(
        keystore: KeyStore) -> None:
    auth = Authenticator(keystore, settings(jwt_issuer=None, jwt_audience=None))
    assert auth.jwt is None


async def test_a_jwt_is_refused_when_jwts_are_off(keystore: KeyStore) -> None:
    auth = Authenticator(keystore, settings(jwt_issuer=None, jwt_audience=None))
    with pytest.raises(Unauthenticated, match="NALAR_AUTH_JWT_KEY"):
        await bearer(auth, hs())


@pytest.mark.parametrize(("overrides", "env"), [
    ({"jwt_key": SECRET, "jwt_default_tenant": "acme/x"}, "NALAR_AUTH_JWT_DEFAULT_TENANT"),
    ({"jwt_jwks_url": "file:///etc/passwd"}, "NALAR_AUTH_JWT_JWKS_URL"),
    ({"jwt_jwks_url": "idp.test/keys"}, "NALAR_AUTH_JWT_JWKS_URL"),
    ({"anonymous": "{not json"}, "NALAR_AUTH_ANONYMOUS"),
    ({"anonymous": '["test"]'}, "NALAR_AUTH_ANONYMOUS"),
    ({"anonymous": '{"name": "a b", "roles": []}'}, "NALAR_AUTH_ANONYMOUS"),
    ({"anonymous": '{"name": "test", "tenant": "acme/x"}'}, "NALAR_AUTH_ANONYMOUS"),
    ({"anonymous": '{"name": "test", "roles": "admin"}'}, "NALAR_AUTH_ANONYMOUS"),
    ({"anonymous": '{"name": "test", "roles": ["ad min"]}'}, "NALAR_AUTH_ANONYMOUS"),
    ({"anonymous": '{"name": 7}'}, "NALAR_AUTH_ANONYMOUS"),
])
def test_bad_settings_stop_the_gateway(keystore: KeyStore, overrides: dict[str, Any],
                                       env: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Authenticator(keystore, settings(**overrides))
    assert caught.value.settings == (env,) and env in str(caught.value)


async def test_a_good_anonymous_principal_is_used(keystore: KeyStore) -> None:
    auth = Authenticator(keystore, settings(
        anonymous='{"name": "test", "roles": ["admin"], "tenant": "default"}'))
    assert await auth.authenticate(None, None) == Principal("test", ("admin",), "default",
                                                            "anonymous")


def test_the_process_exits_2_with_one_line_naming_the_setting() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NALAR_AUTH_JWT_")}
    env.update({"NALAR_AUTH_JWT_KEY": SECRET, "NALAR_AUTH_JWT_AUDIENCE": AUDIENCE,
                "NALAR_AUTH_POLICY": "none", "NALAR_GUARDRAILS": "none",
                "NALAR_NATS_URL": "nats://127.0.0.1:1", "NALAR_GATEWAY_PORT": "0"})
    out = subprocess.run([sys.executable, "-m", "nalar_gateway"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith(
        "nalar-gateway: refusing to start: NALAR_AUTH_JWT_ISSUER must be set")
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


# -- claims that become the principal ------------------------------------------------------

async def test_a_good_token_gives_its_principal(keystore: KeyStore) -> None:
    auth = Authenticator(keystore, settings(jwt_key=SECRET))
    who = await bearer(auth, hs(roles="analyst ops", origin="ceo"))
    assert (who.name, who.roles, who.tenant, who.via) == ("alice", ("analyst", "ops"), "acme",
                                                          "jwt")
    assert who.attrs["origin"] == "ceo" and "sub" not in who.attrs
    # API keys work beside JWTs
    key = await keystore.create("bot", ["runner"], "acme")
    assert (await bearer(auth, key)).name == "bot"


async def test_a_token_without_the_tenant_claim_is_refused(keystore: KeyStore) -> None:
    auth = Authenticator(keystore, settings(jwt_key=SECRET))
    with pytest.raises(Unauthenticated, match="'tenant'") as caught:
        await bearer(auth, hs(tenant=None))
    assert caught.value.details == {"claim": "tenant"}
    custom = Authenticator(keystore, settings(jwt_key=SECRET, jwt_tenant_claim="org"))
    with pytest.raises(Unauthenticated, match="'org'"):
        await bearer(custom, hs())  # carries `tenant`, not `org`
    assert (await bearer(custom, hs(org="globex"))).tenant == "globex"


async def test_a_default_tenant_is_used_only_when_configured(keystore: KeyStore) -> None:
    auth = Authenticator(keystore, settings(jwt_key=SECRET, jwt_default_tenant="shared"))
    assert (await bearer(auth, hs(tenant=None))).tenant == "shared"
    assert (await bearer(auth, hs(tenant="acme"))).tenant == "acme"


@pytest.mark.parametrize(("claims", "claim"), [
    ({"tenant": "acme/x"}, "tenant"),
    ({"tenant": ""}, "tenant"),
    ({"tenant": 42}, "tenant"),
    ({"sub": "team/alice"}, "sub"),
    ({"sub": "alice smith"}, "sub"),
    ({"sub": "a" * 10_240}, "sub"),
    ({"roles": ["analyst", "root/admin"]}, "roles"),
    ({"roles": ["x" * 129]}, "roles"),
    ({"roles": [1]}, "roles"),
    ({"roles": {"admin": True}}, "roles"),
])
async def test_claims_that_cannot_be_an_identity_are_refused(
        keystore: KeyStore, claims: dict[str, Any], claim: str) -> None:
    auth = Authenticator(keystore, settings(jwt_key=SECRET))
    with pytest.raises(Unauthenticated) as caught:
        await bearer(auth, hs(**claims))
    assert caught.value.details == {"claim": claim}
    assert f"claim {claim!r}" in caught.value.message and len(caught.value.message) < 200


@pytest.mark.parametrize("token", [
    hs(iss=None), hs(aud=None), hs(iss="https://evil.test"), hs(aud="other"),
    hs(exp=None), hs(exp=time.time() - 5), hs(sub=None),
    jwt.encode(payload(), "not-the-secret-0123456789abcdef-0123", algorithm="HS256"),
    jwt.encode(payload(), "", algorithm="none"), "not.a.token",
])
async def test_tokens_that_do_not_check_out_are_refused(keystore: KeyStore,
                                                        token: str) -> None:
    auth = Authenticator(keystore, settings(jwt_key=SECRET))
    with pytest.raises(Unauthenticated, match="invalid token"):
        await bearer(auth, token)


# -- keys from a JWKS URL ------------------------------------------------------------------

async def test_jwks_keys_rotate(keystore: KeyStore, jwks: JwksServer, key_a: RsaKey,
                                key_b: RsaKey) -> None:
    auth = Authenticator(keystore, settings(jwt_jwks_url=jwks.url))
    assert (await bearer(auth, key_a.sign())).name == "alice"
    assert (await bearer(auth, key_a.sign(sub="bob"))).name == "bob"
    assert jwks.fetches == 1  # cached
    jwks.keys = [key_a.jwk(), key_b.jwk()]  # the identity provider publishes key B
    who = await bearer(auth, key_b.sign(sub="carol", tenant="globex"))
    assert (who.name, who.tenant) == ("carol", "globex")
    assert jwks.fetches == 2
    assert (await bearer(auth, key_a.sign())).name == "alice"  # A still valid beside B


async def test_refetches_for_unknown_kids_are_cooled_down(keystore: KeyStore,
                                                          jwks: JwksServer, key_a: RsaKey,
                                                          key_b: RsaKey) -> None:
    auth = Authenticator(keystore, settings(jwt_jwks_url=jwks.url))
    await bearer(auth, key_a.sign())
    with pytest.raises(Unauthenticated, match="no key with kid 'key-b'"):
        await bearer(auth, key_b.sign())  # not published yet: one refetch, then 401
    assert jwks.fetches == 2
    jwks.keys = [key_a.jwk(), key_b.jwk()]
    stranger = RsaKey("key-x")
    for token in (key_b.sign(), stranger.sign(), stranger.sign()):
        with pytest.raises(Unauthenticated, match="no key with kid"):
            await bearer(auth, token)
    assert jwks.fetches == 2  # within the cooldown: no refetch, made-up kids cost nothing


async def test_an_unknown_kid_costs_at_most_one_fetch(keystore: KeyStore, jwks: JwksServer,
                                                      key_a: RsaKey) -> None:
    auth = Authenticator(keystore, settings(jwt_jwks_url=jwks.url),
                         jwks=JwksKeys(jwks.url, cooldown=0.0))
    stranger = RsaKey("key-x")
    with pytest.raises(Unauthenticated, match="no key with kid 'key-x'"):
        await bearer(auth, stranger.sign())
    assert jwks.fetches == 1  # the set was just fetched: no second fetch for the same request
    await bearer(auth, key_a.sign())
    for expected in (2, 3):
        with pytest.raises(Unauthenticated, match="no key with kid 'key-x'"):
            await bearer(auth, stranger.sign())
        assert jwks.fetches == expected


async def test_the_jwks_decides_the_algorithm(keystore: KeyStore, jwks: JwksServer,
                                              key_a: RsaKey) -> None:
    auth = Authenticator(keystore, settings(jwt_jwks_url=jwks.url))
    # an HMAC token naming an RSA key's kid (algorithm confusion)
    forged = jwt.encode(payload(), "x" * 32, algorithm="HS256", headers={"kid": key_a.kid})
    with pytest.raises(Unauthenticated, match="invalid token"):
        await bearer(auth, forged)
    with pytest.raises(Unauthenticated, match="no `kid`"):
        await bearer(auth, jwt.encode(payload(), key_a.private, algorithm="RS256"))
    jwks.keys = [key_a.jwk(), {"kty": "oct", "kid": "shared", "k": "c2VjcmV0LXNlY3JldA"}]
    with pytest.raises(Unauthenticated, match="JWKS keys must be asymmetric"):
        await bearer(auth, jwt.encode(payload(), "s" * 32, algorithm="HS256",
                                      headers={"kid": "shared"}))


async def test_a_static_key_serves_tokens_without_a_kid(keystore: KeyStore,
                                                        jwks: JwksServer,
                                                        key_a: RsaKey) -> None:
    auth = Authenticator(keystore, settings(jwt_jwks_url=jwks.url, jwt_key=SECRET))
    assert (await bearer(auth, hs(sub="static"))).name == "static"
    assert (await bearer(auth, key_a.sign(sub="rotated"))).name == "rotated"


async def test_an_unreachable_jwks_url_is_503(keystore: KeyStore, jwks: JwksServer,
                                              key_a: RsaKey) -> None:
    url = jwks.url
    jwks.stop()
    auth = Authenticator(keystore, settings(jwt_jwks_url=url))
    with pytest.raises(Unavailable) as caught:
        await bearer(auth, key_a.sign())
    assert caught.value.error_code == "unavailable" and caught.value.http_status == 503


@pytest.mark.parametrize("keys", [[], [{"kty": "nope"}], [{"kty": "RSA", "kid": "k",
                                                             "use": "enc", "n": "AQ",
                                                             "e": "AQAB"}]])
async def test_a_jwks_without_usable_keys_is_503(keystore: KeyStore, jwks: JwksServer,
                                                 key_a: RsaKey,
                                                 keys: list[dict[str, Any]]) -> None:
    jwks.keys = keys
    auth = Authenticator(keystore, settings(jwt_jwks_url=jwks.url))
    with pytest.raises(Unavailable):
        await bearer(auth, key_a.sign())
