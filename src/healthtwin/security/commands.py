"""`healthtwin clients|users|token|audit …`: administration commands on the data folder's store and keys."""
from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from ..config import DEFAULT_PUBLIC_URL, Settings
from .access import CONFIDENTIALITY, ROLES, SENSITIVE


def _store(args: argparse.Namespace) -> Any:
    from .storage import open_store
    settings = Settings(Path(args.data_dir).resolve(), args.database)
    return open_store(settings.database, settings.data_dir)


def _read_store(args: argparse.Namespace) -> Any:
    """The store as it is, for commands that only read it (`audit verify`, `audit head`): no keys are loaded
    or generated, and a SQLite file that does not exist is not created (ValueError instead)."""
    from ..store import connect
    settings = Settings(Path(args.data_dir).resolve(), args.database)
    if not settings.database or settings.database.startswith("sqlite:///"):
        path = (Path(settings.database[len("sqlite:///"):]) if settings.database
                else settings.data_dir / "healthtwin.sqlite")
        if not path.is_file():
            raise ValueError(f"no store at {path}: nothing to verify (check --data-dir or --database)")
    return connect(settings.database, settings.data_dir)


def cmd_clients_add(args: argparse.Namespace) -> int:
    from .clients import SYSTEM_ROLES, add_client
    jwks = Path(args.jwks).read_text() if args.jwks else None
    pem = Path(args.public_key).read_bytes() if args.public_key else None
    secret = sys.stdin.readline().rstrip("\n") if args.secret_stdin else None
    client_id = add_client(_store(args), args.name, jwks=jwks, scopes=args.scopes, organization=args.organization,
                           public_key_pem=pem, redirect_uris=args.redirect_uri or [], client_id=args.client_id,
                           roles=" ".join(check_roles(args.roles, SYSTEM_ROLES)), secret=secret)
    print(client_id)
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    from .clients import add_user
    check_roles(args.roles)  # before the password prompt
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"Password for {args.username}: ")
        if getpass.getpass("Again: ") != password:
            print("passwords differ", file=sys.stderr)
            return 2
    add_user(_store(args), args.username, password, " ".join(check_roles(args.roles)), patient=args.patient,
             practitioner=args.practitioner, organization=args.organization)
    print(f"user {args.username} added")
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    """`users disable|enable NAME`, `clients disable|enable ID`."""
    from .auth_audit import auth_event, record_in_store
    from .clients import set_disabled
    kind = "user" if args.command == "users" else "client"
    action = args.users_command if kind == "user" else args.clients_command
    name, store = args.name, _store(args)
    if not set_disabled(store, kind, name, action == "disable"):
        print(f"no {kind} {name!r}", file=sys.stderr)
        return 1
    record_in_store(store, auth_event("account", True, getpass.getuser(), source="healthtwin " + args.command,
                                      description=f"{kind} {name} {action}d"))
    if action == "disable":
        print(f"{kind} {name} disabled: no sign-in or new token, and the tokens it holds are refused within a "
              "second on every server sharing this store")
    else:
        print(f"{kind} {name} enabled again (tokens revoked when it was disabled stay revoked)")
    return 0


def mint(data_dir: Path, public_url: str, subject: str, kind: str, scopes: list[str], roles: list[str],
         lifetime: int = 3600, **context: str | None) -> str:
    from .keys import load_or_create
    from .tokens import TokenService
    public_url = public_url.rstrip("/")
    service = TokenService(load_or_create(data_dir), public_url, public_url + "/fhir")
    token, _ = service.mint(subject, kind, scopes, roles, lifetime=lifetime, **context)
    return token


def check_roles(text: str | None, allowed: tuple[str, ...] = ROLES) -> list[str]:
    """The roles of a comma or space separated list; an unknown one is an error (a typo would otherwise mint a
    token or register an account that silently has no access)."""
    roles = (text or "").replace(",", " ").split()
    labels = {f"label:{c}" for c in (*CONFIDENTIALITY, *SENSITIVE)}
    unknown = [r for r in roles if r not in allowed and r not in labels]
    if unknown:
        raise ValueError(f"unknown role{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
                         f"choose from {', '.join(allowed)}, or label:CODE with CODE one of "
                         f"{', '.join((*CONFIDENTIALITY, *SENSITIVE))}")
    return roles


