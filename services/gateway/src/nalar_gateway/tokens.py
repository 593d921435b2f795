"""Bearer JWTs: the signature (`NALAR_AUTH_JWT_KEY` or a key from `NALAR_AUTH_JWT_JWKS_URL`),
issuer, audience and expiry; then the claims that become the principal (`sub`, the tenant
claim, the roles), each held to the charset API-key principals have.
"""

from __future__ import annotations

from typing import Any

import jwt
from nalar_common.auth import Principal, check_name
from nalar_common.errors import Unauthenticated
from nalar_common.settings import AuthSettings

from nalar_gateway.errors import ConfigError
from nalar_gateway.jwks import ASYMMETRIC, JwksKeys

_SYMMETRIC = ["HS256", "HS384", "HS512"]
_REGISTERED = ("sub", "exp", "iat", "nbf", "iss", "aud", "jti")
_CHARSET = "1-128 letters, digits or _.@:-"


class JwtVerifier:
    """Checks bearer JWTs against one issuer and audience, which are required: a token from
    any issuer for any service, signed with a key we trust, is not a token for us."""

    def __init__(self, settings: AuthSettings, *, jwks: JwksKeys | None = None) -> None:
        s = settings
        missing = tuple(env for env, value in (("NALAR_AUTH_JWT_ISSUER", s.jwt_issuer),
                                               ("NALAR_AUTH_JWT_AUDIENCE", s.jwt_audience))
                        if not value)
        if missing:
            raise ConfigError(f"{' and '.join(missing)} must be set when bearer JWTs are "
                              "accepted (NALAR_AUTH_JWT_KEY or NALAR_AUTH_JWT_JWKS_URL is set)",
                              settings=missing)
        self.issuer, self.audience = s.jwt_issuer, s.jwt_audience
        self.default_tenant = s.jwt_default_tenant or None
        if self.default_tenant is not None and not _valid(self.default_tenant):
            raise ConfigError(f"NALAR_AUTH_JWT_DEFAULT_TENANT {self.default_tenant!r}: "
                              f"{_CHARSET}", settings=("NALAR_AUTH_JWT_DEFAULT_TENANT",))
        self.roles_claim, self.tenant_claim = s.jwt_roles_claim, s.jwt_tenant_claim
        self.key = s.jwt_key or None
        # the key's kind fixes the algorithms: a public key is never taken as an HMAC secret
        self._algorithms = sorted(ASYMMETRIC) if (self.key or "").lstrip().startswith(
            "-----BEGIN") else _SYMMETRIC
        self.jwks = jwks or (JwksKeys(s.jwt_jwks_url) if s.jwt_jwks_url else None)

    @classmethod
    def from_settings(cls, settings: AuthSettings, *,
                      jwks: JwksKeys | None = None) -> JwtVerifier | None:
        """The verifier, or None when JWTs are off (neither a key nor a JWKS URL)."""
        if not (settings.jwt_key or settings.jwt_jwks_url or jwks):
            return None
        return cls(settings, jwks=jwks)

    async def verify(self, token: str) -> Principal:
        key, algorithms = await self._key(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=algorithms, audience=self.audience, issuer=self.issuer,
                options={"require": ["exp", "sub", "iss", "aud"]})
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        return self.principal(claims)

    async def _key(self, token: str) -> tuple[Any, list[str]]:
        """A token with a `kid` is checked with that key from the JWKS URL; one without, with
        `NALAR_AUTH_JWT_KEY`."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        if self.jwks is not None and (kid is not None or self.key is None):
            if kid is None:
                raise Unauthenticated("invalid token: no `kid` header to pick a key from the "
                                      "JWKS URL")
            found, algorithm = await self.jwks.key_for(kid)
            return found.key, [algorithm]
        return self.key, self._algorithms

    def principal(self, claims: dict[str, Any]) -> Principal:
        """The identity a verified token carries; a claim that cannot be one is refused."""
        name = _claim(claims, "sub")
        if claims.get(self.tenant_claim) is not None:
            tenant = _claim(claims, self.tenant_claim)
        elif self.default_tenant is not None:
            tenant = self.default_tenant
        else:
            raise Unauthenticated(f"invalid token: no {self.tenant_claim!r} claim (and no "
                                  "NALAR_AUTH_JWT_DEFAULT_TENANT)",
                                  details={"claim": self.tenant_claim})
        raw = claims.get(self.roles_claim) or []
        roles = raw.split() if isinstance(raw, str) else raw
        if not isinstance(roles, list) or not all(isinstance(r, str) and _valid(r)
                                                  for r in roles):
            raise Unauthenticated(f"invalid token: claim {self.roles_claim!r} must be a list "
                                  f"of roles, each {_CHARSET}",
                                  details={"claim": self.roles_claim})
        extra = {k: v for k, v in claims.items() if isinstance(v, str | int | float | bool)
                 and k not in _REGISTERED}
        return Principal(name, tuple(roles), tenant, "jwt", attrs=extra)


def _claim(claims: dict[str, Any], claim: str) -> str:
    value = claims.get(claim)
    if not isinstance(value, str) or not _valid(value):
        raise Unauthenticated(f"invalid token: claim {claim!r} must be a string of {_CHARSET}",
                              details={"claim": claim})
    return value


def _valid(value: str) -> bool:
    try:
        check_name("claim", value)
    except ValueError:
        return False
    return True
