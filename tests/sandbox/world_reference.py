"""A reference reading of the architecture's decision rules, applied to a generated world's data.

Test helper only: `sandbox.world.generate` records what each scenario *meant*; this module derives
the
outcome from the *data* alone (stripe.json + sanity.ndjson). The world tests require both to agree
for every session, so a plant that accidentally touches another session is caught. It also
reports sessions whose outcome would depend on the order of the rules (present AND needing a
person), which the generator promises never to produce.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

Doc = dict[str, Any]
DAY_MS = 86_400_000
CHECKOUT_CURRENCIES = ("usd", "nok", "eur", "sek", "dkk", "gbp")
MAPPED = {"single": "single", "multi-pass": "multi-pass", "multi": "clipcard",
          "unlimited": "monthly"}
VISIBLE = ("type", "startDate", "endDate", "passId", "user")


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def _iso(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _readable_date(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.strip())
    except ValueError:
        return False
    return True


def _number(value: Any) -> float | None:
    text = _text(value)
    return float(text) if text is not None else None


class Reference:
    """Indexes of one world, and `evaluate(account, session)` -> truth-like dict."""

    def __init__(self, stripe: Doc, sanity: list[Doc], now_s: int) -> None:
        self.now_ms = now_s * 1000
        published = [d for d in sanity if not d["_id"].startswith("drafts.")]
        self.tenants = {d["_id"]: d for d in published if d["_type"] == "tenant"}
        self.passes = {d["_id"]: d for d in published if d["_type"] == "pass"}
        self.tenant_of_account = {
            d["stripeConnect"]["accountId"]: d["_id"] for d in self.tenants.values()
            if d.get("stripeConnect", {}).get("accountId")}
        self.users_by_clerk: dict[str, list[Doc]] = defaultdict(list)
        self.users_by_id: dict[str, Doc] = {}
        for doc in published:
            if doc["_type"] == "user":
                self.users_by_id[doc["_id"]] = doc
                if doc.get("clerkId"):
                    self.users_by_clerk[doc["clerkId"]].append(doc)
        self.subs_published = {d["_id"]: d for d in published if d["_type"] == "subscription"}
        self.by_key: dict[str, list[Doc]] = defaultdict(list)  # published and drafts
        for doc in sanity:
            if doc["_type"] != "subscription":
                continue
            for field in ("stripeSessionId", "stripePaymentId", "stripePaymentIntentId",
                          "paymentId"):
                if _text(doc.get(field)):
                    self.by_key[doc[field]].append(doc)
            plain_id = doc["_id"].removeprefix("drafts.")
            if plain_id.startswith("subscription-"):
                self.by_key[plain_id.removeprefix("subscription-")].append(doc)
        self.subs_by_user: dict[str, list[Doc]] = defaultdict(list)  # drafts too
        for doc in sanity:
            if doc["_type"] == "subscription" and isinstance(doc.get("user"), dict):
                self.subs_by_user[doc["user"]["_ref"]].append(doc)
        self.products: dict[str, Doc] = {}
        self.refunded: dict[str, int] = defaultdict(int)
        for data in stripe["data"].values():
            for product in data["products"]:
                self.products[product["id"]] = product
            for refund in data["refunds"]:
                if refund["status"] in ("succeeded", "pending"):
                    self.refunded[refund["payment_intent"]] += refund["amount"]

    # --- helpers --------------------------------------------------------------------------------

    def _matches(self, session: Doc) -> list[Doc]:
        """Subscriptions (drafts included) that are this purchase, without duplicates."""
        found: dict[str, Doc] = {}
        for doc in self.by_key.get(session["id"], []):
            if doc.get("stripeSessionId") == session["id"] or doc["_id"].removeprefix(
                    "drafts.") == f"subscription-{session['id']}":
                found[doc["_id"]] = doc
        intent = _text(session.get("payment_intent"))
        if intent:
            for doc in self.by_key.get(intent, []):
                found[doc["_id"]] = doc
        return list(found.values())

    def _active(self, doc: Doc) -> bool:
        return bool(doc.get("isActive")) and "endDate" in doc and _ms(doc["endDate"]) > self.now_ms

    def _tenant_passes(self, tenant_id: str) -> list[Doc]:
        return [p for p in self.passes.values() if p["tenant"]["_ref"] == tenant_id]

    # --- the rules -------------------------------------------------------------------------------

    def evaluate(self, account: str, session: Doc) -> Doc:
        """The outcome of one session per the decision rules."""
        result: Doc = {"outcome": "ignored", "reason": None, "anomalies": [], "expected": None,
                       "expected_user": None, "deactivates": None, "order_dependent": False}
        metadata = session["metadata"]
        item = session["_line_items"][0]
        product = self.products[item["price"]["product"]]["metadata"]
        connected_tenant = self.tenant_of_account.get(account)
        if session["status"] != "complete":
            return result | {"reason": "not_complete"}
        if session["mode"] == "subscription":
            return result | {"reason": "platform_plan"}
        if "classId" in metadata:
            return result | {"reason": "class_dropin"}
        by_name = []
        if connected_tenant:
            by_name = [p for p in self._tenant_passes(connected_tenant)
                       if p["name"] == item["description"]]
        evidence = (metadata.get("type") in ("pass_purchase", "pass_upgrade")
                    or _text(metadata.get("passId")) or _text(product.get("passId"))
                    or len(by_name) == 1)
        explicit = _text(metadata.get("type"))
        if not evidence or explicit not in (None, "pass_purchase", "pass_upgrade"):
            return result | {"reason": "not_a_pass"}
        if session["payment_status"] == "unpaid":
            return result | {"outcome": "pending", "reason": "async_payment"}
        if session["payment_status"] != "paid":
            return result | {"reason": "not_paid"}
        matches = self._matches(session)
        published = [d for d in matches if not d["_id"].startswith("drafts.")]
        intent = _text(session.get("payment_intent"))
        if intent and self.refunded[intent] >= session["amount_total"]:
            anomalies = ["refunded_but_active"] if any(map(self._active, published)) else []
            return result | {"reason": "refunded", "anomalies": anomalies}

        keys = {key: _text(metadata.get(key)) for key in
                ("passId", "userId", "tenantId", "upgradeFromSubscriptionId")}
        if keys["passId"] is None or keys["userId"] is None:
            for key in keys:
                keys[key] = keys[key] or _text(product.get(key))
        keys["kind"] = metadata.get("type")
        manual_reason = self._resolve(account, session, keys, by_name, result)
        if matches:
            # Drafts count: the app reads in the raw perspective. Present wins over every
            # needs_manual reason, and the generator never plants both on one session.
            result["order_dependent"] = manual_reason not in (None, "manual_duplicate_suspected")
            return self._present(result, matches, keys, connected_tenant)
        if manual_reason is not None:
            return result | {"outcome": "needs_manual", "reason": manual_reason, "anomalies": []}
        result["anomalies"].sort()
        return result

    def _resolve(self, account: str, session: Doc, keys: Doc, by_name: list[Doc],
                 result: Doc) -> str | None:
        """Fills `result` for a creation and returns None, or returns the needs_manual reason."""
        pass_id = keys["passId"] or (by_name[0]["_id"] if len(by_name) == 1 else None)
        if pass_id is None:
            return "metadata_missing"
        pass_doc = self.passes.get(pass_id)
        if pass_doc is None:
            return "pass_not_found"
        tenant = self.tenant_of_account.get(account) or keys["tenantId"] or \
            pass_doc["tenant"]["_ref"]
        if tenant not in self.tenants or tenant != pass_doc["tenant"]["_ref"] or (
                keys["tenantId"] and keys["tenantId"] != tenant):
            return "tenant_mismatch"
        if pass_doc["type"] not in MAPPED:
            return "pass_type_unknown"
        limit = pass_doc.get("classesLimit")
        if pass_doc["type"] in ("multi", "multi-pass") and (
                not isinstance(limit, int | float) or limit < 1):
            return "pass_without_class_count"
        start = session["created"] * 1000
        if pass_doc.get("validityType") == "date" and pass_doc.get("expiryDate"):
            end = _ms(pass_doc["expiryDate"])
        elif pass_doc.get("validityType") in ("days", None) and pass_doc.get("validityDays"):
            end = start + pass_doc["validityDays"] * DAY_MS
        else:
            return "pass_type_unknown"
        clerk = keys["userId"]
        if clerk is None:
            return "user_unknown"
        linked = self.users_by_clerk.get(clerk, [])
        ours = [d for d in linked if d["_id"] == f"user-{clerk}"]
        oldest = sorted(linked, key=lambda d: (d.get("_createdAt", "~"), d["_id"]))
        chosen = (ours or oldest)[:1]
        user_ref = chosen[0]["_id"] if chosen else clerk if clerk in self.users_by_id else None
        upgrade_from = None
        deactivates = None
        if session["metadata"].get("type") == "pass_upgrade":
            upgrade_from = keys["upgradeFromSubscriptionId"]
            source = self.subs_published.get(upgrade_from or "")
            if source is None:
                return "upgrade_source_missing"
            user_ref = source["user"]["_ref"]
            deactivates = upgrade_from if source.get("isActive") is not False else None
        elif len(linked) > 1:
            result["anomalies"].append("duplicate_users")
        refs = {clerk} | {d["_id"] for d in linked}
        if clerk in self.users_by_id:
            refs.add(clerk)
        if self._manual_duplicate(refs, pass_doc, session["created"] * 1000):
            return "manual_duplicate_suspected"
        if user_ref is None:
            user_ref = f"user-{clerk}"
            details = session.get("customer_details") or {}
            result["expected_user"] = {
                "_id": user_ref, "_type": "user", "clerkId": clerk,
                "name": details.get("name") or "Customer", "email": details.get("email") or "",
                "role": "student", "isActive": True}
        connect = self.tenants[tenant].get("stripeConnect") or {}
        school_currency = str(connect.get("currency") or "").lower()
        if school_currency not in CHECKOUT_CURRENCIES:
            school_currency = "nok"
        if str(session.get("currency") or "").lower() not in ("", school_currency):
            result["anomalies"].append("currency_differs")
        result.update(outcome="created", deactivates=deactivates,
                      expected=self._document(session, pass_doc, tenant, user_ref,
                                              upgrade_from, start, end))
        if end <= self.now_ms or end <= start:
            result["anomalies"].append("expired_on_arrival")
        return None

    def _manual_duplicate(self, refs: set[str], pass_doc: Doc, created_ms: int) -> bool:
        """§4#16: no real Stripe session id nor payment intent, same person and pass, starting
        no earlier than a day before the purchase (or with no date at all)."""
        for ref in refs:
            for doc in self.subs_by_user.get(ref, []):
                pass_ref = doc.get("pass")["_ref"] if isinstance(doc.get("pass"), dict) else None
                same_pass = pass_doc["_id"] in (doc.get("passId"), pass_ref) or (
                    not doc.get("passId") and not pass_ref
                    and doc.get("passName") == pass_doc["name"])
                session_id = str(doc.get("stripeSessionId") or "")
                real = session_id.startswith(("cs_test_", "cs_live_")) or any(
                    str(doc.get(f) or "").startswith("pi_") for f in (
                        "stripePaymentId", "stripePaymentIntentId", "paymentId"))
                when = doc.get("startDate") or doc.get("purchaseDate") or doc.get("_createdAt")
                if same_pass and not real and (
                        not when or _ms(when) >= created_ms - DAY_MS):
                    return True
        return False

    def _document(self, session: Doc, pass_doc: Doc, tenant: str, user_ref: str,
                  upgrade_from: str | None, start: int, end: int) -> Doc:
        metadata, amount = session["metadata"], session["amount_total"]
        doc: Doc = {"_id": f"subscription-{session['id']}", "_type": "subscription",
                    "user": {"_type": "reference", "_ref": user_ref},
                    "tenant": {"_type": "reference", "_ref": tenant},
                    "type": MAPPED[pass_doc["type"]], "startDate": _iso(start),
                    "endDate": _iso(end), "passId": pass_doc["_id"],
                    "passName": pass_doc["name"], "stripePaymentId": session["payment_intent"],
                    "stripeSessionId": session["id"], "isActive": True}
        if pass_doc["type"] != "unlimited":
            doc["remainingClips"] = 1 if pass_doc["type"] == "single" else pass_doc["classesLimit"]
        if upgrade_from is None:
            paid = amount / 100 if amount else pass_doc["price"]
            original, final = _number(metadata.get("originalPrice")), _number(
                metadata.get("finalPrice"))
            doc.update(purchasePrice=paid,
                       originalPrice=pass_doc["price"] if original is None else original,
                       finalPrice=paid if final is None else final,
                       discountAmount=_number(metadata.get("discountAmount")) or 0,
                       promoCode=metadata.get("promoCode") or None)
        else:
            new_price = _number(metadata.get("newPassPrice"))
            doc.update(purchasePrice=pass_doc["price"] if new_price is None else new_price,
                       isUpgrade=True, upgradedFromSubscriptionId=upgrade_from,
                       upgradeCost=_number(metadata.get("upgradeCost")) or amount / 100)
        return doc

    def _present(self, result: Doc, published: list[Doc], keys: Doc,
                 connected_tenant: str | None) -> Doc:
        anomalies = []
        pass_doc = self.passes.get(keys["passId"] or "")
        tenant = connected_tenant or keys["tenantId"] or (
            pass_doc["tenant"]["_ref"] if pass_doc else None)
        if len({d["_id"].removeprefix("drafts.") for d in published}) > 1:
            anomalies.append("duplicate_subscriptions")
        if all(d["_id"].startswith("drafts.") for d in published):
            anomalies.append("draft_only")
        clerk = keys["userId"]
        refs = {clerk} | {d["_id"] for d in self.users_by_clerk.get(clerk or "", [])}
        if clerk in self.users_by_id:
            refs.add(clerk)
        source = self.subs_published.get(keys["upgradeFromSubscriptionId"] or "")
        if source is not None and keys.get("kind") == "pass_upgrade" and source.get(
                "isActive") is not False and not source.get("upgradedToPassId"):
            anomalies.append("upgrade_incomplete")
        for doc in published:
            owner = doc["user"]["_ref"] if isinstance(doc.get("user"), dict) else None
            if clerk and owner is not None and owner not in refs:
                anomalies.append("wrong_user")
            # Against the purchase's pass; without a mapped type, a type the app does not know.
            expected = MAPPED.get(pass_doc["type"]) if pass_doc else None
            if doc.get("type") not in (None, "") and (
                    doc["type"] != expected if expected else doc["type"] not in MAPPED.values()):
                anomalies.append("mistyped_subscription")
            own = doc.get("passId") or (doc.get("pass") or {}).get("_ref")
            if isinstance(doc.get("tenant"), dict):
                if doc["tenant"]["_ref"] != tenant:
                    anomalies.append("wrong_tenant")
            elif own not in {p["_id"] for p in self._tenant_passes(tenant or "")}:
                anomalies.append("wrong_tenant")
            if any(doc.get(field) in (None, "") for field in VISIBLE) or not all(
                    _readable_date(doc[f]) for f in ("startDate", "endDate")
                    if doc.get(f) not in (None, "")):
                anomalies.append("invisible_shape")
        return result | {"outcome": "already_present", "anomalies": sorted(set(anomalies)),
                         "expected": None, "expected_user": None, "deactivates": None}