def cmd_token(args: argparse.Namespace) -> int:
    if args.lifetime <= 0:
        raise ValueError(f"--lifetime is a number of seconds above 0, not {args.lifetime}")
    print(mint(Path(args.data_dir).resolve(), args.public_url, args.subject, args.kind, args.scope.split(),
               check_roles(args.roles), args.lifetime, client_id=args.client_id,
               organization=args.organization, patient=args.patient, fhir_user=args.fhir_user,
               purpose=args.purpose))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from .audit import AuditLog, harden_postgres
    if args.audit_command in ("verify", "head"):
        return _audit_read(args)
    store = _store(args)
    log = AuditLog(store)
    log.ensure_schema()
    if args.audit_command == "harden":
        harden_postgres(store, args.app_role)
        print(f"audit_log is now append-only for role {args.app_role}")
        return 0
    if args.audit_command == "archive":
        return _archive(store, args)
    if args.audit_command == "partition":
        try:
            done = log.partition()
        except ValueError as exc:
            print(f"healthtwin audit partition: {exc}", file=sys.stderr)
            return 2
        if done is None:
            print("audit_log is partitioned already")
            return 0
        print(f"audit_log is now partitioned: entries 1-{done[0]} in audit_log_legacy, new partitions from there "
              f"(made up to entry {done[1]}). Restart the servers; on a hardened store run `healthtwin audit "
              f"harden --app-role …` again, for the new table")
        return 0
    raise ValueError(f"unknown audit command {args.audit_command!r}")


def _audit_read(args: argparse.Namespace) -> int:
    """`audit verify` and `audit head`: read only (no keys, no schema changes), and never a traceback: an
    entry that cannot even be read as an entry is BROKEN at its seq (AuditLog.verify)."""
    from .audit import GENESIS, AuditLog, table_exists
    try:
        store = _read_store(args)
    except ValueError as exc:
        print(f"healthtwin audit {args.audit_command}: {exc}", file=sys.stderr)
        return 2
    try:
        log = AuditLog(store)
        if not table_exists(store, "audit_log"):
            print(f"0:{GENESIS}" if args.audit_command == "head" else
                  "audit chain OK: 0 entries (no audit log in this store yet)")
            return 0
        if args.audit_command == "head":
            seq, digest = log.head()
            print(f"{seq}:{digest}")
            return 0
        return _verify(args, store, log)
    except Exception as exc:  # noqa: BLE001 - a damaged store is reported, not a traceback
        print(f"healthtwin audit {args.audit_command}: the audit log could not be read ({type(exc).__name__}: "
              f"{exc})", file=sys.stderr)
        return 2
    finally:
        store.close()


