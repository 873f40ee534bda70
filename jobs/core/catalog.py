"""Sanity's tenant and pass documents as the core's `Catalog` (drafts left out, `_ref`s read)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jobs.core.matching import ref
from jobs.core.model import Catalog, Pass, Tenant


def catalog_from(
    tenants: Iterable[Mapping[str, Any]], passes: Iterable[Mapping[str, Any]]
) -> Catalog:
    """Published tenants and passes as data (drafts are not what the app sells)."""

    out_tenants: dict[str, Tenant] = {}
    for doc in tenants:
        tid = doc.get("_id")
        if not isinstance(tid, str) or tid.startswith("drafts."):
            continue
        connect = doc.get("stripeConnect")
        connect = connect if isinstance(connect, Mapping) else {}
        account, currency = connect.get("accountId"), connect.get("currency")
        name = doc.get("schoolName")
        out_tenants[tid] = Tenant(tid, name if isinstance(name, str) else None,
                                  account if isinstance(account, str) and account else None,
                                  currency if isinstance(currency, str) else None)
    out_passes: dict[str, Pass] = {}
    for doc in passes:
        pid = doc.get("_id")
        if not isinstance(pid, str) or pid.startswith("drafts."):
            continue
        name = doc.get("name")
        out_passes[pid] = Pass(
            id=pid, name=name if isinstance(name, str) else None, type=doc.get("type"),
            price=doc.get("price"), validity_type=doc.get("validityType"),
            validity_days=doc.get("validityDays"), expiry_date=doc.get("expiryDate"),
            classes_limit=doc.get("classesLimit"), is_active=doc.get("isActive"),
            tenant_id=ref(doc, "tenant"))
    return Catalog(out_tenants, out_passes)
