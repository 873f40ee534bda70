"""Text, HTML and JSON renderings of the weekly report and of alert e-mails (Jinja2).

The HTML is e-mail HTML: tables, inline styles and `bgcolor` attributes only, no CSS classes,
no SVG, no scripts, no external images. The 8-week trend is a bar chart made of table cells:
Gmail strips inline SVG and data: URIs, Outlook for Windows (Word's engine) draws no SVG, and an
embedded PNG needs an image library and is hidden by clients that block images until asked;
coloured cells with fixed widths render the same in Gmail, Outlook and Apple Mail, in dark mode
and with images off. The text part carries the same facts for plain-text readers.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from jobs.reports.weekly_rows import TrendWeek, WeeklyReport

if TYPE_CHECKING:
    from jobs.reports.alerts import Alert

TEMPLATES = Path(__file__).parent / "templates"

# Currencies with no / three decimal places (ISO 4217, as Stripe lists them).
ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf",
                          "ugx", "vnd", "vuv", "xaf", "xof", "xpf"})
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})

COLOURS = {"automatic": "#2e7d32", "repaired": "#1565c0", "person": "#c62828",
           "other": "#9e9e9e"}
LEGEND = (("automatic", "present when first seen"), ("repaired", "repaired by the job"),
          ("person", "needed a person"), ("other", "fixed elsewhere / still missing"))


# ---- formatting (Jinja filters) ----------------------------------------------------------


def money(amount: float | None, currency: str | None) -> str:
    """`1,200.00 NOK` from an amount in major units; `—` when unknown."""
    if amount is None:
        return "—"
    code = (currency or "").lower()
    digits = 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2
    return f"{float(amount):,.{digits}f} {code.upper() or '?'}"


def duration(seconds: float | None) -> str:
    """`45 s`, `4 min 10 s`, `2 h 5 min`, `3 d 4 h`; `—` when unknown."""
    if seconds is None:
        return "—"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        m, rest = divmod(s, 60)
        return f"{m} min {rest} s" if rest else f"{m} min"
    if s < 86400:
        h, rest = divmod(s, 3600)
        return f"{h} h {rest // 60} min" if rest // 60 else f"{h} h"
    d, rest = divmod(s, 86400)
    return f"{d} d {rest // 3600} h" if rest // 3600 else f"{d} d"


def pct(value: float | None, digits: int = 1) -> str:
    """`97.5 %` from 0.975; `—` for no data."""
    if value is None:
        return "—"
    return f"{value * 100:.{digits}f} %"


def local_time(moment: datetime | None, tz: str, fmt: str = "%a %d %b %H:%M") -> str:
    """A time in the report's zone, e.g. `Mon 06 May 09:14`."""
    if moment is None:
        return "—"
    return moment.astimezone(ZoneInfo(tz)).strftime(fmt)


def inline_code(text: str | None) -> Markup:
    """Escape `text` for HTML and show its `backticked` words as code."""
    escaped = str(escape(text or ""))
    return Markup(re.sub(
        r"`([^`]+)`",
        r'<code style="font-family:Consolas,Menlo,monospace;font-size:12px;'
        r'background-color:#f3f4f6;padding:0 2px;">\1</code>',
        escaped,
    ))


def short(text: str | None, length: int = 80) -> str:
    """A name or address cut to `length` characters (with `…`), so no value can swell the mail."""
    if not text:
        return ""
    return text if len(text) <= length else text[: length - 1] + "…"


def verdict(met: bool | None) -> str:
    return "no data" if met is None else "on target" if met else "off target"


@dataclass(frozen=True)
class Segment:
    name: str
    colour: str
    width: int  # percent of the chart's width
    count: int


def bar_segments(week: TrendWeek, scale: int) -> list[Segment]:
    """The week's stacked bar as integer percent widths; the longest bar of the chart is 100.

    Widths are rounded by largest remainder so they add up to the bar's length exactly, and a
    non-empty part is at least 1 % wide so it never vanishes.
    """
    if scale <= 0 or week.purchases <= 0:
        return []
    parts = [("automatic", week.automatic), ("repaired", week.repaired),
             ("person", week.person), ("other", week.other)]
    total = round(100 * week.purchases / scale)
    exact = [(name, n, total * n / week.purchases) for name, n in parts if n > 0]
    widths = {name: max(1, int(share)) for name, _, share in exact}
    leftover = total - sum(widths.values())
    for name, _, _share in sorted(exact, key=lambda e: e[2] - int(e[2]), reverse=True):
        if leftover <= 0:
            break
        widths[name] += 1
        leftover -= 1
    return [Segment(name, COLOURS[name], widths[name], n) for name, n, _ in exact]


