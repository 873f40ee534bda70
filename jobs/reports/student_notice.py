"""The e-mail that tells a student their lost pass is now there (pure: no I/O).

What is recorded for one purchase before its transaction (`notice_row`), whether its address can
be used (`address_problem`), and the rendered e-mail in the school's language
(`render_notice`, templates `jobs/reports/templates/student.<lang>.{txt,html}.j2`). The e-mail
names the
school, the pass, its type and validity (end date in the school's time zone, clips) and links to
the school's page in the app; it carries nothing of any other student and no tracking image.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from jobs.core.model import Decision
from jobs.reports.render import Rendered, environment

LANGUAGES = ("nb", "en")
MAX_ADDRESS = 254  # RFC 5321's limit on a forward path
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")

_MONTHS = {
    "nb": ("januar", "februar", "mars", "april", "mai", "juni", "juli", "august", "september",
           "oktober", "november", "desember"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
}
_TYPES = {
    "nb": {"single": "enkelttime", "multi-pass": "flerklassepass", "clipcard": "klippekort",
           "monthly": "ubegrenset (periodekort)"},
    "en": {"single": "single class", "multi-pass": "multi-class pass", "clipcard": "clip card",
           "monthly": "unlimited (period pass)"},
}
_SUBJECTS = {"nb": "Passet ditt hos {school} er klart", "en": "Your pass at {school} is ready"}
_SCHOOL = {"nb": "danseskolen", "en": "your dance school"}


def notice_row(decision: Decision, run_id: str) -> dict[str, Any]:
    """What the ledger keeps of a purchase about to be created: the pass as written."""
    assert decision.creation is not None
    doc = decision.creation.subscription
    clips = doc.get("remainingClips")
    return {
        "session_id": decision.session_id, "run_id": run_id, "account": decision.account,
        "tenant": decision.tenant, "email": decision.email,
        "content": {
            "subscription_id": doc.get("_id"),
            "pass_name": doc.get("passName") or decision.pass_name,
            "type": doc.get("type"),
            "end_date": doc.get("endDate"),
            "clips": clips if isinstance(clips, int) and not isinstance(clips, bool) else None,
        },
    }


def address_problem(email: str | None) -> str | None:
    """Why `email` cannot be written to (None: it can). Checked before any SMTP attempt,
    so a bad address is reported once and never retried."""
    if email is None or not email.strip():
        return "no e-mail address on the Checkout Session"
    value = email.strip()
    if len(value) > MAX_ADDRESS or not _ADDRESS.fullmatch(value):
        return "not a usable e-mail address"
    return None


def content_problem(content: Mapping[str, Any], now: datetime) -> str | None:
    """Why this pass should not be announced (None: it can be). A pass created already
    expired (anomaly `expired_on_arrival`) would tell the student of a pass they cannot use:
    a person decides what to say."""
    end = content.get("end_date")
    try:
        moment = datetime.fromisoformat(str(end).replace("Z", "+00:00")) if end else None
    except ValueError:
        moment = None
    if moment is not None and moment <= now:
        return "the pass had already expired when it was created (expired_on_arrival)"
    return None


def message_id(session_id: str, domain: str) -> str:
    """The same Message-ID for every attempt of one purchase's e-mail (no session id in it)."""
    digest = hashlib.sha256(session_id.encode()).hexdigest()[:32]
    return f"<pass-repaired.{digest}@{domain}>"


@dataclass(frozen=True)
class School:
    """What the e-mail needs of a tenant document."""

    id: str
    name: str | None
    slug: str | None


def school_of(doc: Mapping[str, Any]) -> School:
    slug = doc.get("slug")
    current = slug.get("current") if isinstance(slug, Mapping) else slug
    name = doc.get("schoolName")
    return School(str(doc.get("_id")), name if isinstance(name, str) and name.strip() else None,
                  current if isinstance(current, str) and current.strip() else None)


def local_date(iso: str | None, tz: ZoneInfo, language: str) -> str | None:
    """`17. november 2026` (nb) / `17 November 2026` (en), in the school's time zone."""
    if not iso:
        return None
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(tz)
    except ValueError:
        return None
    month = _MONTHS[language][moment.month - 1]
    return (f"{moment.day}. {month} {moment.year}" if language == "nb"
            else f"{moment.day} {month} {moment.year}")


def page_link(app_url: str | None, school: School | None) -> str | None:
    """`<app>/<slug>/subscriptions` (where the app shows a student's passes), when known."""
    if not app_url or school is None or school.slug is None:
        return None
    return f"{app_url.rstrip('/')}/{school.slug}/subscriptions"


def render_notice(content: Mapping[str, Any], school: School | None, *, language: str,
                  tz: ZoneInfo, app_url: str | None) -> Rendered:
    """Subject, text and HTML of one student's e-mail, in `language` (`nb` or `en`)."""
    if language not in LANGUAGES:
        raise ValueError(f"no student e-mail in language {language!r}")
    school_name = school.name if school is not None and school.name else _SCHOOL[language]
    pass_type = content.get("type")
    context = {
        "school": school_name,
        "pass_name": content.get("pass_name") or "",
        "pass_type": _TYPES[language].get(str(pass_type), str(pass_type or "")),
        "end_date": local_date(content.get("end_date"), tz, language),
        "clips": content.get("clips"),
        "link": page_link(app_url, school),
        "subject": _SUBJECTS[language].format(school=school_name),
    }
    env = environment()
    return Rendered(
        subject=str(context["subject"]),
        text=env.get_template(f"student.{language}.txt.j2").render(context),
        html=env.get_template(f"student.{language}.html.j2").render(context),
    )
