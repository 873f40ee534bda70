"""Stripe stand-in errors: `ApiError` and the `{"error": {...}}` bodies Stripe answers with."""

from __future__ import annotations

from collections.abc import Mapping

from sandbox.stripe.data import dumps

DOC_URL = "https://stripe.com/docs/error-codes/"


class ApiError(Exception):
    """One Stripe error answer: status, `{"error": {...}}` body, extra headers."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        doc = DOC_URL + self.code.replace("_", "-") if self.code else None
        return dumps({"error": {"type": self.type, "code": self.code, "message": self.message,
                                 "param": self.param, "doc_url": doc}})


def bad_request(message: str, param: str | None = None,
                code: str = "parameter_invalid") -> ApiError:
    return ApiError(400, message, code=code, param=param)


def unknown_parameter(name: str) -> ApiError:
    return ApiError(400, f"Received unknown parameter: {name}", code="parameter_unknown",
                    param=name)


def no_such(kind: str, object_id: str, param: str, status: int = 404) -> ApiError:
    return ApiError(status, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def default_error(status: int) -> ApiError:
    """The body Stripe sends for a bare status (used by injected faults without a body)."""
    if status == 429:
        return rate_limit_error()
    if status >= 500:
        return ApiError(status, "An unknown error occurred on Stripe's side.", type_="api_error")
    return ApiError(status, f"Injected error {status}.")


def rate_limit_error() -> ApiError:
    return ApiError(429, "Request rate limit exceeded. You can learn more about rate limits "
                    "here https://stripe.com/docs/rate-limits.", code="rate_limit")
