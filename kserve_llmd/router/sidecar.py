"""Decode-side sidecar mode (llm-d compatibility): the ``x-prefiller-host-port`` header.

In llm-d the endpoint picker chooses the prefill engine and sets ``x-prefiller-host-port: <ip:port>``; a sidecar on
the decode pod reads it and runs the two-step flow against that engine. A router that honours the header from ANY
client would let that client make it POST to any host (server-side request forgery), so the header is honoured only
when it names an endpoint this router already knows (its ``host:port`` id, as discovery registered it); anything
else is refused with 403 before any outbound call. The header is never forwarded to an engine.
"""

from __future__ import annotations

from collections.abc import Mapping

from kserve_llmd.errors import ForbiddenError
from kserve_llmd.router.endpoints import EndpointRegistry
from kserve_llmd.router.interfaces import Endpoint

PREFILLER_HEADER = "x-prefiller-host-port"
_MAX_VALUE = 300  # host names are at most 253 characters; more is not an endpoint id


def prefiller_from_header(headers: Mapping[str, str], registry: EndpointRegistry) -> Endpoint | None:
    """The known prefill endpoint the header names, ``None`` without the header; ``ForbiddenError`` otherwise.

    The value must be exactly one ``host:port`` equal to a registered endpoint id, of a prefill-capable endpoint
    (role ``prefill`` or ``both``). The refusal does not echo the value back (it is attacker-controlled).
    """
    value = headers.get(PREFILLER_HEADER)
    if value is None:
        return None
    value = value.strip()
    endpoint = registry.get(value) if 0 < len(value) <= _MAX_VALUE else None
    if endpoint is None or endpoint.role == "decode":
        raise ForbiddenError(f"{PREFILLER_HEADER} does not name a prefill endpoint known to this router",
                             param=PREFILLER_HEADER)
    return endpoint
