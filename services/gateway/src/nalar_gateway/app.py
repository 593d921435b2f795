"""The FastAPI application: lifespan builds the Gateway once and closes it on exit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from nalar_gateway.bodies import SafeJSONResponse
from nalar_gateway.handlers import install_error_handlers, router
from nalar_gateway.service import Gateway


def create_app(build: Callable[[], Awaitable[Gateway]]) -> FastAPI:
    holder: dict[str, Gateway] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gw = await build()
        await gw.start()
        holder["gw"] = gw
        app.include_router(router(gw))
        try:
            yield
        finally:
            await gw.close()

    app = FastAPI(title="Nalar gateway", version="0.1.0", lifespan=lifespan,
                  default_response_class=SafeJSONResponse,
                  description="Start workflow runs and inspect their futures and events.")
    install_error_handlers(app)
    return app
