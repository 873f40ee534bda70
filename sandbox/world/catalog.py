"""The static part of a world: schools (tenants), their pass catalogues and classes.

The catalogue follows domain.md §5: every pass type, day and fixed-date validity, promo prices,
a deactivated pass that is still bought, plus the odd passes only planted sessions buy (legacy
`subscription` type, clip cards without a class count, no expiry configuration, a fixed expiry
already in the past).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from sandbox.world.ids import DAY_S, Ids, iso_ms, iso_s, ref

Doc = dict[str, Any]

SCHOOL_NAMES = [
    ("Dance City Demo", "dancecity-demo"),
    ("Salsa Studio Nord", "salsa-nord"),
    ("Tango Loft", "tango-loft"),
    ("Kizomba Corner", "kizomba-corner"),
    ("Ballet Bergen Demo", "ballet-bergen"),
    ("Swing Hall", "swing-hall"),
]

# (name, pass type, price NOK, validity, classesLimit, isActive, promo, weight for base purchases)
# validity: ("days", n) | ("date", "future") | ("plain", n) (validityDays without validityType)
Promo = tuple[str, str, int]
RegularSpec = tuple[str, str, int, tuple[str, Any], int | None, bool, Promo | None, int]
CLIP10: Promo = ("percentage", "CLIP10", 10)
AUTUMN300: Promo = ("fixed", "AUTUMN300", 300)
WELCOME15: Promo = ("percentage", "WELCOME15", 15)  # 15 % of 1490 gives a fractional price
REGULAR_PASSES: list[RegularSpec] = [
    ("Drop-in Class", "single", 250, ("days", 30), None, True, None, 20),
    ("Day Drop In", "unlimited", 400, ("days", 7), None, True, None, 8),
    ("Open week Trial Pass", "multi", 250, ("days", 7), 10, True, None, 10),
    ("10 Single Clip Card", "multi", 2000, ("days", 90), 10, True, CLIP10, 15),
    ("2 Course Pass", "multi-pass", 2290, ("date", "future"), 2, True, None, 8),
    ("3 Course Pass", "multi-pass", 2790, ("date", "future"), 3, True, AUTUMN300, 6),
    ("Monthly Unlimited", "unlimited", 1490, ("days", 30), None, True, WELCOME15, 10),
    ("10 Class Pass", "multi-pass", 1800, ("plain", 60), 10, True, None, 6),
    ("Kizomba Drop In", "single", 200, ("days", 14), None, False, None, 3),
]

# role -> (name, pass type, price, validity, classesLimit); only planted sessions buy these.
ODD_PASSES: dict[str, tuple[str, str, int, tuple[str, Any], Any]] = {
    "legacy_type": ("1 Course (8 weeks)", "subscription", 1290, ("days", 56), None),
    "no_class_count": ("Trial Clip Card", "multi", 300, ("days", 14), "absent"),
    "zero_class_count": ("Kids Clip Card", "multi-pass", 900, ("days", 30), 0),
    "no_expiry": ("Workshop Pass", "single", 350, ("days", None), None),
    "expired_fixed": ("Summer Clip Card", "multi", 2000, ("date", "past"), 10),
}

CLASS_TITLES = ["Salsa Beginners", "Bachata Open Level", "Kizomba Intermediate", "Zouk Basics"]


@dataclass
class School:
    """One tenant: its documents' ids, its connected account (or none) and its catalogue."""

    tenant_id: str
    name: str
    slug: str
    account: str | None
    passes: list[Doc] = field(default_factory=list)
    regular: list[Doc] = field(default_factory=list)
    weights: list[int] = field(default_factory=list)
    odd: dict[str, Doc] = field(default_factory=dict)
    classes: list[Doc] = field(default_factory=list)
    _cum: list[int] = field(default_factory=list)

    @property
    def cum_weights(self) -> list[int]:
        """Cumulative popularity of `regular` (for `random.choices`)."""
        if len(self._cum) != len(self.weights):
            self._cum = list(itertools.accumulate(self.weights))
        return self._cum

    def pass_named(self, name: str) -> Doc:
        """The published pass of this school with exactly this name."""
        return next(p for p in self.passes if p["name"] == name)


def _meta(ids: Ids, created_s: int) -> Doc:
    """Sanity system fields of a document created at `created_s`."""
    return {"_createdAt": iso_s(created_s), "_updatedAt": iso_s(created_s), "_rev": ids.rev()}


