"""Domain errors. Each maps to one OpenAI-style error envelope in exactly one place (byom.api.web)."""

from __future__ import annotations


class ByomError(Exception):
    status = 500
    type = "api_error"
    code: str | None = None
    source = "gateway"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        # Extra response headers, e.g. how many provider calls were made before this error.
        self.headers: dict[str, str] = {}
        if code is not None:
            self.code = code


class InvalidRequest(ByomError):
    status = 400
    type = "invalid_request_error"


class PayloadTooLarge(ByomError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class AuthenticationFailed(ByomError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ByomError):
    status = 403
    type = "permission_error"


class NotFound(ByomError):
    status = 404
    type = "not_found_error"


class Conflict(ByomError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class ModelNotFound(ByomError):
    """An alias the caller's tenant does not have. OpenAI answers an unknown model with this 404,
    which its SDK raises as NotFoundError; SPEC §4 asks for type invalid_request_error."""

    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class GatewayMisconfigured(ByomError):
    """Stored configuration the gateway cannot use (a missing credential, an unreadable key)."""

    status = 500
    type = "api_error"


class OutboundRefused(ByomError):
    """The gateway refused to call a provider endpoint (SPEC §5, outbound URLs)."""

    status = 502
    type = "provider_error"
    code = "outbound_url_refused"


class StoreUnavailable(ByomError):
    """The gateway's own tables could not be read or written after their retries (throttling, an
    outage) before the provider was called: nothing was held or spent, so trying again is safe."""

    status = 503
    type = "api_error"
    code = "store_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers["retry-after"] = "1"


_PROVIDER_TYPES = {400: "invalid_request_error", 429: "rate_limit_exceeded"}


class ProviderError(ByomError):
    """A provider refused or failed a call. `retryable` tells the caller whether trying again may help.

    The message quotes the provider's status and message; it must never carry a provider key.
    """

    source = "provider"

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        retryable: bool = False,
        provider_status: int | str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, param=param)
        self.status = status
        self.type = _PROVIDER_TYPES.get(status, "provider_error")
        if status == 429:
            self.code = "rate_limit_exceeded"
        self.retryable = retryable
        self.provider_status = provider_status


class BudgetExceeded(ByomError):
    """A hard budget has too little left for this call (SPEC §4: 429 insufficient_quota)."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class ContentPolicyViolation(ByomError):
    """The tenant's redaction policy blocks the request (SPEC §8). The message names the types
    found, never the values."""

    status = 400
    type = "invalid_request_error"
    code = "content_policy_violation"

    def __init__(self, message: str, *, found: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.found = dict(found or {})
        """How many values of each type were found (for the audit record; never the values)."""


class RateLimited(ByomError):
    """The tenant's tokens-per-minute limit is used up (SPEC §8); `retry-after` says when it refills."""

    status = 429
    type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.headers["retry-after"] = str(max(1, retry_after_seconds))
