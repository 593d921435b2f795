"""A load generator's HTTP/1.1 client: one keep-alive connection, `POST` with a JSON body,
the answer read by its `Content-Length`. Real HTTP to the gateway, at a fraction of httpx's
CPU per request (on a 2-core machine the clients share the cores with the stack they load,
so a heavy client takes throughput away from what is measured)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode, urlsplit


class HTTPError(Exception):
    """The connection failed or the answer could not be read."""


class Response:
    __slots__ = ("body", "status_code")

    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code, self.body = status_code, body

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class KeepAlive:
    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        url = urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, *, json_body: Any, params: dict[str, Any] | None = None
                   ) -> Response:
        target = f"{path}?{urlencode(params)}" if params else path
        body = json.dumps(json_body).encode()
        head = (f"POST {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        return await self._send(head.encode() + body)

    async def get(self, path: str) -> Response:
        return await self._send(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                                "\r\n".encode())

    async def _send(self, request: bytes) -> Response:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(request)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            await self.close()  # a fresh connection for the next request
            raise HTTPError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, request: bytes) -> Response:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, close = None, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if length is None:
            raise ValueError("an answer without Content-Length")
        body = await self._reader.readexactly(length)
        if close:
            await self.close()
        return Response(status, body)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def keepalive(base_url: str) -> AsyncIterator[KeepAlive]:
    client = KeepAlive(base_url)
    try:
        yield client
    finally:
        await client.close()
