"""OpenAI-compatible engine: vLLM's server, or any provider with a URL and a key.

A thin async client: streamed chat completions with usage (`stream_options.include_usage`,
cached tokens from `prompt_tokens_details`), time to first token measured here, the session
sent as `user` and kept on one replica (its KV cache lives there), and, for vLLM, the
Prometheus `/metrics` read for telemetry. Tools and `tool_choice` go through as given; the
tool calls the model streams back (in pieces, by index) are put together into
`Completion.tool_calls`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

import httpx

from nalar.engines.base import (
    Completion,
    EngineUnavailable,
    LLMRequest,
    OnToken,
    PromptTooLong,
    ToolCall,
)

_CONTEXT = re.compile(r"(maximum context length|context length|too long|max_model_len)", re.I)
_METRICS = {
    "vllm:num_requests_running": "running", "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv_usage", "vllm:gpu_cache_usage_perc": "kv_usage",
    "vllm:prefix_cache_hits_total": "prefix_cache_hits",
    "vllm:prefix_cache_queries_total": "prefix_cache_queries",
}


class OpenAIEngine:
    name = "openai"

    def __init__(self, base_urls: list[str], *, api_key: str = "", model: str = "",
                 timeout_s: float = 120.0, scrape_metrics: bool = False,
                 client: httpx.AsyncClient | None = None) -> None:
        if not base_urls:
            raise ValueError("at least one base URL is needed")
        self.base_urls = [u.rstrip("/") for u in base_urls]
        self.model = model
        self.scrape_metrics = scrape_metrics
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.AsyncClient(timeout=timeout_s, headers=headers)
        self._stats: dict[str, dict[str, float]] = {}

    def replica(self, session: str | None) -> str:
        """The replica for a session: rendezvous hashing, so a session stays where its
        prefix cache is and only moves when its replica leaves the list."""
        if session is None or len(self.base_urls) == 1:
            return self.base_urls[0]
        return max(self.base_urls,
                   key=lambda u: hashlib.sha256(f"{session}|{u}".encode()).digest())

    async def complete(self, request: LLMRequest, on_token: OnToken | None = None) -> Completion:
        base = self.replica(request.session)
        body: dict[str, Any] = {
            "model": self.model, "max_tokens": request.max_tokens,
            "temperature": request.temperature, "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.session:
            body["user"] = request.session
        if request.tools:
            body["tools"] = request.tools
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
        if request.messages is not None:
            url, body["messages"] = f"{base}/chat/completions", request.messages
        else:
            url, body["prompt"] = f"{base}/completions", request.prompt or ""
        started = time.monotonic()
        first: float | None = None
        pieces: list[str] = []
        usage: dict[str, Any] = {}
        calls: dict[int, dict[str, str]] = {}  # tool calls, streamed in pieces by index
        finish = ""
        model = self.model
        try:
            async with self._client.stream("POST", url, json=body,
                                           headers={"X-Session-Id": request.session or ""}) as r:
                if r.status_code >= 400:
                    await self._raise(r, url)
                async for line in r.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    model = chunk.get("model") or model
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or []:
                        finish = choice.get("finish_reason") or finish
                        _add_calls(calls, (choice.get("delta") or {}).get("tool_calls"))
                        piece = (choice.get("delta") or {}).get("content") \
                            if "delta" in choice else choice.get("text")
                        if piece:
                            if first is None:
                                first = time.monotonic()
                            pieces.append(piece)
                            if on_token is not None:
                                on_token(piece)
        except httpx.HTTPError as exc:
            raise EngineUnavailable(f"engine at {base} failed: {type(exc).__name__}: {exc}",
                                    details={"url": base}) from None
        total = time.monotonic() - started
        details = usage.get("prompt_tokens_details") or {}
        return Completion(
            "".join(pieces), int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0), int(details.get("cached_tokens") or 0),
            {"queue_s": 0.0, "ttft_s": (first - started) if first else total, "total_s": total},
            model=model, engine=f"{self.name}:{base}",
            tool_calls=tuple(ToolCall(c["id"], c["name"], c["arguments"])
                             for _, c in sorted(calls.items())),
            finish_reason=finish)

    async def _raise(self, r: httpx.Response, url: str) -> None:
        text = (await r.aread()).decode(errors="replace")[:2000]
        if r.status_code == 400 and _CONTEXT.search(text):
            limit = re.search(r"(\d{3,7})\s*tokens", text)
            raise PromptTooLong(f"prompt too long for the model: {text[:300]}",
                                details={"limit": int(limit.group(1)) if limit else None})
        if r.status_code >= 500 or r.status_code == 429:
            raise EngineUnavailable(f"engine answered {r.status_code}: {text[:300]}",
                                    details={"status": r.status_code, "url": url})
        from nalar_common.errors import InvalidInput

        raise InvalidInput(f"engine refused the request ({r.status_code}): {text[:300]}",
                           details={"status": r.status_code})

    async def scrape(self) -> None:
        """Read each replica's Prometheus /metrics (vLLM) into `stats()`."""
        for base in self.base_urls:
            root = base[:-3] if base.endswith("/v1") else base
            try:
                r = await self._client.get(f"{root}/metrics", timeout=5)
            except httpx.HTTPError:
                self._stats[base] = {"up": 0.0}
                continue
            values: dict[str, float] = {"up": 1.0}
            for line in r.text.splitlines():
                if line.startswith("#") or " " not in line:
                    continue
                name, _, value = line.rpartition(" ")
                key = _METRICS.get(name.split("{", 1)[0])
                if key is not None:
                    try:
                        values[key] = values.get(key, 0.0) + float(value)
                    except ValueError:
                        pass
            self._stats[base] = values

    def stats(self) -> dict[str, Any]:
        return {"engine": self.name, "replicas": dict(self._stats)}

    async def aclose(self) -> None:
        await self._client.aclose()


def _add_calls(calls: dict[int, dict[str, str]], deltas: Any) -> None:
    """Fold one chunk's tool-call pieces in: the first piece of a call has its id and name,
    the arguments' JSON text comes in pieces after it, by `index`. Servers that leave the
    index out, or reuse one for a call with another id, get a new call for a new id; pieces
    of an odd shape (arguments as an object, a function that is not one) are read as well
    as they can be rather than failing the turn."""
    for d in deltas if isinstance(deltas, list) else ():
        if not isinstance(d, dict):
            continue
        fn: dict[str, Any] = d["function"] if isinstance(d.get("function"), dict) else {}
        new_id = str(d.get("id") or "")
        index = d.get("index")
        if not isinstance(index, int):
            last = max(calls) if calls else -1
            index = last + 1 if last < 0 or (new_id and new_id != calls[last]["id"]) else last
        elif new_id and calls.get(index, {}).get("id") not in (None, "", new_id):
            index = max(calls) + 1
        call = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
        call["id"] = new_id or call["id"]
        call["name"] = str(fn.get("name") or "") or call["name"]
        args = fn.get("arguments")
        call["arguments"] += args if isinstance(args, str) else \
            json.dumps(args) if args is not None else ""
