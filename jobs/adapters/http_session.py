"""The requests Session both adapters use: the environment read once, not per request.

With `trust_env`, requests scans the proxy variables and looks for a ~/.netrc on every
request; at a few thousand requests a run that was a measurable share of its CPU. Here the
proxies for the service's URL and a CA bundle named in the environment are read when the
session is made, and every request then goes as the environment said.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter


def session_from_env(url: str, *, pool: int = 32,
                     on_response: Callable[..., Any] | None = None) -> requests.Session:
    """A session for `url`'s service: proxies and CA bundle from the environment, read now;
    a connection pool of `pool` (the run's threads share it); `on_response` is a requests
    response hook (the metrics' request counter)."""
    session = requests.Session()
    if on_response is not None:
        session.hooks["response"].append(on_response)
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
