"""Domain errors. Each maps to one OpenAI-style error envelope in exactly one place (byom.api.http)."""

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
