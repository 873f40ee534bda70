"""The registry of planted oddities: one scenario per incident of domain.md §4 and per outcome,
reason and anomaly of design.md, each with the number of variants it cycles through.

Plants are listed by importance; a small world takes only the first few.
"""

from __future__ import annotations

from sandbox.world import base
from sandbox.world import plants_found as found
from sandbox.world import plants_manual as manual
from sandbox.world import plants_shapes as shapes
from sandbox.world.build import Builder
from sandbox.world.plant_kit import ALL_METADATA, Plant, created, created_named, needs, odd_pass


def _base(scenario: str, **kwargs: object) -> Plant:
    """An ordinary scenario, planted so that even a small world has one."""
    def plant(b: Builder, i: int) -> None:
        match scenario:
            case "refunded_but_active":
                base.refunded(b, active_subscription=True, scenario=scenario)
            case "refunded_in_parts":
                base.refunded(b, parts=2, scenario=scenario)
            case "refunded":
                base.refunded(b)
            case "upgrade_created" | "upgrade_present":
                base.upgrade(b, lost=scenario == "upgrade_created", scenario=scenario)
            case "unpaid_with_subscription":
                base.async_payment(b, with_subscription=True)
            case "open" | "expired":
                base.abandoned(b, scenario)
            case "class_dropin":
                base.class_dropin(b)
            case "platform_plan":
                base.platform_plan(b)
            case "no_payment":
                base.no_payment(b)
            case "not_a_pass" | "not_a_pass_platform":
                base.not_a_pass(b, platform=scenario == "not_a_pass_platform")
            case "platform_purchase":
                base.pass_purchase(b, platform=True)
            case _:
                raise ValueError(scenario)
    return plant


# (name, plant, variants): a plant is called with i = 0 .. variants-1 (times the multiplier).
PLANTS: list[tuple[str, Plant, int]] = [
    ("manual_duplicate", manual.manual_duplicate, 6),
    ("metadata_missing", manual.metadata_missing, 1),
    ("pass_not_found", manual.pass_not_found, 2),
    ("pass_type_unknown", odd_pass("pass_type_unknown", "pass_type_unknown", "legacy_type"), 1),
    ("pass_without_class_count",
     odd_pass("pass_without_class_count", "pass_without_class_count", "no_class_count"), 1),
    ("tenant_mismatch", manual.tenant_mismatch, 3),
    ("user_unknown", needs("user_unknown", "user_unknown", drop=("userId",),
                           drop_product=("userId",)), 1),
    ("duplicate_users", shapes.duplicate_users, 2),
    ("manual_recovery_later", shapes.manual_recovery_later, 3),
    ("not_a_pass_typed", shapes.not_a_pass_typed, 3),
    ("currency_differs", shapes.currency_differs, 3),
    ("wrong_user", shapes.wrong_user, 2),
    ("upgrade_incomplete", shapes.upgrade_incomplete, 2),
    ("upgrade_source_inactive", shapes.upgrade_source_inactive, 1),
    ("product_unlisted", shapes.product_unlisted, 2),
    ("upgrade_source_missing", manual.upgrade_source, 3),
    ("duplicate_subscriptions", found.duplicate_subscriptions, 1),
    ("mistyped_single", found.mistyped_single, 1),
    ("wrong_tenant", found.wrong_tenant, 1),
    ("alternate_shape", found.alternate_shape_present, 1),
    ("draft_only", shapes.draft_only, 3),
    ("refunded_but_active", _base("refunded_but_active"), 1),
    ("expired_on_arrival", found.expired_on_arrival, 1),
    ("null_payment_intent", found.null_payment_intent, 2),
    ("pass_id_from_product", created("pass_id_from_product", drop=("passId",)), 1),
    ("pass_by_description", found.pass_by_description, 1),
    ("tenantless_subscription", found.tenantless_subscription, 1),
    ("legacy_user_ref", found.legacy_user_ref, 1),
    ("payment_intent_only", found.payment_intent_only, 1),
    ("no_user_doc", created("no_user_doc", kind="none"), 1),
    ("metadata_missing_platform", manual.metadata_missing_platform, 1),
    ("pass_no_expiry", odd_pass("pass_no_expiry", "pass_type_unknown", "no_expiry"), 1),
    ("pass_zero_class_count",
     odd_pass("pass_zero_class_count", "pass_without_class_count", "zero_class_count"), 1),
    ("mistyped_raw_type", found.mistyped_raw_type, 1),
    ("payment_id_only", found.payment_id_only, 1),
    ("deterministic_id_only", found.deterministic_id_only, 1),
    ("manual_not_duplicate", found.manual_elsewhere, 3),
    ("pass_id_empty", created("pass_id_empty", set_meta={"passId": ""}), 1),
    ("all_keys_from_product", created("all_keys_from_product", drop=ALL_METADATA,
                                      promo=False), 1),
    ("user_id_from_product", created("user_id_from_product", drop=("userId",)), 1),
    ("draft_only_user", created("draft_only_user", kind="draft_only"), 1),
    ("prior_recovery_user", created("prior_recovery_user", kind="prior_recovery"), 1),
    ("legacy_user_created", created("legacy_user_created", kind="legacy"), 1),
    ("both_docs_created", created("both_docs_created", kind="both"), 1),
    ("canonical_draft_created", created("canonical_draft_created", kind="canonical_draft"), 1),
    ("nameless_buyer", found.nameless_buyer, 1),
    ("same_email", found.same_email_created, 1),
    ("unconnected_school", found.unconnected_school, 2),
    ("platform_no_tenant", created("platform_no_tenant", platform=True, with_tenant=False), 1),
    ("inactive_pass", created_named("inactive_pass", "Kizomba Drop In"), 1),
    ("promo", created_named("promo", "Monthly Unlimited", promo=True), 1),
    ("monthly", created_named("monthly", "Day Drop In"), 1),
    ("plain_validity", created_named("plain_validity", "10 Class Pass"), 1),
    ("fixed_date", created_named("fixed_date", "2 Course Pass"), 1),
    ("refund_partial", found.refund_partial_missing, 1),
    ("refund_failed", found.refund_failed, 1),
    ("refunded_in_parts", _base("refunded_in_parts"), 1),
    ("upgrade_created", _base("upgrade_created"), 1),
    ("upgrade_present", _base("upgrade_present"), 1),
    ("unpaid_with_subscription", _base("unpaid_with_subscription"), 1),
    ("open", _base("open"), 1),
    ("expired", _base("expired"), 1),
    ("class_dropin", _base("class_dropin"), 1),
    ("platform_plan", _base("platform_plan"), 1),
    ("no_payment", _base("no_payment"), 1),
    ("refunded", _base("refunded"), 1),
    ("not_a_pass", _base("not_a_pass"), 1),
    ("not_a_pass_platform", _base("not_a_pass_platform"), 1),
    ("platform_purchase", _base("platform_purchase"), 1),
]


def plant_all(b: Builder, sessions: int) -> int:
    """Plant every variant of every oddity (`sessions // 4000` times, at least once) when the
    world has 500 sessions or more; smaller worlds plant from the top of the list until a
    quarter of their sessions are planted. Returns how many sessions were planted."""
    times = max(1, sessions // 4000)
    budget = sessions if sessions >= 500 else sessions // 4
    before = len(b.truth)
    for _, plant, variants in PLANTS:
        for index in range(variants * times):
            if len(b.truth) - before >= budget:
                return budget
            plant(b, index)
    return len(b.truth) - before