def build_schools(
    ids: Ids, rng: random.Random, count: int, *, now: int, since: int
) -> tuple[list[School], School, list[Doc]]:
    """`count` connected schools plus one school without a connected account, with their docs.

    Returns (connected schools, the unconnected school, Sanity documents).
    """
    docs: list[Doc] = []
    connected: list[School] = []
    for index in range(count + 1):
        name, slug = SCHOOL_NAMES[index % len(SCHOOL_NAMES)]
        if index >= len(SCHOOL_NAMES):
            name, slug = f"{name} {index}", f"{slug}-{index}"
        is_connected = index < count
        school = School(ids.sanity(), name, slug, ids.account() if is_connected else None)
        docs.append(_tenant_doc(ids, school, now))
        docs.extend(_catalogue(ids, rng, school, now=now, since=since))
        if is_connected:
            connected.append(school)
        else:
            unconnected = school
    return connected, unconnected, docs


def _tenant_doc(ids: Ids, school: School, now: int) -> Doc:
    created = now - 400 * DAY_S
    connect: Doc = {
        "accountStatus": "active" if school.account else "not_connected",
        "onboardingCompleted": school.account is not None,
        "chargesEnabled": school.account is not None,
        "payoutsEnabled": school.account is not None,
        "country": "NO",
        "currency": "nok",
        "applicationFeePercent": 5,
    }
    if school.account:
        connect = {"accountId": school.account, **connect}
        connect["connectedAt"] = iso_ms((created + 10 * DAY_S) * 1000)
        connect["lastSyncAt"] = iso_ms((now - DAY_S) * 1000)
    return {
        "_id": school.tenant_id,
        "_type": "tenant",
        **_meta(ids, created),
        "schoolName": school.name,
        "slug": {"_type": "slug", "current": school.slug},
        "status": "active",
        "ownerId": ids.clerk(),
        "contactEmail": f"post@{school.slug}.example.com",
        "settings": {
            "timezone": "Europe/Oslo",
            "currency": "USD",
            "allowPublicRegistration": True,
            "requireApproval": False,
        },
        "stripeConnect": connect,
        "subscription": {
            "plan": "pro",
            "stripeCustomerId": ids.stripe("cus", 14),
            "subscriptionId": ids.stripe("sub"),
            "expiresAt": iso_ms((now + 20 * DAY_S) * 1000),
        },
        "createdAt": iso_ms(created * 1000),
        "updatedAt": iso_ms(created * 1000),
    }


def _validity(kind: str, value: Any, *, now: int, since: int) -> Doc:
    if kind == "plain":
        return {"validityDays": value}
    if kind == "days":
        if value is None:
            return {"validityType": "days"}
        return {"validityType": "days", "validityDays": value}
    # Fixed dates at midnight UTC, far from the window so a run a little later sees the same thing.
    day = (now + 60 * DAY_S) if value == "future" else (since - 30 * DAY_S)
    return {"validityType": "date", "expiryDate": iso_ms((day - day % DAY_S) * 1000)}


def _pass_doc(
    ids: Ids,
    school: School,
    name: str,
    pass_type: str,
    price: int,
    validity: Doc,
    classes: Any,
    *,
    active: bool,
    now: int,
) -> Doc:
    created = now - 200 * DAY_S
    doc: Doc = {
        "_id": ids.sanity(),
        "_type": "pass",
        **_meta(ids, created),
        "name": name,
        "description": f"{name} at {school.name}",
        "type": pass_type,
        "price": price,
        **validity,
    }
    if classes is not None and classes != "absent":
        doc["classesLimit"] = classes
    doc.update(
        {
            "features": ["All levels"],
            "isActive": active,
            "promoActive": False,
            "createdAt": iso_ms(created * 1000),
            "updatedAt": iso_ms(created * 1000),
            "tenant": ref(school.tenant_id),
        }
    )
    return doc


def _catalogue(ids: Ids, rng: random.Random, school: School, *, now: int, since: int) -> list[Doc]:
    docs: list[Doc] = []
    for name, pass_type, price, (kind, value), classes, active, promo, weight in REGULAR_PASSES:
        validity = _validity(kind, value, now=now, since=since)
        doc = _pass_doc(ids, school, name, pass_type, price, validity, classes, active=active,
                        now=now)
        if promo:
            discount_type, code, amount = promo
            doc.update(
                promoActive=True,
                promoCode=code,
                promoDiscountType=discount_type,
                promoDiscountValue=amount,
            )
        school.regular.append(doc)
        school.weights.append(weight)
        docs.append(doc)
    for role, (name, pass_type, price, (kind, value), classes) in ODD_PASSES.items():
        validity = _validity(kind, value, now=now, since=since)
        doc = _pass_doc(ids, school, name, pass_type, price, validity, classes, active=True,
                        now=now)
        school.odd[role] = doc
        docs.append(doc)
    school.passes = list(docs)
    for title in CLASS_TITLES:
        class_doc = {
            "_id": ids.sanity(),
            "_type": "class",
            **_meta(ids, now - 100 * DAY_S),
            "title": title,
            "price": rng.choice([200, 250, 300]),
            "tenant": ref(school.tenant_id),
        }
        school.classes.append(class_doc)
        docs.append(class_doc)
    return docs
