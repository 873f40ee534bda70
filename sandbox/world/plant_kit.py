"""Shared moves of the planted scenarios: a fresh student, and a purchase that is lost (to be
created), present (to be bent by the plant) or left to a person.

Every plant uses a student of its own (`People.new`), so what it plants cannot leak into another
session's outcome (a manual subscription only ever meets its own purchase, and so on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox.world.build import Builder, Doc
from sandbox.world.catalog import School
from sandbox.world.people import Student

Plant = Callable[[Builder, int], None]
ALL_METADATA = ("passId", "passType", "userId", "type", "tenantId", "tenantSlug",
                "originalPrice", "finalPrice", "discountAmount", "promoCode")


def fresh(b: Builder, kind: str = "canonical", school: School | None = None
          ) -> tuple[School, Student]:
    """A new student of `kind` (see world_people), at `school` or a random one."""
    school = school or b.school()
    return school, b.people.new(school, kind)


def lost(b: Builder, scenario: str, *, kind: str = "canonical", school: School | None = None,
         pass_doc: Doc | None = None, tenant: School | None = None, **kwargs: Any
         ) -> tuple[Doc, str, School, Student]:
    """A purchase whose webhook was lost and that a correct reconciler creates."""
    school, student = fresh(b, kind, school)
    pass_doc = pass_doc or b.regular_pass(school)
    session, account = b.purchase(school, pass_doc, student, delivered=False, **kwargs)
    b.record_created(session, account, scenario, pass_doc=pass_doc,
                     tenant_id=(tenant or school).tenant_id, student=student)
    return session, account, school, student


def present(b: Builder, scenario: str, *, kind: str = "canonical", school: School | None = None,
            pass_doc: Doc | None = None, anomalies: tuple[str, ...] = (),
            user_ref: str | None = None, **kwargs: Any) -> tuple[Doc, str, School, Doc]:
    """A purchase whose webhook worked; returns its subscription for the plant to bend."""
    school, student = fresh(b, kind, school)
    pass_doc = pass_doc or b.regular_pass(school)
    session, account = b.purchase(school, pass_doc, student, **kwargs)
    doc = b.webhook_sub(session, account, pass_doc, school.tenant_id,
                        user_ref or student.canonical_id or student.clerk_id)
    b.record(session, account, "already_present", scenario, anomalies=anomalies)
    return session, account, school, doc


def manual(b: Builder, scenario: str, reason: str, *, kind: str = "canonical",
           school: School | None = None, pass_doc: Doc | None = None, **kwargs: Any
           ) -> tuple[Doc, School, Student]:
    """A purchase a correct reconciler leaves to a person (`reason`); the webhook errored."""
    school, student = fresh(b, kind, school)
    pass_doc = pass_doc or b.regular_pass(school)
    session, account = b.purchase(school, pass_doc, student, **kwargs)
    b.record(session, account, "needs_manual", scenario, reason=reason)
    return session, school, student


def created(scenario: str, **kwargs: Any) -> Plant:
    """A plant of one lost purchase (`kwargs` go to `lost` / `Builder.purchase`)."""
    def plant(b: Builder, i: int) -> None:
        lost(b, scenario, **kwargs)
    return plant


def created_named(scenario: str, name: str, **kwargs: Any) -> Plant:
    """A plant of one lost purchase of the pass called `name`."""
    def plant(b: Builder, i: int) -> None:
        school = b.school()
        lost(b, scenario, school=school, pass_doc=school.pass_named(name), **kwargs)
    return plant


def needs(scenario: str, reason: str, **kwargs: Any) -> Plant:
    """A plant of one purchase that needs a person for `reason`."""
    def plant(b: Builder, i: int) -> None:
        manual(b, scenario, reason, **kwargs)
    return plant


def odd_pass(scenario: str, reason: str, role: str) -> Plant:
    """A plant of one purchase of an odd pass (world_catalog.ODD_PASSES) that needs a person."""
    def plant(b: Builder, i: int) -> None:
        school = b.school()
        manual(b, scenario, reason, school=school, pass_doc=school.odd[role])
    return plant
