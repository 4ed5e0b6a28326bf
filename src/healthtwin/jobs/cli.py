"""`healthtwin jobs`: the schedule from the command line, for a cron or systemd timer and for the operator.

    healthtwin jobs run-due  [--data-dir D] [--database URL] [--analytics DIR]   the due jobs, once; exit 1 if one failed
    healthtwin jobs run NAME ...                                                 one job now, due or not
    healthtwin jobs list ...                                                     cadence, next due, last outcome
    healthtwin jobs history [--job NAME] [--limit N] ...                         the runs, newest first
    healthtwin jobs set NAME [--cadence 'daily 02:00'] [--enable | --disable] ...
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    jobs = sub.add_parser("jobs", help="the scheduled jobs (healthtwin jobs --help)")
    commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")
    parsers = {name: commands.add_parser(name, help=text) for name, text in (
        ("run-due", "run every job that is due, one after another (what a timer calls)"),
        ("run", "run one job now, due or not"), ("list", "the jobs: cadence, next due, last run"),
        ("history", "the runs, newest first"), ("set", "change a job's cadence or switch it on or off"))}
    for p in parsers.values():
        p.add_argument("--data-dir", default="./data", type=Path, help="the data folder (default ./data)")
        p.add_argument("--database", default=None, help="postgresql://... (default: SQLite in the data folder)")
        p.add_argument("--analytics", default=None, type=Path, help="the analytics folder (default: the data folder)")
        p.add_argument("--workers", type=int, default=2, help="worker processes of jobs that use them (default 2)")
        p.set_defaults(func=run)
    for name in ("run", "set"):
        parsers[name].add_argument("name", help="the job (healthtwin jobs list)")
    parsers["history"].add_argument("--job", default=None, help="only this job's runs (default: every job's)")
    parsers["history"].add_argument("--limit", type=int, default=20, help="at most this many runs (default 20)")
    parsers["set"].add_argument("--cadence", default=None, help="'daily HH:MM', 'weekly mon HH:MM', 'every 30m' (UTC)")
    switch = parsers["set"].add_mutually_exclusive_group()
    switch.add_argument("--enable", dest="enabled", action="store_true", default=None, help="run it when due")
    switch.add_argument("--disable", dest="enabled", action="store_false", help="leave it out until enabled")


def run(args: argparse.Namespace) -> int:
    from ..api.services import Services
    from ..registries.immunization.due import register
    from ..security.storage import open_store
    from .book import JobBook
    from .catalogue import JOBS, Context
    from .runner import run_due, run_job, utcnow
    if not Path(args.data_dir).is_dir():
        raise ValueError(f"--data-dir {args.data_dir}: no such folder")
    services = Services.build(open_store(args.database, args.data_dir))
    register(services.registry)  # as the server has them: the detection's recipients are searched
    try:
        book = JobBook(services.store)
        now = utcnow()
        book.register([(j.name, j.cadence) for j in JOBS], now)
        ctx = Context(services, Path(args.data_dir), Path(args.analytics or args.data_dir), args.database, args.workers)
        cmd = args.jobs_command
        if cmd in ("run-due", "run"):
            if cmd == "run":
                job = {j.name: j for j in JOBS}.get(args.name)
                if job is None:
                    raise ValueError(f"no job {args.name!r}: {', '.join(j.name for j in JOBS)}")
                done = [r for r in [run_job(book, job, ctx, now, force=True)] if r is not None]
                if not done:
                    raise ValueError(f"{args.name} is running already (healthtwin jobs list)")
            else:
                done = run_due(book, JOBS, ctx, now)
            print(json.dumps(done, indent=1, default=str, ensure_ascii=False))
            return 1 if any(r["outcome"] != "ok" for r in done) else 0
        if cmd == "set":
            book.configure(args.name, args.cadence, args.enabled)
        out = book.runs(args.job, args.limit) if cmd == "history" else book.jobs()
        print(json.dumps(out, indent=1, ensure_ascii=False))
        return 0
    finally:
        services.store.close()
