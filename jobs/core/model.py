"""Plain data shared by the pure core and the adapters. No I/O, no vendor types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

PLATFORM = "platform"
"""The account name of the platform (the key owner's own Stripe account)."""

OutcomeKind = Literal["created", "already_present", "needs_manual", "pending", "failed", "ignored"]

NEEDS_MANUAL_REASONS = (
    "metadata_missing",
    "pass_not_found",
    "pass_type_unknown",
    "pass_without_class_count",
    "tenant_mismatch",
    "user_unknown",
    "user_ambiguous",
    "upgrade_source_missing",
    "manual_duplicate_suspected",
)
IGNORED_KINDS = (
    "not_complete", "not_paid", "class_dropin", "platform_plan", "not_a_pass", "refunded",
)
PENDING_KINDS = ("async_payment",)
ANOMALY_KINDS = (
    "duplicate_subscriptions",
    "mistyped_subscription",
    "wrong_tenant",
    "invisible_shape",
    "draft_only",
    "refunded_but_active",
    "expired_on_arrival",
    "wrong_user",
    "upgrade_incomplete",
    "duplicate_users",
    "currency_differs",
)


@dataclass(frozen=True)
class Session:
    """The fields of a Stripe Checkout Session the reconciler decides on."""

    id: str
    account: str
    created: int
    status: str | None
    mode: str | None
    payment_status: str | None
    payment_intent: str | None
    amount_total: int | None
    currency: str | None
    metadata: Mapping[str, Any]
    email: str | None
    name: str | None
    livemode: bool | None
    # Only kept for a session whose own metadata lacks the pass keys: its line items as
    # listed with it (`expand[]=data.line_items`). None: not listed, or more than the list
    # held, so they are asked for on their own.
    line_items: tuple[ListedItem, ...] | None = None


@dataclass(frozen=True)
class ListedItem:
    """A line item as listed with its session: its product is only an id there."""

    description: str | None
    product_id: str | None


@dataclass(frozen=True)
class LineItem:
    description: str | None
    product_metadata: Mapping[str, Any]


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str | None
    account_id: str | None
    currency: str | None = None  # stripeConnect.currency as stored


@dataclass(frozen=True)
class Pass:
    """A pass document; values kept as stored so the rules can judge them."""

    id: str
    name: str | None
    type: Any
    price: Any
    validity_type: Any
    validity_days: Any
    expiry_date: Any
    classes_limit: Any
    is_active: Any
    tenant_id: str | None


@dataclass(frozen=True)
class Catalog:
    """Tenants and passes, loaded once per run."""

    tenants: Mapping[str, Tenant]
    passes: Mapping[str, Pass]

    # Indexes built on first use: planning asks these for every session of a run.
    @cached_property
    def _tenant_by_account(self) -> dict[str, Tenant]:
        out: dict[str, Tenant] = {}
        for tenant in self.tenants.values():
            if tenant.account_id is not None:
                out.setdefault(tenant.account_id, tenant)
        return out

    @cached_property
    def _passes_by_tenant(self) -> dict[str | None, list[Pass]]:
        out: dict[str | None, list[Pass]] = {}
        for pass_ in self.passes.values():
            out.setdefault(pass_.tenant_id, []).append(pass_)
        return out

    def tenant_of_account(self, account: str) -> Tenant | None:
        return self._tenant_by_account.get(account)

    def passes_named(self, tenant_id: str, name: str) -> list[Pass]:
        return [p for p in self._passes_by_tenant.get(tenant_id, ()) if p.name == name]

    def pass_ids_of(self, tenant_id: str | None) -> set[str]:
        return {p.id for p in self._passes_by_tenant.get(tenant_id, ())}


@dataclass(frozen=True)
class Anomaly:
    kind: str
    session_id: str
    subscription_ids: tuple[str, ...]
    detail: str


@dataclass(frozen=True)
class Creation:
    """What the job writes for one purchase: one transaction's worth of mutations."""

    subscription: Mapping[str, Any]
    user: Mapping[str, Any] | None = None
    deactivate: Mapping[str, Any] | None = None  # patch of the superseded subscription
    person_refs: tuple[str, ...] = ()  # the buyer's user refs: the re-check's manual look-up

    def mutations(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.user is not None:
            out.append({"createIfNotExists": dict(self.user)})
        out.append({"createIfNotExists": dict(self.subscription)})
        if self.deactivate is not None:
            out.append({"patch": dict(self.deactivate)})
        return out


@dataclass(frozen=True)
class Decision:
    """The one outcome of one session, with what ops need to see about it."""

    session_id: str
    account: str
    outcome: OutcomeKind
    reason: str | None = None
    detail: str = ""
    tenant: str | None = None
    email: str | None = None
    amount: float | None = None
    currency: str | None = None
    paid_at: str | None = None
    pass_id: str | None = None
    pass_name: str | None = None
    user_id: str | None = None
    subscription_ids: tuple[str, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
    creation: Creation | None = None


@dataclass(frozen=True)
class LookupKeys:
    """What one page needs from Sanity, asked in one query."""

    session_ids: tuple[str, ...]
    payment_intents: tuple[str, ...]
    user_ids: tuple[str, ...]
    upgrade_ids: tuple[str, ...]


PAYMENT_ID_FIELDS = ("stripePaymentId", "stripePaymentIntentId", "paymentId")


@dataclass(frozen=True)
class PageFacts:
    """What Sanity holds for one page (the answer to `LookupKeys`)."""

    subs: tuple[Mapping[str, Any], ...] = ()
    users: tuple[Mapping[str, Any], ...] = ()
    upgrades: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> PageFacts:
        def docs(key: str) -> tuple[Mapping[str, Any], ...]:
            value = result.get(key) or []
            return tuple(d for d in value if isinstance(d, Mapping))

        return cls(docs("subs"), docs("users"), docs("upgrades"))

    @cached_property
    def subs_by_key(self) -> dict[tuple[str, str], list[int]]:
        """Positions in `subs` by ("sid", stripeSessionId), ("id", _id) and ("pi", any of the
        payment-id fields): a page's lookups answer each session without a scan."""
        out: dict[tuple[str, str], list[int]] = {}
        for n, doc in enumerate(self.subs):
            fields = [("sid", doc.get("stripeSessionId")), ("id", doc.get("_id")),
                      *(("pi", doc.get(f)) for f in PAYMENT_ID_FIELDS)]
            # Only strings can equal a session's ids; a key met twice counts once.
            for key in dict.fromkeys((k, v) for k, v in fields if isinstance(v, str)):
                out.setdefault(key, []).append(n)
        return out


@dataclass(frozen=True)
class PlanContext:
    now_ms: int
    run_id: str
    catalog: Catalog


@dataclass
class PagePlan:
    account: str
    decisions: list[Decision] = field(default_factory=list)

    def creations(self) -> list[Decision]:
        return [d for d in self.decisions if d.creation is not None]
