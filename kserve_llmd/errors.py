"""The one error hierarchy of kserve-llmd.

Every error the package raises on purpose is a ``KserveLlmdError``. Errors that reach an HTTP client carry their
status and their OpenAI error type, and are turned into a response in exactly one place
(``kserve_llmd.http.error_body``, which the simulator's aiohttp ``error_response`` and the router's own server's
``Response.error`` both wrap)::

    KserveLlmdError
    ├── ConfigError                  bad configuration at start-up (message names the field or plugin)
    ├── RequestError           4xx   the client's fault
    │   ├── InvalidRequestError  400   malformed JSON, wrong types, unknown fields, absurd max_tokens
    │   ├── ContextLengthError   400   prompt + max_tokens over max-model-len
    │   ├── AuthenticationError  401   missing or wrong API key
    │   ├── ForbiddenError       403   e.g. a P/D header naming an endpoint the router does not know
    │   ├── ModelNotFoundError   404   no such model (or LoRA) served here
    │   ├── RouteNotFoundError   404   no such path
    │   ├── MethodNotAllowedError 405  a known path, another method
    │   ├── RequestTimeoutError  408   a request head that did not arrive in time (slow client)
    │   ├── BodyTooLargeError    413   body over the configured limit
    │   ├── HeadersTooLargeError 431   URL or headers over the configured limit
    │   └── RateLimitedError     429   load shedding
    ├── OverloadedError        503   the router itself takes no more: at its connection cap, or draining before it
    │                                stops (Retry-After: 1)
    ├── UpstreamError          5xx   an engine's fault or absence
    │   ├── UpstreamFailedError  502   engine answered badly, died mid-stream or refused the connection
    │   ├── NoEndpointError      503   no healthy endpoint can take the request (Retry-After: 1)
    │   └── UpstreamTimeoutError 504   engine did not answer in time
    ├── KVTransferError        4xx/5xx P/D: unknown or expired transfer, prefill that returned no params
    ├── EventDecodeError               a ZMQ KV-event payload that cannot be decoded (dropped, counted, logged)
    └── KubeError                      Kubernetes-facing failures
        ├── ManifestValidationError    a rendered object is not valid against its CRD schema (names the field)
        └── NotReadyError              wait-until-ready timed out (names the missing condition)
"""

from __future__ import annotations

from typing import Any


class KserveLlmdError(Exception):
    """Base of every error kserve-llmd raises on purpose."""

    status: int = 500
    error_type: str = "InternalServerError"
    #: Seconds a client should wait before trying again: the router's server sends it as ``Retry-After`` (the OpenAI
    #: SDKs honour it). None: no header.
    retry_after: int | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI / vLLM error body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.status,
            }
        }


class ConfigError(KserveLlmdError):
    error_type = "ConfigError"


class RequestError(KserveLlmdError):
    status = 400
    error_type = "BadRequestError"


class InvalidRequestError(RequestError):
    pass


class ContextLengthError(RequestError):
    pass


class AuthenticationError(RequestError):
    status = 401
    error_type = "AuthenticationError"


class ForbiddenError(RequestError):
    status = 403
    error_type = "PermissionDeniedError"


class ModelNotFoundError(RequestError):
    status = 404
    error_type = "NotFoundError"


class RouteNotFoundError(RequestError):
    status = 404
    error_type = "NotFoundError"


class MethodNotAllowedError(RequestError):
    status = 405
    error_type = "MethodNotAllowedError"


class RequestTimeoutError(RequestError):
    status = 408
    error_type = "RequestTimeoutError"


class BodyTooLargeError(RequestError):
    status = 413
    error_type = "RequestEntityTooLarge"


class HeadersTooLargeError(RequestError):
    status = 431
    error_type = "RequestHeaderFieldsTooLarge"


class RateLimitedError(RequestError):
    status = 429
    error_type = "RateLimitError"


class OverloadedError(KserveLlmdError):
    status = 503
    error_type = "ServiceUnavailableError"
    retry_after = 1


class UpstreamError(KserveLlmdError):
    status = 502
    error_type = "BadGatewayError"


class UpstreamFailedError(UpstreamError):
    pass


class NoEndpointError(UpstreamError):
    status = 503
    error_type = "ServiceUnavailableError"
    retry_after = 1


class UpstreamTimeoutError(UpstreamError):
    status = 504
    error_type = "GatewayTimeoutError"


class KVTransferError(KserveLlmdError):
    """P/D transfer failures. ``status`` is set per instance (vLLM answers 400 for unknown transfers)."""

    error_type = "KVTransferError"

    def __init__(self, message: str, *, status: int = 500, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.status = status


class EventDecodeError(KserveLlmdError):
    error_type = "EventDecodeError"


class KubeError(KserveLlmdError):
    error_type = "KubeError"


class ManifestValidationError(KubeError):
    pass


class NotReadyError(KubeError):
    pass
