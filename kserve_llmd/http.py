"""HTTP helpers: the OpenAI error body (for every server here), and for aiohttp (the simulator's server) body
reading with limits and responses."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from kserve_llmd.errors import BodyTooLargeError, InvalidRequestError, KserveLlmdError

JSON_CONTENT_TYPE = "application/json"
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    # Proxies in front of us (nginx, some sidecars) must not buffer the stream.
    "X-Accel-Buffering": "no",
}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON_CONTENT_TYPE, headers=headers)


def error_body(exc: KserveLlmdError) -> bytes:
    """The one place an error becomes an HTTP body (OpenAI-shaped); its status is ``exc.status``."""
    return orjson.dumps(exc.to_openai())


def error_response(exc: KserveLlmdError) -> web.Response:
    """``error_body`` as an aiohttp response."""
    return web.Response(body=error_body(exc), status=exc.status, content_type=JSON_CONTENT_TYPE)


async def read_json_object(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """Read the request body as a JSON object, refusing bodies over ``max_bytes`` before reading them whole."""
    return parse_json_object(await read_body(request, max_bytes))


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole request body, refusing bodies over ``max_bytes`` (by Content-Length first, then as read)."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise BodyTooLargeError(f"request body of {length} bytes is over the limit of {max_bytes} bytes")
    # StreamReader.read(n) returns what is buffered (possibly less than n): read until EOF.
    chunks = []
    size = 0
    while True:
        chunk = await request.content.read(max_bytes + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLargeError(f"request body is over the limit of {max_bytes} bytes")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object")
    return body