# ---- rendering ---------------------------------------------------------------------------


@functools.cache
def environment() -> Environment:
    """A Jinja2 environment over jobs/reports/templates: HTML templates autoescaped, text ones not.

    Built once per process: the templates are package files, and compiling them is the slow part.
    """
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(money=money, duration=duration, pct=pct, local_time=local_time,
                       verdict=verdict, code=inline_code, short=short, column=column)
    return env


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    json: str | None = None


def weekly_subject(report: WeeklyReport) -> str:
    h = report.headline
    open_items = len(report.needs_you)
    need = (f"{open_items} need{'s' if open_items == 1 else ''} you" if open_items
            else "nothing needs you")
    mode = "[TEST] " if report.key_mode == "test" else ""
    return (f"{mode}Pass reconciler, week {report.label}: {need}; "
            f"{pct(h.automatic_rate)} automatic of {h.purchases} purchases")


def report_json(report: WeeklyReport) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class Caps:
    """How much of each list the HTML part shows; the rest is in the attachments. With these
    caps and `short` names the part stays well under Gmail's clip (~102 KB) at any volume
    (tests/unit/test_weekly_mail.py renders 500 of each)."""

    needs_you: int = 15
    created: int = 25
    anomalies: int = 8
    currencies: int = 6
    problems: int = 8
    detail: int = 200  # characters of a detail or problem text


CAPS = Caps()
# What the e-mail attaches (jobs/adapters/mailer.py), as the HTML names it.
ATTACHED = "JSON and CSV"
CSV_COLUMNS = ("list", "paid_at", "session_id", "account", "school", "email", "pass",
               "amount", "currency", "reason", "repair_seconds", "stripe_url")


def _cell(value: object) -> str:
    """A CSV cell safe to open in a spreadsheet: a leading = + - @ would start a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def report_csv(report: WeeklyReport) -> str:
    """Every purchase needing a person and every subscription created, by payment time: the
    rows the e-mail's HTML leaves out, for a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in report.needs_you:
        writer.writerow([_cell(v) for v in (
            "needs_you", row.paid_at.isoformat() if row.paid_at else None, row.session_id,
            row.account, row.school, row.email, row.pass_name, row.amount,
            (row.currency or "").upper(), row.reason, None, row.dashboard_url)])
    for c in report.created:
        writer.writerow([_cell(v) for v in (
            "created", c.paid_at.isoformat() if c.paid_at else None, c.session_id, c.account,
            c.school, c.email, c.pass_name, c.amount, (c.currency or "").upper(), None,
            None if c.repair_seconds is None else round(c.repair_seconds), c.dashboard_url)])
    return out.getvalue()


def column(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None,
           gap: str = "  ") -> list[str]:
    """Rows of cells as lines whose columns line up (the text part's tables), under `header`;
    a column whose every cell starts with a digit or a dash is right-aligned (amounts, times)."""
    if not rows:
        return []
    table = [header, *rows] if header is not None else list(rows)
    widths = [max(len(r[i]) for r in table) for i in range(len(rows[0]))]
    numeric = [all(c[:1].isdigit() or c[:1] in "-—" for c in (r[i] for r in rows))
               for i in range(len(widths))]
    lines = []
    for r in table:
        cells = [c.rjust(w) if num else c.ljust(w)
                 for c, w, num in zip(r[:-1], widths[:-1], numeric[:-1], strict=True)]
        lines.append(gap.join([*cells, r[-1].rjust(widths[-1]) if numeric[-1] else r[-1]]))
    return [line.rstrip() for line in lines]


