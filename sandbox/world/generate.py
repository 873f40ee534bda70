"""Seeded dance-school world: Stripe data, Sanity dataset, and what a correct reconciler does.

    python -m sandbox.world.generate --seed 1 --sessions 10000 --schools 3 --out DIR [--now ISO8601]

writes `stripe.json`, `sanity.ndjson` and `truth.json` (formats in docs/architecture.md). The same
arguments give byte-identical files. The truth is computed from what was generated (the intent
of each scenario), not by the job's planner, so it is an independent check of it.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sandbox.gcpause import collector_paused
from sandbox.world.base import BASE, background
from sandbox.world.build import PLATFORM, Builder
from sandbox.world.catalog import build_schools
from sandbox.world.ids import DAY_S, Ids, iso_ms
from sandbox.world.json_io import Template
from sandbox.world.json_io import dumps as _dumps
from sandbox.world.people import People
from sandbox.world.plants import plant_all
from sandbox.world.stripe_side import (
    EVENT_CONSTANT,
    LINE_ITEM_CONSTANT,
    PRICE_CONSTANT,
    PRODUCT_CONSTANT,
    SESSION_CONSTANT,
    account_object,
    api_keys,
    webhook_endpoints,
)
from sandbox.world.webhook_log import SUCCESS_SHARE, webhook_log

Doc = dict[str, Any]
_CHUNK = 2000


@dataclass(frozen=True)
class World:
    """A generated world; treat its dicts as read-only (constant nested parts are shared).

    `now`, `since`, `until` are unix seconds (window `[since, until)`); `stripe` is stripe.json,
    `sanity` the documents of sanity.ndjson, `truth` truth.json. Each truth entry also names its
    `scenario` (which plant or ordinary case made the session), to read failures by.
    """

    seed: int
    now: int
    since: int
    until: int
    stripe: Doc
    sanity: list[Doc]
    truth: Doc


def _unix(now: datetime | int) -> int:
    if isinstance(now, datetime):
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return int(now.timestamp())
    return int(now)


def generate(
    seed: int,
    *,
    sessions: int,
    schools: int = 3,
    now: datetime | int,
    days: float = 3,
    missing_share: float = 0.1,
    grace_s: int = 600,
    oddities: bool = True,
    log_share: float = SUCCESS_SHARE,
) -> World:
    """Build a world of `sessions` checkout sessions over [now - days, now - grace_s).

    `schools` connected schools (plus one without a connected account); `missing_share` of the
    ordinary pass purchases lost their webhook; `oddities` plants every incident of domain.md §4
    (at least one each from 500 sessions up). The app's webhookLog holds `log_share` of the
    successful deliveries (and each account's newest), the failed ones and a few signature
    failures (sandbox.world.webhook_log).
    """
    with collector_paused():
        return _generate(seed, sessions=sessions, schools=schools, now=now, days=days,
                         missing_share=missing_share, grace_s=grace_s, oddities=oddities,
                         log_share=log_share)


def _generate(  # the body of `generate`, with the collector paused
    seed: int,
    *,
    sessions: int,
    schools: int,
    now: datetime | int,
    days: float,
    missing_share: float,
    grace_s: int,
    oddities: bool,
    log_share: float,
) -> World:
    if sessions < 0 or schools < 1 or not 0 <= missing_share <= 1 or not 0 <= log_share <= 1:
        raise ValueError("need sessions >= 0, schools >= 1, 0 <= missing_share <= 1 and "
                         "0 <= log_share <= 1")
    now_s = _unix(now)
    since, until = now_s - int(days * DAY_S), now_s - grace_s
    if until - since < 2 * 3600:
        raise ValueError("the window [now - days, now - grace) must span at least two hours")
    rng = random.Random(seed)
    ids = Ids(rng)
    connected, unconnected, docs = build_schools(ids, rng, schools, now=now_s, since=since)
    people = People(ids, rng, now_s, docs)
    people.populate([*connected, unconnected], max(12, sessions // (3 * (schools + 1))))
    builder = Builder(rng=rng, ids=ids, people=people, schools=connected,
                      unconnected=unconnected, now=now_s, since=since, until=until,
                      missing_share=missing_share, docs=docs)
    if oddities:
        plant_all(builder, sessions)
    scenarios, weights = zip(*BASE, strict=True)
    for scenario in rng.choices(scenarios, weights=weights, k=sessions - len(builder.truth)):
        scenario(builder)
    background(builder, sessions // 5)
    for data in builder.stripe.values():
        for key in ("checkout_sessions", "events", "refunds", "products"):
            data[key].sort(key=lambda obj: (-obj["created"], obj["id"]))
    data = builder.stripe
    data[PLATFORM]["webhook_endpoints"] = webhook_endpoints(ids, now_s)
    accounts = [school.account for school in connected if school.account]
    stripe = {
        "keys": api_keys(accounts),
        "platform": account_object(ids.account(), name="Dance School Platform",
                                   email="platform@dance-school.example.com",
                                   created=now_s - 500 * DAY_S),
        "accounts": {
            str(s.account): account_object(str(s.account), name=s.name,
                                           email=f"post@{s.slug}.example.com",
                                           created=now_s - 390 * DAY_S)
            for s in connected},
        "data": data,
    }
    # Last, from what was built: no other document, object or truth entry depends on the log.
    docs.extend(webhook_log(ids, rng, data, docs, builder.truth, since=since, until=until,
                            success_share=log_share))
    truth = {"seed": seed, "now": iso_ms(now_s * 1000), "now_unix": now_s,
             "window": {"since": since, "until": until},
             "summary": summarize(builder.truth.values()), "sessions": builder.truth}
    return World(seed, now_s, since, until, stripe, docs, truth)


def summarize(entries: Iterable[Doc]) -> Doc:
    """Counts of outcomes, reasons and anomalies over truth entries."""
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    anomalies: Counter[str] = Counter()
    for entry in entries:
        outcomes[entry["outcome"]] += 1
        if entry["reason"]:
            reasons[f"{entry['outcome']}:{entry['reason']}"] += 1
        anomalies.update(entry["anomalies"])
    return {"outcomes": dict(sorted(outcomes.items())), "reasons": dict(sorted(reasons.items())),
            "anomalies": dict(sorted(anomalies.items()))}


_PLAIN = Template({})
_TEMPLATES = {
    "checkout_sessions": Template(SESSION_CONSTANT, {"_line_items": Template(
        LINE_ITEM_CONSTANT, {"price": Template(PRICE_CONSTANT)})}),
    "products": Template(PRODUCT_CONSTANT),
    "events": Template(EVENT_CONSTANT),
}


def _write_array(out: IO[str], items: Sequence[Doc], template: Template) -> None:
    """A JSON array written in chunks (bounded memory)."""
    out.write("[")
    for start in range(0, len(items), _CHUNK):
        if start:
            out.write(",")
        out.write(template.encode_all(items[start:start + _CHUNK]))
    out.write("]")


def _write_stripe(world: World, path: Path) -> None:
    with path.open("w", encoding="utf-8") as out:
        head = {key: world.stripe[key] for key in ("keys", "platform", "accounts")}
        out.write(_dumps(head)[:-1] + ',"data":{')
        for index, (account, lists) in enumerate(world.stripe["data"].items()):
            out.write(("," if index else "") + _dumps(account) + ":{")
            for position, (name, items) in enumerate(lists.items()):
                out.write(("," if position else "") + _dumps(name) + ":")
                _write_array(out, items, _TEMPLATES.get(name, _PLAIN))
            out.write("}")
        out.write("}}")


def _write_truth(world: World, path: Path) -> None:
    with path.open("w", encoding="utf-8") as out:
        head = {key: value for key, value in world.truth.items() if key != "sessions"}
        out.write(_dumps(head)[:-1] + ',"sessions":{')
        entries = list(world.truth["sessions"].items())
        for start in range(0, len(entries), _CHUNK):
            chunk = _dumps(dict(entries[start:start + _CHUNK]))[1:-1]
            out.write(("," if start else "") + chunk)
        out.write("}}\n")


def write_world(world: World, out_dir: Path | str) -> dict[str, Path]:
    """Write stripe.json, sanity.ndjson and truth.json into `out_dir`; returns their paths."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"stripe": directory / "stripe.json", "sanity": directory / "sanity.ndjson",
             "truth": directory / "truth.json"}
    with collector_paused():
        _write_stripe(world, paths["stripe"])
        with paths["sanity"].open("w", encoding="utf-8") as out:
            for start in range(0, len(world.sanity), _CHUNK):
                chunk = world.sanity[start:start + _CHUNK]
                out.write("".join(_dumps(doc) + "\n" for doc in chunk))
        _write_truth(world, paths["truth"])
    return paths


