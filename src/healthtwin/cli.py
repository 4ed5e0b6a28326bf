"""The `healthtwin` command: serve, load, generate, demo, clients, users, token, audit."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .config import Settings

log = logging.getLogger("healthtwin")


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default="./data", help="folder for the embedded database and keys (default ./data)")
    p.add_argument("--database", default=None,
                   help="postgresql://user@host/db for PostgreSQL; default: SQLite in the data folder")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .serving import check_port, hold_data_dir
    # Before anything is written (keys, the store): a busy port or a data folder in use is one clear line.
    check_port(args.host, args.port)
    hold_data_dir(Path(args.data_dir).resolve())
    scheme = "https" if args.ssl_certfile else "http"
    public_url = args.public_url or f"{scheme}://{args.host}:{args.port}"
    settings = Settings(Path(args.data_dir).resolve(), args.database, public_url.rstrip("/"),
                        insecure_open=args.insecure_open)
    settings.export()
    if getattr(args, "rate_limit", None):
        if args.rate_limit != "off":
            try:
                rps, burst = (float(x) for x in args.rate_limit.split(","))
            except ValueError:
                raise ValueError(f"--rate-limit takes RATE,BURST (e.g. 50,200) or 'off', not {args.rate_limit!r}") \
                    from None
        os.environ["HEALTHTWIN_RATE_LIMIT"] = args.rate_limit
    log.warning("Health Twin serving %s://%s:%s/fhir (public URL %s, store: %s)", scheme, args.host, args.port,
                settings.public_url, settings.database or settings.data_dir / "healthtwin.sqlite")
    if args.insecure_open:
        log.error("*" * 78)
        log.error("INSECURE: --insecure-open: no authentication, every caller may read and write everything.")
        log.error("Use it on a laptop with synthetic data only; never expose this server.")
        log.error("*" * 78)
    else:
        log.warning("SMART on FHIR authorization is enforced: anonymous callers get 401 (except /metadata).")
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise ValueError("--ssl-certfile and --ssl-keyfile go together")
    if getattr(args, "referential_integrity", None):
        os.environ["HEALTHTWIN_REFERENTIAL_INTEGRITY"] = args.referential_integrity
    os.environ["HEALTHTWIN_WORKERS"] = str(args.workers)  # several: analytics snapshots are published
    if getattr(args, "audit_feed", None):
        from .security.audit_feed import parse_target
        parse_target(args.audit_feed)  # a clear error now, not a warning in every worker
        os.environ["HEALTHTWIN_AUDIT_FEED"] = args.audit_feed
        if args.audit_feed_ca:
            os.environ["HEALTHTWIN_AUDIT_FEED_CA"] = args.audit_feed_ca
    from .api.proxies import parse_trusted
    forwarded = getattr(args, "forwarded_allow_ips", None) or ""
    parse_trusted(forwarded)  # a clear error now, not in every worker
    os.environ["HEALTHTWIN_FORWARDED_ALLOW_IPS"] = forwarded
    # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 by default;
    # api/proxies.py applies forwarded headers from the configured proxies only.
    uvicorn.run("healthtwin.asgi:app", host=args.host, port=args.port, workers=args.workers,
                log_level=args.log_level, access_log=False, loop="uvloop", http="httptools", proxy_headers=False,
                ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from .loading import load_paths
    settings = Settings(Path(args.data_dir).resolve(), args.database)
    return load_paths(settings, args.paths, restart=args.restart, workers=args.workers)


def _secure_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--public-url", default=None,
                   help="the URL clients use (token issuer/audience); default http(s)://HOST:PORT")
    p.add_argument("--insecure-open", action="store_true",
                   help="DANGER: no authentication, everything allowed (OpenPolicy); for local experiments")
    p.add_argument("--ssl-certfile", default=None, help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--ssl-keyfile", default=None, help="... and this private key (PEM)")


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes I/N (e.g. 0/4), not {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= I < N")
    return i, n


def _date(text: str):
    import datetime as dt
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a date is YYYY-MM-DD (e.g. 2024-12-31), not {text!r}") from None


def cmd_generate(args: argparse.Namespace) -> int:
    from .population import generator
    from .progress import Bar
    events = None if args.events == "all" else set() if args.events == "none" else \
        set(filter(None, args.events.split(",")))
    shard_size = len(range(args.shard[0], args.patients, args.shard[1]))
    bar = Bar("generating", shard_size, "citizens")
    window = dict(start_year=args.start_year, end_date=args.end_date)
    if args.out == "-":
        result = generator.write_ndjson_stream(sys.stdout.buffer, args.patients, args.seed, args.shard,
                                               events=events, progress=lambda d, _t: bar(d), **window)
        total = sum(result["counts"].values())
    else:
        manifest = generator.generate(Path(args.out), args.patients, args.seed, args.shard, events=events,
                                      progress=lambda d, _t: bar(d), dirty=args.duplicates, **window)
        total = sum(o["count"] for o in manifest["output"])
    bar.close()
    print(f"generated {total:,} resources for {args.patients:,} citizens (shard {args.shard[0]}/{args.shard[1]})",
          file=sys.stderr)
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from . import FHIR_VERSION, __version__
    try:
        installed = version("healthtwin")
    except PackageNotFoundError:
        installed = __version__
    return f"healthtwin {installed} (FHIR R4 {FHIR_VERSION})"


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="TCP port to listen on (default 8080)")


def _window_args(p: argparse.ArgumentParser, generate: bool) -> None:
    p.add_argument("--end-date", type=_date, default=None, metavar="YYYY-MM-DD",
                   help="last day of the generated history (default: today; give one for reproducible output)")
    if generate:
        p.add_argument("--start-year", type=int, default=None, metavar="YEAR",
                       help="first year of the history (default: five years before the end date's year)")


class _Help(argparse.HelpFormatter):
    """argparse measures command names without their indent, so a name as long as `immunization` would
    push its help onto the next line: reserve the column it needs."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog)
        self._action_max_length = 16


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="healthtwin", description="Health Twin: a national FHIR R4 digital twin",
                                     formatter_class=_Help)
    parser.add_argument("--version", action="version", version=_version(), help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="serve the FHIR API")
    _store_args(serve)
    _serve_args(serve)
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes (default 1; several share the data folder and publish analytics "
                            "snapshots)")
    serve.add_argument("--audit-feed", default=None, metavar="URL",
                       help="forward the audit trail as syslog to tcp://host:port or tls://host:port (a SIEM)")
    serve.add_argument("--audit-feed-ca", default=None, metavar="FILE",
                       help="CA certificates (PEM) that sign the feed receiver's TLS certificate")
    serve.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                       help="server log detail (default warning)")
    serve.add_argument("--rate-limit", default="50,200", metavar="RATE,BURST",
                       help="requests per second and burst (requests) per client, e.g. 50,200 (default), or 'off'")
    serve.add_argument("--forwarded-allow-ips", default="", metavar="ADDRESSES",
                       help="reverse proxies whose X-Forwarded-For/-Proto/-Host headers are believed: comma-"
                            "separated IP addresses or networks (10.0.0.0/8), or '*'; default none, so links "
                            "use --public-url and the rate limit the connection's address")
    serve.add_argument("--referential-integrity", choices=("strict", "off"), default=None,
                       help="strict (default; also HEALTHTWIN_REFERENTIAL_INTEGRITY): a write whose Type/id reference "
                            "names no stored resource answers 422, a delete that would leave references to it 409; "
                            "off: neither is checked (for bulk loads through the API)")
    _secure_args(serve)
    serve.set_defaults(func=cmd_serve)

    load = sub.add_parser("load", help="load FHIR Bundles (JSON) or NDJSON files into the store")
    _store_args(load)
    load.add_argument("paths", nargs="+", help="files or folders; '-' reads NDJSON from standard input")
    load.add_argument("--restart", action="store_true", help="load files again even if loaded completely before")
    load.add_argument("--workers", type=int, default=None,
                      help="validation processes, which also write (default: one per core, plus one)")
    load.set_defaults(func=cmd_load)

    gen = sub.add_parser("generate", help="generate a synthetic population as FHIR Bulk Data NDJSON")
    gen.add_argument("--patients", type=int, required=True, help="number of citizens to generate")
    gen.add_argument("--seed", type=int, default=1, help="random seed: the same seed gives the same population "
                                                        "(default 1)")
    gen.add_argument("--out", required=True, help="output folder, or '-' for one NDJSON stream on stdout")
    gen.add_argument("--shard", type=_shard, default=(0, 1), help="I/N: write shard I of N (default 0/1)")
    gen.add_argument("--events", default="all",
                     help="planted events: 'all' (default), 'none', or a comma list (see docs/population.md)")
    gen.add_argument("--duplicates", action="store_true",
                     help="also write the duplicate Patients institutions make, with their truth in "
                          "ground_truth/mpi_duplicates.json (docs/mpi.md)")
    _window_args(gen, generate=True)
    gen.set_defaults(func=cmd_generate)

    demo = sub.add_parser("demo", help="load demo data into the embedded store and serve it")
    _store_args(demo)
    _serve_args(demo)
    demo.add_argument("--patients", type=int, default=DEMO_PATIENTS,
                      help=f"number of synthetic citizens (default {DEMO_PATIENTS:,})")
    demo.add_argument("--seed", type=int, default=1, help="random seed of the population (default 1)")
    _window_args(demo, generate=False)
    demo.add_argument("--no-serve", action="store_true", help="load and exit (for tests)")
    _secure_args(demo)
    demo.set_defaults(func=lambda a: __import__("healthtwin.demo", fromlist=["run"]).run(a))

    # Handled before parsing (main() hands the rest of the line to the analytics command set); listed here
    # so that `healthtwin --help` shows it.
    sub.add_parser("views", help="materialise the analytics views (healthtwin views materialize --help)",
                   add_help=False)

    from .security.commands import register
    register(sub, _store_args)
    from .registries.immunization.cli import add_parser as add_immunization
    add_immunization(sub)
    from .registries.laboratory.batch import add_parser as add_laboratory
    add_laboratory(sub)
    from .twin.surveillance.cli import add_parser as add_surveillance
    add_surveillance(sub)
    from .mpi.cli import add_parser as add_mpi
    add_mpi(sub, _store_args)
    from .twin.forecasting.cli import add_parser as add_forecast
    add_forecast(sub)
    from .jobs.cli import add_parser as add_jobs
    add_jobs(sub)
    return parser


# The demo's default population: 3,000 citizens are 317,550 resources (window to 2026-12-01), built by
# `healthtwin demo --no-serve` in 79 CPU-seconds (generate 11 s, load, views 27 s), 4 min 5 s of wall time on
# 2026-12-02 on the 2-core development machine while it ran at a load average of 8 to 10.
DEMO_PATIENTS = 3_000


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args_in = sys.argv[1:] if argv is None else argv
    if args_in and args_in[0] == "views":  # healthtwin views materialize …: the analytics command set
        from .analytics.refresh import views_main
        return views_main(args_in[1:])
    args = build_parser().parse_args(argv)
    from .store.faults import Unavailable
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError, Unavailable) as exc:  # Unavailable: the database is away, or its disk full
        print(f"healthtwin {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
