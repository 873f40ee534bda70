"""One exception hierarchy; only `jobs.cli` maps it to exit codes.

Exit 2 ("could not run"): `ConfigError`, `CredentialsRejected`, `ServiceUnavailable`.
Everything that leaves the run able to finish but needing a person is a value in the
report (exit 1), not an exception.
"""

from __future__ import annotations


class ReconcilerError(Exception):
    """Base of every error this job raises on purpose. `str(e)` is one line for ops."""

    exit_code = 2


class ConfigError(ReconcilerError):
    """A setting is missing or malformed; the message names the setting."""


class ModeMismatch(ConfigError):
    """The key's mode (live/test) and the data's disagree: the run must write nothing."""


class CredentialsRejected(ReconcilerError):
    """A service rejected our key or token (401/403 on the whole service)."""


class ServiceUnavailable(ReconcilerError):
    """A service could not be reached or kept failing after retries."""


class RetriableError(ReconcilerError):
    """A transient failure: safe to retry the same request (429, 5xx, connection)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AccountError(ReconcilerError):
    """One Stripe account cannot be read (e.g. 403 for a connected account); the run goes on."""

    exit_code = 1


class WriteRejected(ReconcilerError):
    """Sanity refused a transaction for a reason a retry will not fix (a 4xx but 401/403/429)."""

    exit_code = 1
