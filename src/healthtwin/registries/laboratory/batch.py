"""`healthtwin laboratory alerts`: the Flags and Communications of critical results that a bulk load wrote
(`healthtwin load` and `$import` run no write rules, api/write_rules.py), raised once each.

Every current Observation (changed since `--since`, if given) is read in row order, its interpretation taken
as written or, where absent, judged from its reference ranges (interpretation.py, without changing the stored
result); each critical one whose alert does not exist yet (the Communication's identifier is the
Observation's id, alerts.ALERT_ID_SYSTEM) gets its Flag and Communication, a batch per transaction."""
from __future__ import annotations

import argparse
import copy
import datetime as dt
from typing import Any

import orjson

from ...store.records import instant
from .alerts import ALERT_ID_SYSTEM, raise_alert
from .interpretation import interpret, is_critical
from .rules import REPORTED

BATCH = 1000


def add_parser(sub: Any) -> None:
    lab = sub.add_parser("laboratory", help="the laboratory registry's batch jobs")
    commands = lab.add_subparsers(dest="laboratory_command", required=True, metavar="ACTION")
    al = commands.add_parser("alerts", help="raise the alerts of critical results written by a bulk load")
    al.add_argument("--data-dir", default="./data", help="folder for the embedded database and keys (default ./data)")
    al.add_argument("--database", default=None,
                    help="postgresql://user@host/db for PostgreSQL; default: SQLite in the data folder")
    al.add_argument("--since", default=None, help="only results changed on or after this date (YYYY-MM-DD)")
    lab.set_defaults(func=run)


def _alerted(services: Any, obs_ids: list[str]) -> set[str]:
    """The Observations (of `obs_ids`) whose alert exists: Communications with their identifier (searched, so
    the index's blinding of identifiers applies as to any search)."""
    from ...store.search import run_search
    if not obs_ids:
        return set()
    query = services.parser.parse(["Communication"], [
        ("identifier", ",".join(f"{ALERT_ID_SYSTEM}|{oid}" for oid in obs_ids))])
    query.count = len(obs_ids) + 1
    found = set()
    for stored in run_search(services.store, services.registry, query).matches:
        for ident in orjson.loads(stored.content).get("identifier") or []:
            if ident.get("system") == ALERT_ID_SYSTEM:
                found.add(ident.get("value"))
    return found


def raise_missing(services: Any, since: float | None = None) -> tuple[int, int]:
    """(results read, alerts raised)."""
    store = services.store
    read = raised = 0
    last = 0
    while True:
        rows = store.query("SELECT rid FROM resources WHERE type = 'Observation' AND deleted = 0 AND rid > ? "
                           + ("AND last_updated >= ? " if since is not None else "") + "ORDER BY rid LIMIT ?",
                           [last, *([since] if since is not None else []), BATCH])
        if not rows:
            return read, raised
        last = rows[-1][0]
        critical: list[tuple[str, dict[str, Any]]] = []
        for stored in store.fetch_rows([r[0] for r in rows]):
            read += 1
            obs = orjson.loads(stored.content)
            if obs.get("status") not in REPORTED:
                continue
            judged = copy.deepcopy(obs)
            interpret(judged)
            if is_critical(judged):
                critical.append((stored.id, judged))
        done = _alerted(services, [oid for oid, _ in critical])
        todo = [(oid, obs) for oid, obs in critical if oid not in done]
        if todo:
            with store.transaction() as tx:
                for oid, obs in todo:
                    raise_alert(tx, obs, oid, obs.get("issued") or instant(tx.now))
            raised += len(todo)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from ...api.services import Services
    from ...security.storage import open_store
    since = None
    if args.since:
        try:
            since = dt.datetime.fromisoformat(args.since).replace(tzinfo=dt.timezone.utc).timestamp()
        except ValueError:
            raise ValueError(f"--since takes YYYY-MM-DD, not {args.since!r}") from None
    store = open_store(args.database, Path(args.data_dir))
    try:
        read, raised = raise_missing(Services.build(store), since)
    finally:
        store.close()
    print(f"{read:,} results read, {raised:,} alerts raised", file=sys.stderr)
    return 0
