"""The Stripe SDK as this adapter drives it: the client, one GET as plain JSON, Stripe's errors as
`jobs.core.errors` classes, Retry-After read."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import stripe
import structlog

from jobs.adapters.http_session import session_from_env
from jobs.core.errors import (
    AccountError,
    CredentialsRejected,
    ReconcilerError,
    RetriableError,
    ServiceUnavailable,
)
from jobs.core.model import PLATFORM

log = structlog.get_logger("jobs.stripe_source")

JSON = dict[str, Any]
DEFAULT_API_BASE = "https://api.stripe.com"


def _format_sdk_logs_lazily() -> None:
    """stripe-python formats a log line for every request and response, the whole response
    body included, before anything asks whether that line is shown: a 340 KB page of
    sessions cost about 3 ms of CPU, a tenth of a large run's. Its requestor's two log
    functions are wrapped so that they format only when the `stripe` logger (or `STRIPE_LOG`
    / `stripe.log`) would show the line; what is shown does not change."""
    try:
        from stripe import _api_requestor, _util
    except ImportError:  # another SDK layout: its logging stays as it is
        return

    # The module's names are read and set as data: they are the SDK's private plumbing.
    names = vars(_api_requestor)
    plumbing = ("log_debug", "log_info", "_console_log_level")
    if "log_debug" not in names or not all(n in vars(_util) for n in plumbing):
        return
    if getattr(names["log_debug"], "lazy", False):
        return
    console: Callable[[], str | None] = vars(_util)["_console_log_level"]

    def lazily(log: Callable[..., None], level: int, shown: tuple[str, ...]) -> Any:
        def wrapper(message: str, **params: Any) -> None:
            if _util.logger.isEnabledFor(level) or console() in shown:
                log(message, **params)

        wrapper.lazy = True  # type: ignore[attr-defined]
        return wrapper

    names["log_debug"] = lazily(vars(_util)["log_debug"], logging.DEBUG, ("debug",))
    names["log_info"] = lazily(vars(_util)["log_info"], logging.INFO, ("debug", "info"))


def make_client(api_key: str, api_base: str | None, timeout: float, *,
                on_response: Callable[..., Any] | None = None) -> stripe.StripeClient:
    """The SDK client for `StripeSource`; `api_base` points it at another API (the stand-in)."""
    _format_sdk_logs_lazily()
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base.rstrip("/")} if api_base else None,
        # No SDK retries, on purpose: we retry each request ourselves (call_with_retry) and
        # honour Retry-After, which the SDK ignores; the SDK also never retries a plain 429
        # and sleeps with the real clock. Two layers would multiply attempts (6 x N) and hide
        # waits from our tests and logs.
        max_network_retries=0,
        http_client=stripe.RequestsClient(
            timeout=timeout, session=session_from_env(api_base or DEFAULT_API_BASE,
                                                      on_response=on_response)),
    )


# Stripe's 403 for a restricted key without a right (not for an account it cannot reach).
_MISSING_PERMISSION = re.compile(r"Having the '([^']+)' permission would allow")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None


def translate(error: stripe.StripeError, *, account: str, what: str) -> ReconcilerError:
    """One Stripe SDK error -> our error class. Messages never carry the key (Stripe's own
    message quotes a masked key, so it is left out for 401/403)."""
    status = error.http_status
    headers = error.headers or {}
    should_retry = (headers.get("stripe-should-retry") or headers.get("Stripe-Should-Retry")
                    or "").lower()
    kind = error.code or type(error).__name__
    ref = f"request {error.request_id}" if error.request_id else "no request id"
    if isinstance(error, stripe.AuthenticationError) or status == 401:
        return CredentialsRejected(f"Stripe rejected STRIPE_SECRET_KEY ({status or 401} {kind}; "
                                   f"{ref})")
    if isinstance(error, stripe.PermissionError) or status == 403:
        missing = _MISSING_PERMISSION.search(str(error.user_message or ""))
        if missing:  # the key lacks a right: every account would fail alike
            return CredentialsRejected(f"STRIPE_SECRET_KEY lacks the permission "
                                       f"'{missing.group(1)}' needed to read {what} "
                                       f"(403 {kind}; {ref})")
        if account != PLATFORM:
            return AccountError(f"Stripe account {account} cannot be read with STRIPE_SECRET_KEY "
                                f"(403 {kind}; {ref}) while reading {what}")
        return CredentialsRejected(f"Stripe rejected STRIPE_SECRET_KEY for the platform account "
                                   f"(403 {kind}; {ref}) while reading {what}")
    if should_retry == "true":
        return RetriableError(f"Stripe asked to retry {what} ({status}; {ref})",
                              retry_after=_retry_after(headers))
    if isinstance(error, stripe.APIConnectionError) and not error.should_retry:
        return ServiceUnavailable(f"Stripe could not be reached for {what} "
                                  f"({type(error.__cause__).__name__})")
    if status is not None and 400 <= status < 500 and status not in (409, 429):
        return ReconcilerError(f"Stripe refused {what} ({status} {kind}: "
                               f"{error.user_message}; {ref})")
    if should_retry == "false":
        return ServiceUnavailable(f"Stripe failed {what} and asked not to retry ({status}; {ref})")
    if isinstance(error, stripe.APIConnectionError):
        # The SDK's message embeds the URL (and so query values such as an e-mail): name only
        # the transport error.
        return RetriableError(f"Stripe connection failed for {what} "
                              f"({type(error.__cause__).__name__})")
    return RetriableError(f"Stripe failed {what} ({status} {kind}; {ref})",
                          retry_after=_retry_after(headers))


def get_json(client: stripe.StripeClient, path: str, params: Mapping[str, Any],
              account: str) -> Any:
    """One GET through the SDK's requestor, its answer parsed with plain `json.loads`.

    `StripeClient.raw_request` parses every answer with an OrderedDict hook, 2.5 times
    slower on a 340 KB page of sessions than plain parsing: at 100,000 sessions that was
    the largest part of the run's CPU. Errors still take the SDK's own path (its
    exception classes, with status, code and headers). The requestor is private: when it
    is missing or its signature changed (another SDK release), the public `raw_request`
    answers instead, slower but the same."""
    options: Any = {} if account == PLATFORM else {"stripe_account": account}
    requestor = getattr(client, "_requestor", None)
    request_raw = getattr(requestor, "request_raw", None)
    interpret = getattr(requestor, "_interpret_response", None)
    if callable(request_raw) and callable(interpret):
        try:
            body, code, headers = request_raw(
                "get", path, params=params, options=options, base_address="api",
                api_mode="V1", usage=["raw_request"])
        except TypeError as error:  # raised before anything is sent: the signature changed
            _private_path_gone(error)
        else:
            if not 200 <= code < 300:
                interpret(body, code, headers, "V1")  # raises the SDK's error
            return _parsed(body, path, code)
    else:
        _private_path_gone(None)
    extra: dict[str, Any] = {} if account == PLATFORM else {"stripe_account": account}
    response = client.raw_request("get", path, **dict(params), **extra)
    return _parsed(getattr(response, "body", None), path, getattr(response, "code", 200))


def _parsed(body: Any, path: str, code: int) -> Any:
    try:
        return json.loads(body)
    except (TypeError, ValueError) as error:
        raise RetriableError(f"Stripe answered {path} with a body that is not JSON "
                             f"({code})") from error


_warned: list[bool] = []


def _private_path_gone(error: TypeError | None) -> None:
    if not _warned:
        _warned.append(True)
        log.warning("stripe_private_requestor_unusable", fallback="raw_request",
                    sdk=getattr(stripe, "VERSION", "?"), error=str(error) if error else None)


def page_cursor(data: list[JSON], what: str) -> str:
    """The `starting_after` for the page after `data`: its last object's id."""
    last = data[-1]
    cursor = last.get("id") if isinstance(last, dict) else None
    if not isinstance(cursor, str) or not cursor:
        raise ReconcilerError(f"Stripe answered {what} with a last object without an id")
    return cursor
