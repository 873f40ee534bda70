"""The purchases of a live run, and the app's webhook writing them late (or not at all).

A purchase is a copy of one of the seeded world's ordinary pass purchases (a connected
school, a published pass, a student whose user document exists), paid now: a new session and
payment intent, the same metadata, line items and product. What a correct pass looks like
follows from the seeded purchase's own subscription (pass, school, student).

`SlowWebhook` is the app's webhook as domain.md §2.3 describes it: some seconds after the
payment it looks for a subscription with the session id or the payment intent, and creates
one (a random `_id`, webhook markers) only when there is none.
"""

from __future__ import annotations

import copy
import heapq
import random
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobs.adapters.sanity_store import SanityStore
from sandbox.world.generate import World

JSON = dict[str, Any]
WEBHOOK_CHECK = ('*[_type == "subscription" && !(_id in path("drafts.**")) && '
                 '(stripeSessionId == $sid || stripePaymentId == $pi)][0]._id')


@dataclass(frozen=True)
class Template:
    """A seeded purchase to copy: its session, account and the pass it got."""

    account: str
    session: JSON
    subscription: JSON  # the webhook's subscription of the seeded purchase


@dataclass(frozen=True)
class Purchase:
    """One live purchase: paid at `paid_at` (unix seconds, float)."""

    account: str
    session_id: str
    payment_intent: str
    paid_at: float
    pass_id: str
    tenant: str
    user: str
    webhook_doc: JSON  # what the app's webhook writes for it


def templates(world: World) -> dict[str, list[Template]]:
    """Per connected account, the ordinary pass purchases whose webhook wrote their pass."""
    subs = {d.get("stripeSessionId"): d for d in world.sanity
            if d.get("_type") == "subscription" and d.get("stripeSessionId")}
    out: dict[str, list[Template]] = {}
    for sid, truth in world.truth["sessions"].items():
        account = truth["account"]
        if (truth.get("scenario") != "pass_purchase" or truth["outcome"] != "already_present"
                or account == "platform" or sid not in subs):
            continue
        session = next(s for s in world.stripe["data"][account]["checkout_sessions"]
                       if s["id"] == sid)
        out.setdefault(account, []).append(Template(account, session, subs[sid]))
    return out


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _ref(doc: Mapping[str, Any], field: str) -> str:
    value = doc.get(field)
    return str(value.get("_ref")) if isinstance(value, Mapping) else ""


def new_purchase(template: Template, now: float, rng: random.Random) -> tuple[Purchase, JSON]:
    """A purchase paid `now` like `template`, and its session as the stand-in keeps it."""
    session = copy.deepcopy(template.session)
    sid = "cs_test_" + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=58))
    pi = "pi_" + secrets.token_hex(12)
    session.update(id=sid, created=int(now), payment_intent=pi)
    for n, item in enumerate(session.get("_line_items") or ()):
        item["id"] = f"li_{secrets.token_hex(12)}{n}"
    sub = template.subscription
    duration = _ms(sub.get("endDate")) - _ms(sub.get("startDate"))
    doc = {k: v for k, v in copy.deepcopy(sub).items()
           if not k.startswith("_") or k == "_type"}
    doc.update(stripeSessionId=sid, stripePaymentId=pi, startDate=_iso(now),
               endDate=_iso(now + duration / 1000), createdViaWebhook=True)
    purchase = Purchase(template.account, sid, pi, now, str(sub.get("passId")),
                        _ref(sub, "tenant"), _ref(sub, "user"), doc)
    return purchase, session


def _ms(iso: Any) -> float:
    return datetime.fromisoformat(iso).timestamp() * 1000 if isinstance(iso, str) else 0.0


class SlowWebhook:
    """Delivers each purchase `delay()` seconds after it is paid, as the app's webhook does:
    check for an existing subscription, create one with a random id if there is none."""

    def __init__(self, sanity: SanityStore, delay: Callable[[], float]) -> None:
        self._sanity = sanity
        self._delay = delay
        self._due: list[tuple[float, int, Purchase]] = []
        self._cond = threading.Condition()
        self._stop = False
        self._n = 0
        self.written = 0
        self.found_existing = 0
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._loop, name="slow-webhook", daemon=True)

    def start(self) -> SlowWebhook:
        self._thread.start()
        return self

    def deliver(self, purchase: Purchase) -> None:
        with self._cond:
            self._n += 1
            heapq.heappush(self._due, (purchase.paid_at + self._delay(), self._n, purchase))
            self._cond.notify()

    def outstanding(self) -> int:
        with self._cond:
            return len(self._due)

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(10)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self._due or self._due[0][0] > time.time()):
                    wait = self._due[0][0] - time.time() if self._due else None
                    self._cond.wait(wait)
                if self._stop:
                    return
                _, _, purchase = heapq.heappop(self._due)
            self._write(purchase)

    def _write(self, purchase: Purchase) -> None:
        try:
            if self._sanity.query(WEBHOOK_CHECK, {"sid": purchase.session_id,
                                                  "pi": purchase.payment_intent}):
                self.found_existing += 1
                return
            doc = {"_id": secrets.token_hex(11), **purchase.webhook_doc}  # the app's random id
            self._sanity.commit([{"create": doc}], f"webhook-{secrets.token_hex(8)}")
            self.written += 1
        except Exception as error:  # recorded: the run's table shows it
            self.errors.append(f"{type(error).__name__}: {error}")


def pick_template(by_account: Mapping[str, Sequence[Template]], rng: random.Random,
                  accounts: Sequence[str]) -> Template:
    """A purchase at a school picked uniformly, of one of its seeded purchases."""
    return rng.choice(list(by_account[rng.choice(list(accounts))]))
