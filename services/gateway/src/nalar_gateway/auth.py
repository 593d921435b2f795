"""Authentication: every request but the health checks carries an API key or a JWT.

    Authorization: Bearer nk_<id>_<secret>     an API key (`nalar keys create`)
    X-API-Key: nk_<id>_<secret>                the same
    Authorization: Bearer <JWT>                checked by `nalar_gateway.tokens` (NALAR_AUTH_JWT_*)

The principal found is the only identity a run gets: nothing in a request body names one.
Settings that cannot work (JWTs without an issuer or audience, an anonymous principal with a
bad name) raise `ConfigError` here, when the gateway is built.
"""

from __future__ import annotations

import json

from fastapi import Request
from nalar_common.auth import KeyStore, Principal, check_name
from nalar_common.errors import Unauthenticated
from nalar_common.settings import AuthSettings

from nalar_gateway.errors import ConfigError
from nalar_gateway.jwks import JwksKeys
from nalar_gateway.tokens import JwtVerifier


class Authenticator:
    def __init__(self, keys: KeyStore, settings: AuthSettings, *,
                 jwks: JwksKeys | None = None) -> None:
        self.keys, self.settings = keys, settings
        self.anonymous = anonymous_principal(settings.anonymous) if settings.anonymous \
            else None
        self.jwt = JwtVerifier.from_settings(settings, jwks=jwks)

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
            if self.jwt is None:
                raise Unauthenticated("bearer tokens other than API keys are not accepted "
                                      "here (no NALAR_AUTH_JWT_KEY or NALAR_AUTH_JWT_JWKS_URL)")
            return await self.jwt.verify(token)
        if self.anonymous is not None:
            return self.anonymous
        raise Unauthenticated("no credentials: send `Authorization: Bearer <API key or JWT>` "
                              "or `X-API-Key: <API key>`")


def anonymous_principal(raw: str) -> Principal:
    """`NALAR_AUTH_ANONYMOUS` (`{"name", "roles", "tenant"}`), held to the names API keys get."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _anonymous_error(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("roles") or [], list):
        raise _anonymous_error('must be a JSON object {"name": ..., "roles": [...], '
                               '"tenant": ...}')
    fields = [("name", data.get("name")), ("tenant", data.get("tenant") or "default"),
              *(("role", r) for r in data.get("roles") or [])]
    for kind, value in fields:
        if not isinstance(value, str):
            raise _anonymous_error(f"{kind} must be a string")
        try:
            check_name(kind, value)
        except ValueError as exc:
            raise _anonymous_error(str(exc)) from None
    return Principal.from_dict({**data, "via": "anonymous"})


def _anonymous_error(problem: str) -> ConfigError:
    return ConfigError(f"NALAR_AUTH_ANONYMOUS: {problem}", settings=("NALAR_AUTH_ANONYMOUS",))
