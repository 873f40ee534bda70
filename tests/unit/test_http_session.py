"""The adapters' requests Session reads the environment once, when it is made."""

from __future__ import annotations

import pytest

from jobs.adapters.http_session import session_from_env


def test_proxies_and_ca_bundle_come_from_the_environment_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE",
                 "CURL_CA_BUNDLE", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/company.pem")
    remote = session_from_env("https://api.stripe.com")
    assert remote.trust_env is False  # no per-request scan of the environment
    assert remote.proxies.get("https") == "http://proxy.internal:3128"
    assert remote.verify == "/etc/ssl/company.pem"
    assert remote.get_adapter("https://api.stripe.com")._pool_maxsize == 32  # type: ignore[attr-defined]
    local = session_from_env("http://127.0.0.1:8080")
    assert local.proxies == {}  # NO_PROXY names it
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    assert session_from_env("https://api.stripe.com").verify is True
