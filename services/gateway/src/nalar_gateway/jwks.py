"""Signing keys from a JWKS URL (key rotation): the token's `kid` picks the key.

`PyJWKClient` fetches over blocking HTTP, so every lookup runs in a worker thread. The key
set is cached for `lifespan` seconds; a `kid` not in the cached set forces one refetch, and
forced refetches are at least `cooldown` seconds apart, so tokens with made-up kids cannot
make the gateway hammer the identity provider.
"""

from __future__ import annotations

import asyncio
import threading
import time
from urllib.parse import urlsplit

import jwt
from nalar_common.errors import Unauthenticated, Unavailable
from nalar_common.logging import get_logger

from nalar_gateway.errors import ConfigError

log = get_logger(__name__)

#: what a JWKS key may verify: public-key algorithms only, never an HMAC secret
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
                        "ES384", "ES512", "ES256K", "EdDSA"})


class JwksKeys:
    """The signing keys published at one JWKS URL."""

    def __init__(self, url: str, *, lifespan: float = 300.0, cooldown: float = 30.0,
                 timeout: float = 5.0) -> None:
        if not urlsplit(url).netloc:
            raise ConfigError(f"NALAR_AUTH_JWT_JWKS_URL {url!r} is not an http(s) URL",
                              settings=("NALAR_AUTH_JWT_JWKS_URL",))
        try:
            self._client = jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=lifespan,
                                           timeout=timeout, cooldown_duration=cooldown)
        except jwt.PyJWKClientError as exc:
            raise ConfigError(f"NALAR_AUTH_JWT_JWKS_URL: {exc}",
                              settings=("NALAR_AUTH_JWT_JWKS_URL",)) from None
        self.url, self.cooldown = url, cooldown
        self._lock = threading.Lock()  # one fetch at a time; waiters then read the cache
        self._refetched_at: float | None = None

    async def key_for(self, kid: str) -> tuple[jwt.PyJWK, str]:
        """The key whose id is `kid` and the one algorithm it verifies.

        Raises `Unauthenticated` for a kid the set does not hold (or a symmetric key) and
        `Unavailable` when the set cannot be fetched or makes no sense.
        """
        key = await asyncio.to_thread(self._lookup, kid)
        if key is None:
            raise Unauthenticated(f"invalid token: no key with kid {_short(kid)} at the "
                                  "JWKS URL")
        if key.algorithm_name not in ASYMMETRIC:
            raise Unauthenticated(f"invalid token: key {_short(kid)} is not a public key "
                                  f"({key.algorithm_name}); JWKS keys must be asymmetric")
        return key, key.algorithm_name

    def _lookup(self, kid: str) -> jwt.PyJWK | None:
        with self._lock:
            cache = self._client.jwk_set_cache
            fetched = cache is None or cache.get() is None  # the next call goes to the URL
            key = _match(self._keys(refresh=False), kid)
            now = time.monotonic()
            if key is None and not fetched and (self._refetched_at is None
                                                or now - self._refetched_at >= self.cooldown):
                self._refetched_at = now
                key = _match(self._keys(refresh=True), kid)
            return key

    def _keys(self, *, refresh: bool) -> list[jwt.PyJWK]:
        try:
            return self._client.get_signing_keys(refresh=refresh)
        except (jwt.PyJWKClientError, jwt.PyJWKSetError) as exc:
            # the identity provider is down or serves nonsense: not the caller's fault
            log.warning("jwks.fetch_failed", url=self.url, error=str(exc))
            raise Unavailable("cannot fetch the keys that verify bearer tokens (JWKS URL)",
                              details={"reason": type(exc).__name__}) from None


def _match(keys: list[jwt.PyJWK], kid: str) -> jwt.PyJWK | None:
    return next((k for k in keys if k.key_id == kid), None)


def _short(value: str) -> str:
    return repr(value if len(value) <= 64 else value[:64] + "...")
