"""The environment of a `python -m jobs` child run against the local stand-ins."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The job's own settings: none of a real configuration may reach a sandbox run.
OWN_PREFIXES = ("STRIPE_", "SANITY_", "SMTP_", "RECONCILER_", "REPORT_")


def job_env(*, stripe_url: str, stripe_key: str, sanity_url: str, sanity_token: str,
            state_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without the job's settings, then the stand-ins' (JSON
    logs), then `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
    env.update({
        "STRIPE_SECRET_KEY": stripe_key,
        "STRIPE_API_BASE": stripe_url,
        "SANITY_PROJECT_ID": "sandbox",
        "SANITY_API_BASE": sanity_url,
        "SANITY_API_TOKEN": sanity_token,
        "RECONCILER_STATE_DIR": str(state_dir),
        "RECONCILER_LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    })
    env.update(extra)
    return env
