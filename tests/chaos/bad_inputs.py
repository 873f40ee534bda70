"""A corpus of bad inputs: sessions, line items and Sanity documents the job must survive.

One small hand-made world (two schools, good and broken passes, a few students) and a list
of `Case`s, each a raw session (or anything in its place) and the outcome the rules of
docs/architecture.md give it. `mini_world` writes that world for the stand-ins, so a sample
of the corpus also goes through the real CLI.

Ids here are plain test ids; e-mails are example.* addresses.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

PLATFORM = "platform"
T_A = "tenantChaosA0000000001"
T_B = "tenantChaosNoSlug00002"  # a school without a slug
ACCT_A = "acct_1ChaosSchoolA0001"
ACCT_B = "acct_1ChaosSchoolB0002"
ACCT_NOBODY = "acct_1ChaosNobody00003"

P_CLIP = "passChaosClip10000001"
P_SINGLE = "passChaosSingle000002"
P_B = "passChaosOfSchoolB0003"
P_DUP_NAME_1 = "passChaosDupName00004"
P_DUP_NAME_2 = "passChaosDupName00005"
P_NO_NAME = "passChaosNoName000006"
BROKEN_PASSES: dict[str, dict[str, Any]] = {
    "passChaosNoType0000010": {"type": None},
    "passChaosCourse0000011": {"type": "subscription"},
    "passChaosUpperType0012": {"type": "MULTI"},
    "passChaosNoClasses0013": {"classesLimit": None},
    "passChaosStrClasses014": {"classesLimit": "10"},
    "passChaosZeroClasses15": {"classesLimit": 0},
    "passChaosHalfClasses16": {"classesLimit": 2.5},
    "passChaosNoExpiry00017": {"validityType": None, "validityDays": None},
    "passChaosNegDays000018": {"validityDays": -5},
    "passChaosStrDays000019": {"validityDays": "30"},
    "passChaosBadDate000020": {"validityType": "date", "expiryDate": "soon",
                               "validityDays": None},
    "passChaosNoTenant00021": {"tenant": None},
}

USER = "user_2ChaosStudentOne01"
USER_DOC = "userDocChaosStudent001"
OTHER_USER = "user_2ChaosStudentTwo02"
OTHER_USER_DOC = "userDocChaosStudent002"
TWIN = "user_2ChaosTwinAccount3"
OLD_SUB = "subChaosOldOfStudent01"
OTHER_SUB = "subChaosOfOtherStudent"
DRAFT_SUB = "subChaosDraftOnly00001"

EMAIL = "student.one@example.org"


def _ref(target: str) -> dict[str, str]:
    return {"_type": "reference", "_ref": target}


def _pass(pid: str, tenant: str | None = T_A, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": pid, "_type": "pass", "name": f"Chaos {pid[9:]}", "type": "multi",
        "price": 2000, "validityType": "days", "validityDays": 90, "classesLimit": 10,
        "isActive": True, "tenant": _ref(tenant) if tenant else None}
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


def sanity_docs() -> list[dict[str, Any]]:
    """Schools (one without a slug), good and broken passes, students, subscriptions."""
    docs: list[dict[str, Any]] = [
        {"_id": T_A, "_type": "tenant", "schoolName": "Chaos Dance A",
         "slug": {"_type": "slug", "current": "chaos-a"},
         "stripeConnect": {"accountId": ACCT_A, "currency": "nok", "chargesEnabled": True}},
        {"_id": T_B, "_type": "tenant", "schoolName": "Chaos Dance B (no slug)",
         "stripeConnect": {"accountId": ACCT_B, "currency": "nok", "chargesEnabled": True}},
        _pass(P_CLIP, name="10 Clip Card"),
        _pass(P_SINGLE, name="Drop-in", type="single", price=250, validityDays=30),
        _pass(P_B, tenant=T_B, name="B Monthly", type="unlimited", price=900, validityDays=30),
        _pass(P_DUP_NAME_1, name="Same Name"),
        _pass(P_DUP_NAME_2, name="Same Name"),
        _pass(P_NO_NAME, name=None),
        {"_id": USER_DOC, "_type": "user", "clerkId": USER, "name": "Student One",
         "email": EMAIL, "role": "student"},
        {"_id": OTHER_USER_DOC, "_type": "user", "clerkId": OTHER_USER, "name": "Student Two",
         "email": "student.two@example.org", "role": "student"},
        {"_id": "userDocChaosTwin000001", "_type": "user", "clerkId": TWIN, "name": "Twin"},
        {"_id": "userDocChaosTwin000002", "_type": "user", "clerkId": TWIN, "name": "Twin"},
        _sub(OLD_SUB, USER_DOC),
        _sub(OTHER_SUB, OTHER_USER_DOC),
        _sub(f"drafts.{DRAFT_SUB}", USER_DOC),
    ]
    docs += [_pass(pid, **fields) for pid, fields in BROKEN_PASSES.items()]
    return docs


def _sub(sid: str, user_doc: str) -> dict[str, Any]:
    return {"_id": sid, "_type": "subscription", "user": _ref(user_doc), "tenant": _ref(T_A),
            "type": "single", "startDate": "2026-01-01T00:00:00.000Z",
            "endDate": "2027-01-01T00:00:00.000Z", "remainingClips": 1, "passId": P_SINGLE,
            "passName": "Drop-in", "isActive": True, "stripePaymentId": "pi_chaosOld000001",
            "stripeSessionId": f"cs_test_chaosOld{sid[-6:]}"}


def session(n: str, now_s: int, *, account: str = ACCT_A, **overrides: Any) -> dict[str, Any]:
    """A valid paid clip-card purchase of USER at school A, one hour old; `overrides` replace
    top-level fields (`metadata` replaces the whole metadata; `md` merges into it)."""
    md = {"passId": P_CLIP, "passType": "multi", "userId": USER, "type": "pass_purchase",
          "tenantId": T_A if account == ACCT_A else T_B, "tenantSlug": "chaos-a"}
    md.update(overrides.pop("md", {}))
    raw: dict[str, Any] = {
        "id": f"cs_test_chaos{n}", "object": "checkout.session", "created": now_s - 3600,
        "status": "complete", "mode": "payment", "payment_status": "paid",
        "amount_total": 200000, "currency": "nok", "livemode": False,
        "payment_intent": f"pi_chaos{n}",
        "customer_details": {"email": EMAIL, "name": "Student One"}, "metadata": md}
    raw.update(overrides)
    return raw


Expect = tuple[str, str | None]  # (outcome, reason); reason None: any / none


@dataclass(frozen=True)
class Case:
    """One bad input and what the rules make of it."""

    name: str
    raw: Any
    expect: Expect
    account: str = ACCT_A
    line_items: Any = None  # raw line items (Stripe list shape) when the session needs them
    cli: bool = True  # servable by the Stripe stand-in (an object with a usable id)
    rule: str = ""  # why this outcome (the rule of docs/architecture.md)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def session_id(self) -> str:
        raw = self.raw
        sid = raw.get("id") if isinstance(raw, Mapping) else None
        return sid if isinstance(sid, str) else ""


def _md(**changes: Any) -> dict[str, Any]:
    return {"md": changes}


def _without(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def drop(raw: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(raw)
        out["metadata"].pop(key, None)
        return out

    return drop


def _line_items(description: str | None, product_metadata: Any = None) -> dict[str, Any]:
    product = {"id": "prod_chaos", "object": "product", "name": description,
               "metadata": product_metadata if product_metadata is not None else {}}
    return {"object": "list", "has_more": False, "data": [{
        "id": "li_chaos", "object": "item", "description": description, "quantity": 1,
        "price": {"id": "price_chaos", "object": "price", "product": product}}]}


def cases(now_s: int) -> list[Case]:
    """The corpus. Every case that is not `created` must write nothing."""
    s = lambda n, **o: session(n, now_s, **o)  # noqa: E731 - a local shorthand
    MALFORMED = ("failed", None)
    out = [
        # ---- not a session at all (rule 1: malformed -> failed with its cause)
        Case("a list instead of a session", ["cs_test_chaosList"], MALFORMED, cli=False),
        Case("a string instead of a session", "cs_test_chaosString", MALFORMED, cli=False),
        Case("null instead of a session", None, MALFORMED, cli=False),
        Case("no id", {k: v for k, v in s("NoId").items() if k != "id"}, MALFORMED, cli=False),
        Case("id is a number", s("IdNum", id=12345), MALFORMED, cli=False),
        Case("id with a dot (Sanity: never public)", s("Dot", id="cs_test_chaos.Dot"),
             MALFORMED),
        Case("id with a slash and a space", s("Slash", id="cs_test_chaos/Sl ash"), MALFORMED),
        Case("id with non-ASCII letters", s("Uni", id="cs_test_chaosÆøå"), MALFORMED),
        Case("id longer than a Sanity id allows", s("Long", id="cs_test_" + "x" * 200),
             MALFORMED),
        Case("created is a string", s("CreStr", created=str(now_s - 3600),
                                      _created=now_s - 3600), MALFORMED),
        Case("created is zero", s("CreZero", created=0, _created=now_s - 3600), MALFORMED),
        Case("created is negative", s("CreNeg", created=-5, _created=now_s - 3600),
             MALFORMED),
        Case("created is a boolean", s("CreBool", created=True, _created=now_s - 3600),
             MALFORMED),
        Case("created is a float", s("CreFloat", created=float(now_s - 3600),
                                     _created=now_s - 3600), MALFORMED),
        Case("created a day in the future", s("Future", created=now_s + 86_400,
                                              _created=now_s - 3600), MALFORMED),
        Case("metadata is a string", s("MdStr", metadata="passId=x"), MALFORMED),
        Case("metadata is a list", s("MdList", metadata=[P_CLIP, USER]), MALFORMED),
        Case("amount_total is a string", s("AmtStr", amount_total="2000"), MALFORMED),
        Case("amount_total is a float", s("AmtFloat", amount_total=2000.5), MALFORMED),
        Case("amount_total is negative", s("AmtNeg", amount_total=-200000), MALFORMED,
             rule="a paid session cannot have a negative total (found by this corpus: it "
                  "was written as purchasePrice -2000)"),
        # ---- ignored by the classification rules 2-6
        Case("null everywhere", {"id": "cs_test_chaosNulls", "created": now_s - 3600,
                                 "status": None, "mode": None, "payment_status": None,
                                 "metadata": None, "amount_total": None, "currency": None,
                                 "customer_details": None, "payment_intent": None,
                                 "livemode": None},
             ("ignored", "not_complete"), cli=False,
             rule="rule 2 (the stand-in lists complete sessions only, as Stripe does)"),
        Case("status in capitals", s("Caps", status="COMPLETE"), ("ignored", "not_complete"),
             cli=False, rule="rule 2"),
        Case("payment_status null", s("PayNull", payment_status=None),
             ("ignored", "not_paid"), rule="rule 6"),
        Case("amount 0, no payment required", s("Zero", amount_total=0,
                                                 payment_status="no_payment_required"),
             ("ignored", "not_paid"), rule="rule 6"),
        Case("mode subscription with pass metadata", s("Sub", mode="subscription"),
             ("ignored", "platform_plan"), rule="rule 3"),
        Case("classId beside pass metadata", s("Class", **_md(classId="classChaos1")),
             ("ignored", "class_dropin"), rule="rule 4"),
        Case("metadata null", s("MdNull", metadata=None), ("ignored", "not_a_pass"),
             line_items=_line_items(None), rule="rule 5: no evidence at all"),
        Case("type in capitals and no passId",
             s("TypeCaps", metadata={"type": "PASS_PURCHASE", "userId": USER}),
             ("ignored", "not_a_pass"), line_items=_line_items("Unknown thing"),
             rule="rule 5: only the exact kinds count"),
        # ---- needs a person: keys of the wrong type, size or characters
        Case("passId is a number", s("PidNum", **_md(passId=123)),
             ("needs_manual", "metadata_missing"), line_items=_line_items(None),
             rule="values that are not non-empty strings count as missing"),
        Case("passId is empty", s("PidEmpty", **_md(passId="")),
             ("needs_manual", "metadata_missing"), line_items=_line_items(None)),
        Case("passId is blanks", s("PidBlank", **_md(passId="   ")),
             ("needs_manual", "metadata_missing"), line_items=_line_items(None)),
        Case("passId is an object", s("PidObj", **_md(passId={"id": P_CLIP})),
             ("needs_manual", "metadata_missing"), line_items=_line_items(None), cli=False,
             rule="Stripe metadata values are strings; pure core only"),
        Case("passId of 500 characters", s("PidLong", **_md(passId="p" * 500)),
             ("needs_manual", "pass_not_found")),
        Case("passId with non-ASCII letters", s("PidUni", **_md(passId="passÆøå")),
             ("needs_manual", "pass_not_found")),
        Case("passId of a draft pass", s("PidDraft", **_md(passId=f"drafts.{P_CLIP}")),
             ("needs_manual", "pass_not_found")),
        Case("userId missing", _without("userId")(s("UidNone")),
             ("needs_manual", "user_unknown"), line_items=_line_items("10 Clip Card")),
        Case("userId is a list", s("UidList", **_md(userId=[USER])),
             ("needs_manual", "user_unknown"), line_items=_line_items("10 Clip Card"),
             cli=False),
        Case("userId with characters Sanity ids forbid", s("UidDot", **_md(userId="user_a.b/c")),
             ("needs_manual", "user_unknown"),
             rule="user-<clerk id> would be a non-public or invalid id"),
        Case("userId with non-ASCII letters", s("UidUni", **_md(userId="user_Åse")),
             ("needs_manual", "user_unknown")),
        Case("userId of 500 characters", s("UidLong", **_md(userId="user_" + "u" * 495)),
             ("needs_manual", "user_unknown")),
        Case("tenantId of another school", s("TenB", **_md(tenantId=T_B)),
             ("needs_manual", "tenant_mismatch")),
        Case("tenantId unknown", s("TenUnknown", **_md(tenantId="tenantNobody")),
             ("needs_manual", "tenant_mismatch")),
        Case("pass of another school", s("PassB", **_md(passId=P_B)),
             ("needs_manual", "tenant_mismatch")),
        Case("upgrade of another student's subscription",
             s("UpOther", **_md(type="pass_upgrade", upgradeFromSubscriptionId=OTHER_SUB)),
             ("needs_manual", "upgrade_source_missing"),
             rule="found by this corpus: the other student's pass was deactivated and the new "
                  "one given to them"),
        Case("platform session naming an unknown school",
             s("PlatUnknown", account=PLATFORM, **_md(tenantId="tenantNobody")),
             ("needs_manual", "tenant_mismatch"), account=PLATFORM),
        Case("session on an account no school has", s("Nobody", account=ACCT_NOBODY),
             ("needs_manual", "tenant_mismatch"), account=ACCT_NOBODY, cli=False,
             rule="the job never reads an account no school names"),
        Case("upgrade without a source", s("UpNoSrc", **_md(type="pass_upgrade")),
             ("needs_manual", "upgrade_source_missing"), line_items=_line_items("10 Clip Card")),
        Case("upgrade from a missing subscription",
             s("UpMissing", **_md(type="pass_upgrade", upgradeFromSubscriptionId="subNope")),
             ("needs_manual", "upgrade_source_missing")),
        Case("upgrade from a draft-only subscription",
             s("UpDraft", **_md(type="pass_upgrade", upgradeFromSubscriptionId=DRAFT_SUB)),
             ("needs_manual", "upgrade_source_missing")),
        Case("line items that are junk", s("JunkItems", metadata={"type": "pass_purchase",
                                                                   "userId": USER}),
             ("needs_manual", "metadata_missing"),
             line_items={"object": "list", "data": ["li_1", None, {"price": "price_x"}]},
             cli=False),
        Case("description naming two passes", s("TwoNames", metadata={"type": "pass_purchase",
                                                                     "userId": USER}),
             ("needs_manual", "metadata_missing"), line_items=_line_items("Same Name")),
    ]
    # ---- a pass document missing or mangling fields
    reasons = {"passChaosNoType0000010": "pass_type_unknown",
               "passChaosCourse0000011": "pass_type_unknown",
               "passChaosUpperType0012": "pass_type_unknown",
               "passChaosNoClasses0013": "pass_without_class_count",
               "passChaosStrClasses014": "pass_without_class_count",
               "passChaosZeroClasses15": "pass_without_class_count",
               "passChaosHalfClasses16": "pass_without_class_count",
               "passChaosNoExpiry00017": "pass_type_unknown",
               "passChaosNegDays000018": "pass_type_unknown",
               "passChaosStrDays000019": "pass_type_unknown",
               "passChaosBadDate000020": "pass_type_unknown",
               "passChaosNoTenant00021": "tenant_mismatch"}
    for pid, fields in BROKEN_PASSES.items():
        out.append(Case(f"pass with {fields}", s(f"Pass{pid[9:]}", **_md(passId=pid)),
                        ("needs_manual", reasons[pid])))
    return out


def harmless_cases(now_s: int) -> list[Case]:
    """Odd but decidable: the rules create these, exactly as they say."""
    s = lambda n, **o: session(n, now_s, **o)  # noqa: E731 - a local shorthand
    return [
        Case("non-ASCII buyer name and e-mail",
             s("UniBuyer", customer_details={"email": "åse.ødegård@eksempel.example",
                                             "name": "Åse Ødegård"}),
             ("created", None)),
        Case("a school without a slug", s("NoSlug", account=ACCT_B, **_md(passId=P_B)),
             ("created", None), account=ACCT_B, rule="the slug is never used"),
        Case("amount_total null", s("AmtNull", amount_total=None), ("created", None),
             rule="§2.6: purchasePrice = amount_total ? amount_total/100 : pass.price"),
        Case("a pass without a name", s("NoName", **_md(passId=P_NO_NAME)), ("created", None),
             rule="passName is display only"),
        Case("userId of two user documents", s("Twin", **_md(userId=TWIN)), ("created", None),
             rule="§2.3 step 6: the app shows a pass linked to any of them; the oldest (then "
                  "the smallest id) is linked, anomaly duplicate_users"),
        Case("currency other than the school's", s("Usd", currency="usd"), ("created", None),
             rule="§2.1: currency is history (the school may have changed it); created as "
                  "the webhook writes it, anomaly currency_differs"),
    ]


def huge_page(now_s: int, size: int = 100, keys: int = 50, length: int = 500
              ) -> list[dict[str, Any]]:
    """`size` valid purchases, each with `keys` metadata keys of `length` characters."""
    page = []
    for n in range(size):
        raw = session(f"Huge{n:03d}", now_s)
        md = raw["metadata"]
        for k in range(keys - len(md)):
            md[f"note{k:02d}"] = (f"{k:02d}ø" + "n" * length)[:length]
        page.append(raw)
    return page


def mini_world(now_s: int, sessions: list[Case], extra_sessions: list[dict[str, Any]] = (),
               keys: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """stripe.json for the Stripe stand-in serving the given cases (and extra sessions)."""
    data: dict[str, dict[str, list[Any]]] = {}
    for account in (PLATFORM, ACCT_A, ACCT_B):
        data[account] = {"checkout_sessions": [], "products": [], "events": [], "refunds": [],
                         "webhook_endpoints": []}
    for case in sessions:
        raw = copy.deepcopy(case.raw)
        if case.line_items is not None:
            items = copy.deepcopy(case.line_items["data"])
            for item in items:
                product = item["price"]["product"]
                product = {**product, "id": f"prod_x{raw['id'][8:]}"}
                item["price"]["product"] = product["id"]
                data[case.account]["products"].append(product)
            raw["_line_items"] = items
        data[case.account]["checkout_sessions"].append(raw)
    for raw in extra_sessions:
        data[ACCT_A]["checkout_sessions"].append(copy.deepcopy(raw))
    account = {"object": "account", "charges_enabled": True, "country": "NO"}
    return {
        "keys": dict(keys or {"sk_test_sandbox": {"mode": "test", "accounts": "*",
                                                  "permissions": "*"}}),
        "platform": {**account, "id": "acct_1ChaosPlatform0000"},
        "accounts": {a: {**account, "id": a} for a in (ACCT_A, ACCT_B)},
        "data": data,
    }
