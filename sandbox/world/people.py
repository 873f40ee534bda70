"""Students of the world: Clerk ids, their Sanity `user` documents (or none) and fake contact data.

Kinds of student (domain.md §1.5):
- `canonical`: auto `_id` + `clerkId`; `canonical_draft`: the same plus a draft copy (drafts
  never make a person ambiguous);
- `same_email`: canonical, but several Clerk accounts share one e-mail;
- `legacy`: only a legacy doc whose `_id` is the Clerk id, no `clerkId` field;
- `both`: a legacy doc and a canonical doc;
- `none`: no user doc at all; `draft_only`: only a draft doc (for both the job must create
  `user-<clerk id>`);
- `prior_recovery`: a doc `user-<clerk id>` a previous recovery run created;
- `ambiguous`: two published docs sharing one `clerkId` (the older one is linked);
  `ambiguous_ours`: the webhook's random-id doc and a later `user-<clerk id>` (that one is).
All names and e-mails are invented, on example domains only.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sandbox.world.catalog import School
from sandbox.world.ids import DAY_S, Ids, iso_ms, iso_s, ref

Doc = dict[str, Any]

FIRST = ["Ada", "Bo", "Cato", "Dina", "Eli", "Frida", "Gard", "Hedda", "Iver", "Jonna",
         "Kai", "Live", "Mats", "Nora", "Ola", "Pia", "Rune", "Siv", "Tor", "Vilde"]
LAST = ["Aas", "Berg", "Dahl", "Eng", "Foss", "Haug", "Holm", "Lie", "Moe", "Nes",
        "Ruud", "Sand", "Strand", "Vik", "Wold"]
TLDS = ["com", "org", "net"]

WITH_DOC = ("canonical", "canonical_draft", "same_email", "both")
WITHOUT_CANONICAL = ("legacy", "none")


@dataclass
class Student:
    """One Clerk account and what Sanity knows about it."""

    clerk_id: str
    first: str
    last: str
    email: str
    kind: str
    school: School
    canonical_id: str | None = None

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"

    def sub_ref(self) -> str | None:
        """The `user._ref` a correct reconciler gives a new subscription: with several
        Clerk-linked docs, `user-<clerk id>` when it is one of them, else the oldest."""
        if self.kind == "ambiguous_ours":
            return f"user-{self.clerk_id}"
        if self.canonical_id:
            return self.canonical_id
        if self.kind == "legacy":
            return self.clerk_id
        return f"user-{self.clerk_id}"

    def needs_user_doc(self) -> bool:
        """True when no published user doc resolves this Clerk id, so the job creates one."""
        return self.kind in ("none", "draft_only")


class People:
    """Mints students and their user documents into `docs`; keeps per-school pools."""

    def __init__(self, ids: Ids, rng: random.Random, now: int, docs: list[Doc]) -> None:
        self._ids = ids
        self._rng = rng
        self._now = now
        self._docs = docs
        self._serial = 0
        self._with_doc: dict[str, list[Student]] = defaultdict(list)
        self._without: dict[str, list[Student]] = defaultdict(list)

    def populate(self, schools: list[School], per_school: int) -> None:
        """Fill every school's pools with a realistic mix of student kinds."""
        kinds = ["canonical"] * 80 + ["canonical_draft"] * 3 + ["both"] * 4
        kinds += ["legacy"] * 7 + ["none"] * 6
        for school in schools:
            made = 0
            while made < per_school:
                if self._rng.random() < 0.04:
                    email = self._email(*self._names())
                    cluster = [self.new(school, "same_email", email=email) for _ in range(3)]
                    self._with_doc[school.tenant_id].extend(cluster)
                    made += len(cluster)
                    continue
                student = self.new(school, self._rng.choice(kinds))
                pool = self._with_doc if student.kind in WITH_DOC else self._without
                pool[school.tenant_id].append(student)
                made += 1

    def pick_with_doc(self, school: School) -> Student:
        """A student whose purchases the webhook can attach to a canonical user doc."""
        return self._rng.choice(self._with_doc[school.tenant_id])

    def pick_for_missing(self, school: School) -> Student:
        """A student for a purchase whose webhook failed (may lack a canonical user doc)."""
        pool = self._without[school.tenant_id]
        if pool and self._rng.random() < 0.25:
            return self._rng.choice(pool)
        return self.pick_with_doc(school)

    def _names(self) -> tuple[str, str]:
        return self._rng.choice(FIRST), self._rng.choice(LAST)

    def _email(self, first: str, last: str) -> str:
        self._serial += 1
        tld = TLDS[self._serial % len(TLDS)]
        return f"{first}.{last}{self._serial}@example.{tld}".lower()

    def new(self, school: School, kind: str = "canonical", *, email: str | None = None) -> Student:
        """A fresh student of `kind` with its user docs written; used by pools and plants."""
        first, last = self._names()
        student = Student(self._ids.clerk(), first, last, email or self._email(first, last),
                          kind, school)
        created = self._now - self._rng.randint(30, 300) * DAY_S
        if kind in ("canonical", "canonical_draft", "same_email", "both", "ambiguous",
                    "ambiguous_ours"):
            student.canonical_id = self._ids.sanity()
            self._docs.append(self._user_doc(student, student.canonical_id, created, clerk=True))
        if kind == "canonical_draft":
            draft = self._user_doc(student, "drafts." + student.canonical_id, created, clerk=True)
            draft["phone"] = "+47 000 00 000"
            self._docs.append(draft)
        if kind in ("legacy", "both"):
            self._docs.append(self._user_doc(student, student.clerk_id, created - 20 * DAY_S,
                                             clerk=False))
        if kind == "ambiguous":
            # A second Clerk-linked doc for the same person, e.g. from another school's sign-up.
            self._docs.append(self._user_doc(student, self._ids.sanity(), created + DAY_S,
                                             clerk=True))
        if kind == "ambiguous_ours":
            # An earlier recovery's `user-<clerk id>` beside the webhook's random-id doc.
            self._docs.append(self._user_doc(student, f"user-{student.clerk_id}",
                                             created + DAY_S, clerk=True))
        if kind == "draft_only":
            self._docs.append(self._user_doc(student, "drafts." + self._ids.sanity(), created,
                                             clerk=True))
        if kind == "prior_recovery":
            student.canonical_id = f"user-{student.clerk_id}"
            doc = self._user_doc(student, student.canonical_id, created, clerk=True)
            doc["name"] = "Customer"
            self._docs.append(doc)
        return student

    def _user_doc(self, student: Student, doc_id: str, created: int, *, clerk: bool) -> Doc:
        doc: Doc = {
            "_id": doc_id,
            "_type": "user",
            "_createdAt": iso_s(created),
            "_updatedAt": iso_s(created),
            "_rev": self._ids.rev(),
        }
        if clerk:
            doc["clerkId"] = student.clerk_id
        doc.update(
            {
                "name": student.name,
                "firstName": student.first,
                "lastName": student.last,
                "email": student.email,
                "role": "student",
                "isActive": True,
                "createdAt": iso_ms(created * 1000),
                "updatedAt": iso_ms(created * 1000),
            }
        )
        if self._rng.random() < 0.6:
            doc["tenant"] = ref(student.school.tenant_id)
        return doc
