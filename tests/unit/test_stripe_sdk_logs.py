"""The SDK's per-request log lines are formatted only when someone would see them."""

from __future__ import annotations

import logging

import pytest
from stripe import _api_requestor, _util

from jobs.adapters.stripe_client import make_client


def test_sdk_log_lines_are_formatted_only_when_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    make_client("sk_test_x", None, 5)
    formatted: list[dict[str, object]] = []
    monkeypatch.setattr(_util, "logfmt", lambda props: formatted.append(props) or "line")
    monkeypatch.setattr(_util, "STRIPE_LOG", None)
    sdk = logging.getLogger("stripe")
    before = sdk.level
    log_debug, log_info = vars(_api_requestor)["log_debug"], vars(_api_requestor)["log_info"]
    try:
        sdk.setLevel(logging.WARNING)
        log_debug("API response body", body="x" * 1000)
        log_info("Request to Stripe api", method="get")
        assert formatted == []
        sdk.setLevel(logging.INFO)
        log_debug("API response body", body="x")
        log_info("Request to Stripe api", method="get")
        assert [p["message"] for p in formatted] == ["Request to Stripe api"]
        sdk.setLevel(logging.DEBUG)
        log_debug("API response body", body="x")
        assert formatted[-1] == {"message": "API response body", "body": "x"}
    finally:
        sdk.setLevel(before)