def _verify(args: argparse.Namespace, store: Any, log: Any) -> int:
    if args.archive:
        from .audit_archive import verify_archive
        ok, what = verify_archive(Path(args.archive), store)
        print(f"audit archive {'OK' if ok else 'BROKEN'}: {what}", file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    anchors = []
    for text in args.anchor or []:
        seq, _, digest = text.partition(":")
        if not seq.isdigit() or not digest:
            print(f"healthtwin audit verify: --anchor takes SEQ:HASH (from `audit head`), not {text!r}",
                  file=sys.stderr)
            return 2
        anchors.append((int(seq), digest))
    result = log.verify(anchors=anchors)
    if result.ok:
        print(f"audit chain OK: {result.checked} entries")
        return 0
    print(f"audit chain BROKEN at entry {result.first_bad_seq}: {result.reason} ({result.checked} entries good)",
          file=sys.stderr)
    return 1


def _archive(store: Any, args: argparse.Namespace) -> int:
    import datetime as dt

    from .audit_archive import archive
    try:
        before = dt.datetime.fromisoformat(args.before)
    except ValueError:
        print(f"--before takes a date like 2025-01-01, not {args.before!r}", file=sys.stderr)
        return 2
    if before.tzinfo is None:
        before = before.replace(tzinfo=dt.timezone.utc)
    out = Path(args.out)
    if out.exists():
        print(f"{out} exists; an archive is never overwritten", file=sys.stderr)
        return 2
    try:
        result = archive(store, before.timestamp(), out)
    except ValueError as exc:
        print(f"healthtwin audit archive: {exc}", file=sys.stderr)
        return 1
    if not result.archived:
        print(f"nothing recorded before {args.before} to archive")
        return 0
    print(f"archived entries {result.first}-{result.last} ({result.archived}) to {out}; the chain in the "
          f"database now starts from a checkpoint at entry {result.last}. Keep the file: "
          f"`healthtwin audit verify --archive {out}` checks it")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from .at_rest import AtRest
    from .keys import retired_master_keys
    from .rotation import rewrap_store, rotate_master_file
    data_dir = Path(args.data_dir).resolve()
    store = _store(args)  # also creates the keys of a new data folder
    if args.keys_command == "rotate":
        retired = rotate_master_file(data_dir)
        print(f"new master key; the previous one is kept as {retired} until `healthtwin keys retire`")
    report = rewrap_store(store, AtRest.for_data_dir(data_dir))
    print(f"re-wrapped {report.rewrapped} blobs; {report.current} were already under the current master"
          + (f"; {report.clear} written before encryption are in clear" if report.clear else ""))
    if args.keys_command == "retire":
        for path in sorted((data_dir / "keys").glob("master.key.*")):
            path.unlink()
            print(f"deleted retired key {path.name}")
        if not retired_master_keys(data_dir):
            print("no retired master key remains")
    store.close()
    return 0


def cmd_signing_keys(args: argparse.Namespace) -> int:
    """`keys rotate-signing` and `keys retire-signing`: the token-signing key (no store needed)."""
    from .auth_audit import auth_event, record_in_store
    from .keys import load_or_create, retire_signing_files, rotate_signing_file
    from .tokens import KEYS_RECHECK, MAX_TOKEN_LIFETIME
    data_dir = Path(args.data_dir).resolve()
    store = _store(args)  # a new data folder gets its keys first; the change is audited in its store

    def audited(what: str) -> None:
        record_in_store(store, auth_event("keys", True, getpass.getuser(), source="healthtwin keys",
                                          description=what))

    if args.keys_command == "rotate-signing":
        retired = rotate_signing_file(data_dir)
        audited(f"token-signing key rotated: new kid {load_or_create(data_dir).kid}, the previous kept as "
                f"{retired.name}")
        print(f"new token-signing key {load_or_create(data_dir).kid}; running servers sign with it within "
              f"{KEYS_RECHECK:.0f} s. The previous key ({retired.name}) still verifies and stays in the JWKS "
              f"until `healthtwin keys retire-signing`, allowed once every token it signed has expired "
              f"({MAX_TOKEN_LIFETIME // 60} minutes)")
        return 0
    deleted, kept = retire_signing_files(data_dir, 0 if args.force else MAX_TOKEN_LIFETIME + 60)
    if deleted:
        audited(f"retired token-signing keys deleted{' (forced)' if args.force else ''}: "
                + ", ".join(p.name for p in deleted))
    for path in deleted:
        print(f"deleted retired signing key {path.name}")
    for path in kept:
        print(f"kept {path.name}: retired less than {MAX_TOKEN_LIFETIME // 60 + 1} minutes ago, so tokens it signed "
              "may still be live (--force deletes it anyway and those tokens stop working)", file=sys.stderr)
    if not deleted and not kept:
        print("no retired signing key")
    return 1 if kept else 0


def cmd_extract(args: argparse.Namespace) -> int:
    from .extract import audit_extract, research_extract
    from .keys import load_or_create
    data_dir = Path(args.data_dir).resolve()
    store = _store(args)
    types = [t for t in (args.types or "").split(",") if t] or None
    counts = research_extract(store, load_or_create(data_dir).pseudonym_key, args.project, Path(args.out), types)
    audit_extract(store, args.operator, args.project, counts)
    store.close()
    print(f"extract for project {args.project}: {sum(counts.values()):,} resources -> {args.out}")
    return 0


def _switches(parent: Any, store_args: Any, metavar: str, disable_help: str, enable_help: str) -> None:
    """`disable NAME` and `enable NAME` under `users` or `clients`."""
    for action, text in (("disable", disable_help), ("enable", enable_help)):
        p = parent.add_parser(action, help=text)
        store_args(p)
        p.add_argument("name", metavar=metavar, help=f"the {metavar.lower().replace('_', ' ')} to {action}")
        p.set_defaults(func=cmd_disable)


def register(sub: Any, store_args: Any) -> None:
    clients = sub.add_parser("clients", help="register SMART clients").add_subparsers(dest="clients_command",
                                                                                        required=True)
    add = clients.add_parser("add", help="register a backend service (keys) or an app (redirect URIs)")
    store_args(add)
    add.add_argument("name", help="a name for the client, shown in the audit trail")
    add.add_argument("--scopes", required=True, help="the most this client may be granted, space separated")
    add.add_argument("--jwks", help="file with the client's public JWKS")
    add.add_argument("--public-key", help="file with the client's public key (PEM)")
    add.add_argument("--organization", help="Organization/<id> the client acts for")
    add.add_argument("--redirect-uri", action="append", help="exact redirect URI (apps); repeatable")
    add.add_argument("--client-id", help="choose the id (default: random)")
    add.add_argument("--secret-stdin", action="store_true",
                     help="an app's client secret (32 characters or more) from standard input: it then "
                          "authenticates with client_secret_basic or client_secret_post")
    add.add_argument("--roles", help="a backend service's role: laboratory, pharmacy, insurer, analyst, auditor, "
                                     "administrator (without one, only its scopes limit it)")
    add.set_defaults(func=cmd_clients_add)
    _switches(clients, store_args, "CLIENT_ID", "refuse a client's tokens, old and new (an institution's system "
              "compromised)", "let a disabled client get tokens again")

    users = sub.add_parser("users", help="people who sign in").add_subparsers(dest="users_command", required=True)
    uadd = users.add_parser("add", help="add a user (password from a prompt, or --password-stdin)")
    store_args(uadd)
    uadd.add_argument("username", help="the name the person signs in with")
    uadd.add_argument("--roles", required=True,
                      help="citizen, clinician, epidemiologist, analyst, auditor, administrator, label:PSY…")
    uadd.add_argument("--patient", help="Patient/<id>: the user's own record")
    uadd.add_argument("--practitioner", help="Practitioner/<id>")
    uadd.add_argument("--organization", help="Organization/<id>")
    uadd.add_argument("--password-stdin", action="store_true",
                      help="read the password from standard input instead of a prompt")
    uadd.set_defaults(func=cmd_users_add)
    _switches(users, store_args, "USERNAME", "stop a person signing in and refuse the tokens they hold (someone "
              "who left)", "let a disabled user sign in again")

    tok = sub.add_parser("token", help="mint an access token with the data folder's key (tests, demos, ops)")
    tok.add_argument("--data-dir", default="./data",
                     help="folder whose signing key signs the token (default ./data)")
    tok.add_argument("--public-url", default=DEFAULT_PUBLIC_URL,
                     help=f"the server's public URL: the token's issuer and audience (default {DEFAULT_PUBLIC_URL})")
    tok.add_argument("--subject", required=True, help="who the token is for (a user name or client id)")
    tok.add_argument("--kind", default="person", choices=["person", "system"],
                     help="a person (user/ and patient/ scopes) or a backend system (system/ scopes); "
                          "default person")
    tok.add_argument("--scope", default="user/*.rs", help="SMART scopes, space separated (default user/*.rs)")
    tok.add_argument("--roles", default="", help="comma or space separated: " + ", ".join(ROLES)
                     + ", or label:CODE to see resources labelled CODE")
    tok.add_argument("--patient", help="Patient/<id>: the patient in context (a citizen's own record)")
    tok.add_argument("--organization", help="Organization/<id> the holder acts for")
    tok.add_argument("--fhir-user", help="Patient/<id>, Practitioner/<id>, PractitionerRole/<id> (an epidemiologist) "
                                         "or RelatedPerson/<id>: who the holder is")
    tok.add_argument("--client-id", help="the SMART client the token is issued to")
    tok.add_argument("--lifetime", type=int, default=3600, metavar="SECONDS",
                     help="seconds until the token expires (default 3600, one hour)")
    tok.add_argument("--purpose", help="a purpose of use (HL7 ActReason code, e.g. HSYSADMIN) that every request "
                                       "made with the token states; the role must allow it")
    tok.set_defaults(func=cmd_token)

    audit = sub.add_parser("audit", help="check and protect the audit trail").add_subparsers(
        dest="audit_command", required=True)
    verify = audit.add_parser("verify", help="walk the hash chain; exit 1 at the first bad entry")
    store_args(verify)
    verify.add_argument("--anchor", action="append", metavar="SEQ:HASH", help="SEQ:HASH published earlier by `audit head`; repeatable")
    verify.add_argument("--archive", help="check an archive file made by `audit archive` instead, against the "
                                          "checkpoint the database keeps")
    verify.set_defaults(func=cmd_audit)
    arch = audit.add_parser("archive", help="move entries recorded before a date to a file (an administrator's "
                                            "job on hardened PostgreSQL)")
    store_args(arch)
    arch.add_argument("--before", required=True, help="date (UTC unless an offset is given), e.g. 2025-01-01")
    arch.add_argument("--out", required=True, help="the archive file to write (NDJSON; never overwritten)")
    arch.set_defaults(func=cmd_audit)
    head = audit.add_parser("head", help="print SEQ:HASH of the newest entry, to publish as an anchor")
    store_args(head)
    head.set_defaults(func=cmd_audit)
    part = audit.add_parser("partition", help="PostgreSQL: partition a log made before partitioning (servers "
                                              "stopped); no entry is copied")
    store_args(part)
    part.set_defaults(func=cmd_audit)
    harden = audit.add_parser("harden", help="PostgreSQL: make audit_log append-only for the server's role")
    store_args(harden)
    harden.add_argument("--app-role", required=True, help="the PostgreSQL role the server connects as")
    harden.set_defaults(func=cmd_audit)

    extract = sub.add_parser("extract", help="a pseudonymised research extract (NDJSON) for one project")
    store_args(extract)
    extract.add_argument("--project", required=True, help="project name: pseudonyms are stable within it only")
    extract.add_argument("--out", required=True, help="output folder")
    extract.add_argument("--types", help="comma-separated resource types (default: all)")
    extract.add_argument("--operator", default=getpass.getuser(), help="who runs it, for the audit trail")
    extract.set_defaults(func=cmd_extract)

    keys = sub.add_parser("keys", help="rotate the master key (identifiers at rest) or the token-signing key")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser("rotate", help="new master key; re-wrap every encrypted blob under it")
    store_args(rotate)
    rotate.set_defaults(func=cmd_keys)
    retire = keys_sub.add_parser("retire", help="after restarting servers: re-wrap stragglers, delete old keys")
    store_args(retire)
    retire.set_defaults(func=cmd_keys)
    srotate = keys_sub.add_parser("rotate-signing", help="new token-signing key; the old one keeps verifying")
    store_args(srotate)
    srotate.set_defaults(func=cmd_signing_keys)
    sretire = keys_sub.add_parser("retire-signing",
                                  help="delete signing keys retired over an hour ago (their tokens have expired)")
    store_args(sretire)
    sretire.add_argument("--force", action="store_true", help="delete them even if tokens they signed may be live")
    sretire.set_defaults(func=cmd_signing_keys)
