"""Authentication: every request but the health checks carries an API key or a JWT.

    Authorization: Bearer nk_<id>_<secret>     an API key (`nalar keys create`)
    X-API-Key: nk_<id>_<secret>                the same
    Authorization: Bearer <JWT>                issuer, audience and key from NALAR_AUTH_JWT_*

The principal found is the only identity a run gets: nothing in a request body names one.
"""

from __future__ import annotations

import json
from typing import Any

import jwt
from fastapi import Request
from nalar_common.auth import KeyStore, Principal
from nalar_common.errors import Unauthenticated
from nalar_common.settings import AuthSettings

_ASYMMETRIC = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]
_SYMMETRIC = ["HS256", "HS384", "HS512"]


class Authenticator:
    def __init__(self, keys: KeyStore, settings: AuthSettings) -> None:
        self.keys, self.settings = keys, settings
        self.anonymous = Principal.from_dict({**json.loads(settings.anonymous),
                                              "via": "anonymous"}) \
            if settings.anonymous else None
        key = settings.jwt_key or ""
        # the key's kind fixes the algorithms: a public key is never taken as an HMAC secret
        self._algorithms = _ASYMMETRIC if key.lstrip().startswith("-----BEGIN") else _SYMMETRIC

    async def __call__(self, request: Request) -> Principal:
        return await self.authenticate(request.headers.get("authorization"),
                                       request.headers.get("x-api-key"))

    async def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        if api_key:
            return await self.keys.verify(api_key.strip())
        if authorization:
            scheme, _, token = authorization.strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise Unauthenticated("Authorization must be `Bearer <API key or JWT>`")
            if token.startswith("nk_"):
                return await self.keys.verify(token)
            return self._jwt(token)
        if self.anonymous is not None:
            return self.anonymous
        raise Unauthenticated("no credentials: send `Authorization: Bearer <API key or JWT>` "
                              "or `X-API-Key: <API key>`")

    def _jwt(self, token: str) -> Principal:
        s = self.settings
        if not s.jwt_key:
            raise Unauthenticated("bearer tokens other than API keys are not accepted here "
                                  "(no NALAR_AUTH_JWT_KEY)")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, s.jwt_key, algorithms=self._algorithms, audience=s.jwt_audience,
                issuer=s.jwt_issuer, options={"require": ["exp", "sub"],
                                              "verify_aud": s.jwt_audience is not None,
                                              "verify_iss": s.jwt_issuer is not None})
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        roles = claims.get(s.jwt_roles_claim) or []
        if isinstance(roles, str):
            roles = roles.split()
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise Unauthenticated(f"invalid token: claim {s.jwt_roles_claim!r} is not a list "
                                  "of strings")
        tenant = claims.get(s.jwt_tenant_claim) or "default"
        extra = {k: v for k, v in claims.items() if isinstance(v, str | int | float | bool)
                 and k not in ("sub", "exp", "iat", "nbf", "iss", "aud", "jti")}
        return Principal(str(claims["sub"]), tuple(roles), str(tenant), "jwt", attrs=extra)
