"""`reconcile diagnose`, the text shown to the operator: one view (`to_json`) in, lines out."""

from __future__ import annotations

import json

from jobs.core.diagnosis import JSON


def render_text(view: JSON) -> str:
    q = view["query"]
    lines = [f"reconcile diagnose {' '.join(f'--{k} {v}' for k, v in q.items())}", ""]
    lines += [f"note: {n}" for n in view["notes"]]
    for s in view["searched"]:
        if s["error"]:
            lines.append(f"! account {s['account']} could not be searched: {s['error']}")
    if view["users"]:
        lines.append("User documents:")
        for u in view["users"]:
            lines.append(f"  {u.get('_id')}  clerkId={u.get('clerkId')}  email={u.get('email')}"
                         f"  name={u.get('name')}  tenant={u.get('tenant')}")
    else:
        lines.append("User documents: none found")
    lines.append(f"Subscriptions of this person / these purchases: {len(view['subscriptions'])}")
    for s in view["subscriptions"]:
        lines.append(f"  {s['_id']}  {s['type']}  pass={s['passName'] or s['passId']}  "
                     f"active={s['isActive']}  {s['startDate']} -> {s['endDate']}"
                     + ("  (draft)" if s["draft"] else ""))
    lines.append("")
    if not view["purchases"]:
        lines.append("No checkout sessions found.")
    for p in view["purchases"]:
        lines += _purchase_lines(p)
    if view["fix"] is not None:
        f = view["fix"]
        mode = "dry run, nothing written" if f["dry_run"] else "written"
        lines.append(f"Fix (run {f['run_id']}, {mode}): " + (
            f["error"] or (", ".join(f["created"]) or "nothing to create")))
        told = f.get("student_emails")
        if told:
            lines.append(f"Student e-mails: {told['told']} sent, {told['unsent']} waiting for "
                         f"the mail server, {len(told['not_delivered'])} not deliverable")
    return "\n".join(lines) + "\n"


def _purchase_lines(p: JSON) -> list[str]:
    school = f" ({p['school']})" if p["school"] else ""
    out = [f"Purchase {p['session_id']}",
           f"  Stripe:     {p['account']}{school}, {p['created']}, {p['amount']} "
           f"{(p['currency'] or '').upper()}, status {p['status']}/{p['payment_status']}, "
           f"mode {p['mode']}, buyer {p['email']}, payment {p['payment_intent']}",
           f"  Metadata:   {json.dumps(p['metadata'], ensure_ascii=False)}"]
    if p["line_items"] is not None:
        out.append(f"  Line items: {json.dumps(p['line_items'], ensure_ascii=False)} "
                   "(read because the metadata lacks a key)")
    pass_ = p["pass"]
    if pass_:
        out.append(f"  Pass:       {pass_['name']} ({pass_['id']}), type {pass_['type']} -> "
                   f"{pass_['subscription_type']}, classes {pass_['classes_limit']}, validity "
                   f"{pass_['validity_type'] or 'days'} {pass_['validity_days'] or ''}"
                   f"{pass_['expiry_date'] or ''}, school {pass_['school'] or '?'} "
                   f"({pass_['tenant']})")
    else:
        out.append("  Pass:       none identified")
    docs = ", ".join(str(u.get("_id")) for u in p["student"]["documents"]) or "no user document"
    out.append(f"  Student:    {p['student']['user_id'] or 'no userId'} -> {docs}")
    existing = ", ".join(f"{s['_id']} ({s['type']}, active={s['isActive']})"
                         for s in p["existing"]) or "none"
    out.append(f"  Existing:   {existing}")
    out.append(f"  Verdict:    {p['verdict']}: {p['meaning']}")
    out.append(f"  What to do: {p['fix']}")
    for a in p["anomalies"]:
        out.append(f"  Anomaly:    {a['kind']}: {a['title']} ({a['detail']})")
    return [*out, ""]
