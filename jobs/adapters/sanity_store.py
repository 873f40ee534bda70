"""Sanity adapter: GROQ queries and mutate transactions over Sanity's HTTP API.

Reads always POST to the live API (never the CDN, whose answers may be stale) with
`perspective=raw`, because the reconciler must see `drafts.*` documents. Each request is
one retry unit (`jobs.adapters.retry.call_with_retry`); a retried transaction reuses its
transactionId. Vendor failures become `jobs.core.errors` classes; the token never appears in
a message.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import requests

from jobs.adapters.http_session import session_from_env
from jobs.adapters.retry import call_with_retry
from jobs.adapters.sanity_queries import (
    CATALOG_QUERY,
    FACTS_QUERY,
    LOGGED_QUERY,
    LOOKUP_QUERY,
    RECHECK_QUERY,
    RUN_DOCUMENTS_QUERY,
    WEBHOOK_LOG_QUERY,
    page_query,
)
from jobs.core.errors import (
    ConfigError,
    CredentialsRejected,
    ReconcilerError,
    RetriableError,
    ServiceUnavailable,
    WriteRejected,
)

T = TypeVar("T")

_DOC_IDS_PER_REQUEST = 100
_TOKEN_SETTING = "SANITY_API_TOKEN"


class MutationRefused(WriteRejected):
    """Sanity refused a transaction (4xx other than 401/403/429); `status` is the HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class SanityStore:
    """The reconciler's view of one Sanity dataset (implements `jobs.core.ports.SanityStore`)."""

    def __init__(
        self,
        base_url: str,
        dataset: str,
        token: str,
        api_version: str,
        *,
        http: requests.Session | None = None,
        timeout: float = 30,
        attempts: int = 6,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        host = urlsplit(base_url).hostname or ""
        if "apicdn" in host:
            raise ConfigError("SANITY_API_BASE points at Sanity's CDN (apicdn); use the live API")
        version = api_version.strip().removeprefix("v")
        if not version:
            raise ConfigError("SANITY_API_VERSION is empty")
        self._root = f"{base_url.rstrip('/')}/v{version}/data"
        self._dataset = quote(dataset, safe="")
        self._token = token
        self._http = http or session_from_env(base_url)
        self._timeout = timeout
        self._attempts = attempts
        self._sleep = sleep
        self._clock = clock

    # -- reads -------------------------------------------------------------------------

    def query(self, groq: str, params: dict[str, Any]) -> Any:
        """Runs one GROQ query (POST, perspective=raw) and returns its `result`."""
        body = self._call(
            "POST",
            f"{self._root}/query/{self._dataset}",
            params={"perspective": "raw"},
            json_body={"query": groq, "params": params},
            write=False,
            what="sanity query",
        )
        if not isinstance(body, dict) or "result" not in body:
            raise ReconcilerError("Sanity answered a query without a result")
        return body["result"]

    def load_catalog(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Published tenants and passes, in one query."""
        result = self.query(CATALOG_QUERY, {})
        return _documents(result, "tenants"), _documents(result, "passes")

    def lookup_page(
        self,
        session_ids: list[str],
        payment_intents: list[str],
        user_ids: list[str],
        upgrade_ids: list[str],
    ) -> dict[str, Any]:
        """What Sanity already holds for one Stripe page, in one query.

        `subs`: subscriptions (drafts included) by session id, deterministic id or payment
        intent; `users`: published users by clerkId or _id; `upgrades`: published
        subscriptions by id.
        """
        params = {
            **_purchase_params(session_ids, payment_intents),
            "uids": _unique(user_ids),
            "upIds": _unique(upgrade_ids),
        }
        result = self.query(LOOKUP_QUERY, params)
        return {key: _documents(result, key) for key in ("subs", "users", "upgrades")}

    def recheck(self, session_ids: list[str], payment_intents: list[str],
                person_refs: list[str]) -> dict[str, Any]:
        """Just before a transaction, in one query: `subs`, subscriptions (drafts included)
        that now record any of these purchases; `manual`, subscriptions of these persons
        without Stripe ids (drafts included)."""
        params = {**_purchase_params(session_ids, payment_intents),
                  "refs": _unique(person_refs)}
        result = self.query(RECHECK_QUERY, params)
        return {key: _documents(result, key) for key in ("subs", "manual")}

    def get_documents(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        """Documents by id (drafts included); missing ids are left out."""
        wanted = _unique(ids)
        out: list[dict[str, Any]] = []
        for n in range(0, len(wanted), _DOC_IDS_PER_REQUEST):
            chunk = ",".join(quote(i, safe="") for i in wanted[n : n + _DOC_IDS_PER_REQUEST])
            body = self._call(
                "GET", f"{self._root}/doc/{self._dataset}/{chunk}", write=False, what="sanity doc"
            )
            docs = body.get("documents") if isinstance(body, dict) else None
            out.extend(d for d in docs or [] if isinstance(d, dict))
        return out

    def documents_of_run(self, run_id: str) -> list[dict[str, Any]]:
        """Subscriptions a reconcile run created (its `reconcileRunId`), drafts included."""
        result = self.query(RUN_DOCUMENTS_QUERY, {"runId": run_id})
        return [d for d in result or [] if isinstance(d, dict)]

    def people_and_purchases(self, user_ids: list[str], emails: list[str],
                             session_ids: list[str], payment_intents: list[str],
                             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """For `diagnose`, in one query: the users named by id, Clerk id or e-mail (lower
        case), and every subscription of these purchases or these users, drafts included."""
        params = {**_purchase_params(session_ids, payment_intents),
                  "uids": list(user_ids), "emails": list(emails)}
        result = self.query(FACTS_QUERY, params)
        return _documents(result, "users"), _documents(result, "subs")

    def webhook_log(self, since: str, signature: str) -> list[Any]:
        """For `doctor`: the app's webhookLog entries since `since` (ISO 8601) that are
        errors or of the event type `signature`, newest first."""
        result = self.query(WEBHOOK_LOG_QUERY, {"since": since, "signature": signature})
        return result if isinstance(result, list) else []

    def logged_sessions(self, session_ids: list[str]) -> list[Any]:
        """For `doctor`: which of these session ids the app's webhookLog names."""
        result = self.query(LOGGED_QUERY, {"sids": list(session_ids)})
        return result if isinstance(result, list) else []

    def subscription_page(self, after: str, size: int) -> list[dict[str, Any]]:
        """For `audit`: up to `size` subscriptions (drafts included) whose id sorts after
        `after`, in id order."""
        result = self.query(page_query(size), {"last": after})
        return [d for d in result or [] if isinstance(d, dict)]

    # -- writes ------------------------------------------------------------------------

    def commit(
        self, mutations: Sequence[dict[str, Any]], transaction_id: str, *, dry_run: bool = False
    ) -> list[dict[str, Any]]:
        """Applies `mutations` as ONE transaction; returns Sanity's per-document results.

        Retries reuse `transaction_id`. If a retry meets a 409 although an earlier attempt
        may have gone through (its answer lost), the documents are checked: when one carries
        `_rev == transaction_id`, that earlier attempt committed, and the commit succeeded
        (its results are then unknown: `operation` is "unknown").
        """
        attempts = 0

        def once() -> list[dict[str, Any]]:
            nonlocal attempts
            attempts += 1
            try:
                body = self._call_once(
                    "POST",
                    f"{self._root}/mutate/{self._dataset}",
                    params={
                        "returnIds": "true",
                        "visibility": "sync",
                        "dryRun": "true" if dry_run else "false",
                    },
                    json_body={"mutations": list(mutations), "transactionId": transaction_id},
                    write=True,
                )
            except MutationRefused as refused:
                if refused.status == 409 and attempts > 1 and not dry_run:
                    earlier = self._committed_earlier(mutations, transaction_id)
                    if earlier:
                        return [{"id": i, "operation": "unknown"} for i in earlier]
                raise
            results = body.get("results") if isinstance(body, dict) else None
            if not isinstance(results, list):
                raise RetriableError("Sanity answered a transaction without results")
            return [r for r in results if isinstance(r, dict)]

        return self._retrying(once, what=f"sanity transaction {transaction_id}")

    def probe_write(self) -> None:
        """Asks Sanity to validate (dryRun) a harmless write: raises if the token cannot create."""
        probe = {"_id": "reconciler-write-probe", "_type": "reconcilerProbe"}
        self.commit([{"createIfNotExists": probe}], "reconciler-write-probe", dry_run=True)

    def _committed_earlier(self, mutations: Sequence[dict[str, Any]], tx: str) -> list[str]:
        ids = [i for i in (_mutation_id(m) for m in mutations) if i is not None]
        return [d["_id"] for d in self.get_documents(ids) if d.get("_rev") == tx]

    # -- HTTP --------------------------------------------------------------------------

    def _call(self, method: str, url: str, *, write: bool, what: str,
              params: dict[str, str] | None = None, json_body: Any = None) -> Any:
        return self._retrying(
            lambda: self._call_once(method, url, params=params, json_body=json_body, write=write),
            what=what,
        )

    def _retrying(self, fn: Callable[[], T], *, what: str) -> T:
        try:
            return call_with_retry(fn, what=what, attempts=self._attempts, sleep=self._sleep)
        except RetriableError as error:
            raise ServiceUnavailable(
                f"Sanity kept failing after {self._attempts} attempts ({what}): {error}"
            ) from error

    def _call_once(self, method: str, url: str, *, write: bool,
                   params: dict[str, str] | None = None, json_body: Any = None) -> Any:
        """One HTTP exchange; returns the parsed JSON body or raises a `jobs.core.errors` class."""
        try:
            response = self._http.request(
                method,
                url,
                params=params,
                json=json_body,
                headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
                timeout=self._timeout,
            )
        except requests.Timeout as error:
            raise RetriableError(f"Sanity timed out after {self._timeout:g}s") from error
        except requests.RequestException as error:
            raise RetriableError(f"Sanity connection failed: {type(error).__name__}") from error
        status = response.status_code
        if 200 <= status < 300:
            try:
                return response.json()
            except ValueError as error:
                raise RetriableError(f"Sanity sent a malformed answer ({status})") from error
        detail = _describe(response)
        if status == 401:
            raise CredentialsRejected(f"Sanity rejected {_TOKEN_SETTING} (401 {detail})")
        if status == 403:
            permission = _permission(response)
            needs = f'permission "{permission}"' if permission else "more permissions"
            raise CredentialsRejected(
                f"{_TOKEN_SETTING} lacks {needs} on this dataset (403 {detail})"
            )
        if status == 429 or status >= 500:
            raise RetriableError(
                f"Sanity answered {status} ({detail})", retry_after=self._retry_after(response)
            )
        if write:
            raise MutationRefused(f"Sanity refused the transaction ({status} {detail})", status)
        raise ReconcilerError(f"Sanity refused a request ({status} {detail})")

    def _retry_after(self, response: requests.Response) -> float | None:
        value = response.headers.get("Retry-After")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - self._clock())


def _documents(result: Any, key: str) -> list[dict[str, Any]]:
    value = result.get(key) if isinstance(result, dict) else None
    return [d for d in value or [] if isinstance(d, dict)]


def _purchase_params(session_ids: Iterable[str],
                     payment_intents: Iterable[str]) -> dict[str, list[str]]:
    sids = _unique(session_ids)
    det_ids = [f"subscription-{sid}" for sid in sids]
    return {
        "sids": sids,
        "detIds": det_ids + [f"drafts.{i}" for i in det_ids],
        "pis": _unique(payment_intents),  # never empty values: "" would match blanks
    }


def _unique(values: Iterable[str]) -> list[str]:
    """Non-empty strings, de-duplicated, in first-seen order."""
    return list(dict.fromkeys(v for v in values if isinstance(v, str) and v))


def _mutation_id(mutation: dict[str, Any]) -> str | None:
    for kind, body in mutation.items():
        if not isinstance(body, dict):
            return None
        value = body.get("_id") if kind.startswith("create") else body.get("id")
        return value if isinstance(value, str) else None
    return None


def _error_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _describe(response: requests.Response) -> str:
    """A one-line description of Sanity's error body (never the request's headers)."""
    body = _error_body(response)
    error = body.get("error")
    if isinstance(error, dict):
        text = str(error.get("description") or error.get("type") or "error")
        items = [
            str(item["error"].get("description"))
            for item in error.get("items") or []
            if isinstance(item, dict) and isinstance(item.get("error"), dict)
        ]
        if items:
            text = f"{text}: {'; '.join(items[:5])}"
        kind = error.get("type")
        return f"{kind}: {text}" if kind and kind != "mutationError" else text
    message = body.get("message")
    if isinstance(message, str) and message:
        return message
    return response.reason or "no detail"


def _permission(response: requests.Response) -> str | None:
    error = _error_body(response).get("error")
    if not isinstance(error, dict):
        return None
    for item in error.get("items") or []:
        inner = item.get("error") if isinstance(item, dict) else None
        if isinstance(inner, dict) and isinstance(inner.get("permission"), str):
            return str(inner["permission"])
    return None