def _context(report: WeeklyReport) -> dict[str, Any]:
    scale = max((w.purchases for w in report.trend), default=0)
    chart = [(w, bar_segments(w, scale)) for w in report.trend]
    health = report.webhook_health
    return {
        "r": report,
        "h": report.headline,
        "tz": report.timezone,
        "subject": weekly_subject(report),
        "chart": chart,
        "legend": [(COLOURS[name], words) for name, words in LEGEND],
        "colours": COLOURS,
        "webhook": _webhook_view(health) if health is not None else None,
        "week_last": report.week_end - timedelta(days=1),
        "caps": CAPS,
        "files": ATTACHED,
        "needs_shown": report.needs_you[:CAPS.needs_you],
        "created_shown": report.created[:CAPS.created],
        "anomalies_shown": report.anomalies[:CAPS.anomalies],
        "money_shown": report.money[:CAPS.currencies],
        "created_lines": column([
            (local_time(c.paid_at, report.timezone), short(c.email, 40) or "-",
             short(c.school, 30) or "-", short(c.pass_name, 30) or "-",
             money(c.amount, c.currency), duration(c.repair_seconds))
            for c in report.created],
            header=("Paid", "Student", "School", "Pass", "Amount", "Repair")),
    }


def _webhook_view(health: Mapping[str, Any]) -> dict[str, Any]:
    """A display view of `doctor`'s webhook findings, lenient about their exact shape.

    Known keys: `undelivered_events` (a count, or a mapping account -> count), `problems`
    (a list of strings or of mappings with `account`/`url`/`problem`), `endpoints` (a list of
    mappings with `url`, `status`, optional `problem`), `checked_at`. Any other scalar key is
    shown as-is.
    """
    undelivered = health.get("undelivered_events")
    if isinstance(undelivered, Mapping):
        total: int | None = sum(int(v) for v in undelivered.values() if isinstance(v, int))
        per_account = [(str(k), v) for k, v in undelivered.items()]
    else:
        total = undelivered if isinstance(undelivered, int) else None
        per_account = []
    problems: list[str] = []
    for p in health.get("problems") or ():
        if isinstance(p, Mapping):
            where = p.get("account") or p.get("url") or ""
            problems.append(f"{where}: {p.get('problem') or p.get('detail') or p}".strip(": "))
        else:
            problems.append(str(p))
    for e in health.get("endpoints") or ():
        if not isinstance(e, Mapping):
            continue
        status = e.get("status")
        if e.get("problem") or status not in (None, "enabled"):
            problems.append(f"{e.get('url', '?')}: {e.get('problem') or f'status {status}'}")
    known = {"undelivered_events", "problems", "endpoints", "checked_at"}
    extra = [(str(k), v) for k, v in health.items()
             if k not in known and isinstance(v, str | int | float | bool)]
    return {"undelivered": total, "per_account": per_account, "problems": problems,
            "checked_at": health.get("checked_at"), "extra": extra,
            "healthy": not problems and not total}


def render_weekly(report: WeeklyReport) -> Rendered:
    """Subject, text part, HTML part and JSON of the weekly report."""
    env = environment()
    context = _context(report)
    return Rendered(
        subject=context["subject"],
        text=env.get_template("weekly.txt.j2").render(context),
        html=env.get_template("weekly.html.j2").render(context),
        json=report_json(report),
    )


def alert_subject(alerts: Sequence[Alert], key_mode: str | None = None) -> str:
    mode = "[TEST] " if key_mode == "test" else ""
    if len(alerts) == 1:
        return f"{mode}Pass reconciler alert: {alerts[0].title}"
    return f"{mode}Pass reconciler: {len(alerts)} alerts, first: {alerts[0].title}"


def render_alerts(alerts: Sequence[Alert], *, tz: str = "UTC",
                  key_mode: str | None = None) -> Rendered:
    """One e-mail carrying several alerts (most urgent first, as given)."""
    env = environment()
    subject = alert_subject(alerts, key_mode)
    context = {"alerts": list(alerts), "tz": tz, "subject": subject}
    return Rendered(
        subject=subject,
        text=env.get_template("alert.txt.j2").render(context),
        html=env.get_template("alert.html.j2").render(context),
    )


def write_private(path: Path, data: str | bytes) -> None:
    """Write `data` to `path` readable by its owner only (reports carry e-mail addresses), whole
    or not at all: written beside it, then renamed, so Ctrl-C never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_weekly(report: WeeklyReport, out_dir: Path) -> dict[str, Path]:
    """Write report.html, report.txt, report.json and report.csv into `out_dir` (created if
    needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rendered = render_weekly(report)
    paths = {"html": out_dir / "report.html", "text": out_dir / "report.txt",
             "json": out_dir / "report.json", "csv": out_dir / "report.csv"}
    write_private(paths["html"], rendered.html)
    write_private(paths["text"], rendered.text)
    write_private(paths["json"], rendered.json or report_json(report))
    write_private(paths["csv"], report_csv(report))
    return paths