def _parse_now(text: str | None, clock: Callable[[], float]) -> datetime:
    if text is None:
        seconds = int(clock())
        return datetime.fromtimestamp(seconds - seconds % 60, UTC)
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def main(argv: Sequence[str] | None = None, *, clock: Callable[[], float] = time.time) -> int:
    """CLI: generate a world and print the paths and sizes of its files."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.world.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--schools", type=int, default=3)
    parser.add_argument("--out", required=True, help="directory for the three files")
    parser.add_argument("--now", help="ISO 8601 (default: now, rounded down to the minute)")
    parser.add_argument("--days", type=float, default=3)
    parser.add_argument("--missing-share", type=float, default=0.1)
    parser.add_argument("--grace", type=int, default=600, help="seconds before now (default 600)")
    parser.add_argument("--no-oddities", action="store_true", help="only ordinary sessions")
    parser.add_argument("--log-share", type=float, default=SUCCESS_SHARE,
                        help="share of successful webhook deliveries in webhookLog "
                             f"(default {SUCCESS_SHARE})")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        world = generate(args.seed, sessions=args.sessions, schools=args.schools,
                         now=_parse_now(args.now, clock), days=args.days,
                         missing_share=args.missing_share, grace_s=args.grace,
                         oddities=not args.no_oddities, log_share=args.log_share)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    paths = write_world(world, args.out)
    for name, path in paths.items():
        print(f"{name:7} {path}  {path.stat().st_size:,} bytes")
    summary = world.truth["summary"]["outcomes"]
    print(f"sessions {len(world.truth['sessions']):,}  documents {len(world.sanity):,}  "
          f"outcomes {summary}  in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
