"""``RouterModel``: a ``kserve.Model`` that forwards OpenAI payloads through a running router.

For users who want KServe's v1/v2 protocol surface (``ModelServer``, ``/v1/models/<name>:predict``) in front of the
router. The payload is an OpenAI body (``messages`` → ``/v1/chat/completions``, else ``/v1/completions``), or a v1
``{"instances": [body, ...]}`` answered as ``{"predictions": [response, ...]}``. Streaming bodies come back as an
async iterator of SSE bytes, which KServe streams to its client.

Importing this module imports ``kserve`` (about 1 s; ``kserve.model_server`` reads ``sys.argv``): only the
transformer's model mode and tests import it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from kserve import Model

from kserve_llmd.errors import UpstreamFailedError


class RouterModel(Model):  # type: ignore[misc]  # kserve is untyped
    """``RouterModel(name, router_url)``; ``load()`` marks it ready, ``aclose()`` closes its HTTP session."""

    def __init__(self, name: str, router_url: str) -> None:
        super().__init__(name)
        self.router_url = router_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def load(self) -> bool:
        self.ready = True
        return True

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=600))
        return self._session

    async def predict(self, payload: Any, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> Any:
        if not isinstance(payload, dict):
            raise UpstreamFailedError("RouterModel takes a JSON object (an OpenAI body or v1 instances)")
        if "instances" in payload:
            return {"predictions": [await self._complete(body) for body in payload["instances"]]}
        if payload.get("stream"):
            return self._stream(payload)
        return await self._complete(payload)

    @staticmethod
    def _path(body: dict[str, Any]) -> str:
        return "/v1/chat/completions" if "messages" in body else "/v1/completions"

    async def _complete(self, body: dict[str, Any]) -> Any:
        async with self._client().post(self.router_url + self._path(body), json={**body, "stream": False}) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 200:
                raise UpstreamFailedError(f"router answered {resp.status}: {data}")
            return data

    async def _stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        async with self._client().post(self.router_url + self._path(body), json=body) as resp:
            if resp.status != 200:
                raise UpstreamFailedError(f"router answered {resp.status}: {await resp.text()}")
            async for chunk in resp.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
