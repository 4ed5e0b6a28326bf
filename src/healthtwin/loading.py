"""Bulk loading of FHIR NDJSON (and Bundles) into the store: `healthtwin load` and $import share this.

Each line is parsed, validated and indexed; a bad line is reported with its file, line number and
OperationOutcome and the load goes on. Batches commit together with a checkpoint of the last line
loaded, so an interrupted load resumes where it stopped, and re-loading a file creates nothing new.
"""
from __future__ import annotations

import hashlib
import logging
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

import orjson

from .fhir.model import ID_RE, NOT_STORED, is_resource_type

log = logging.getLogger("healthtwin.load")
BATCH = 1000


@dataclass
class LoadReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[dict] = field(default_factory=list)  # {file, line, outcome}
    seconds: float = 0.0

    @property
    def loaded(self) -> int:
        return self.created + self.updated + self.unchanged

    def rate(self) -> float:
        return self.loaded / self.seconds if self.seconds else 0.0


def _outcome(message: str, location: str | None = None, issues=None) -> dict:
    if issues:
        return {"resourceType": "OperationOutcome", "issue": [
            {"severity": i.severity, "code": i.code, "diagnostics": i.message,
             **({"expression": [i.location]} if i.location else {})} for i in issues]}
    issue = {"severity": "error", "code": "invalid", "diagnostics": message}
    if location:
        issue["expression"] = [location]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def _chunks(lines: Iterable[bytes], start_line: int, size: int) -> Iterator[list[tuple[int, bytes]]]:
    chunk: list[tuple[int, bytes]] = []
    for line_no, raw in enumerate(lines, 1):
        if line_no <= start_line or not raw.strip():
            continue
        chunk.append((line_no, raw))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Checker:
    """Parses, validates and extracts index rows for one chunk of lines; runs in worker processes."""

    def __init__(self, validator, extract) -> None:
        self.validator = validator
        self.extract = extract

    def __call__(self, chunk: list[tuple[int, bytes]]) -> tuple[list[tuple[int, dict, list]], list[tuple[int, dict]]]:
        good, bad = [], []
        for line_no, raw in chunk:
            try:
                resource = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                bad.append((line_no, _outcome(f"Line is not valid JSON: {exc}")))
                continue
            if not isinstance(resource, dict) or not is_resource_type(str(resource.get("resourceType"))):
                bad.append((line_no, _outcome("Line is not a FHIR resource with a known resourceType",
                                              "resourceType")))
                continue
            if resource["resourceType"] in NOT_STORED:
                bad.append((line_no, _outcome(NOT_STORED[resource["resourceType"]], "resourceType")))
                continue
            rid = resource.get("id")
            if not isinstance(rid, str) or not ID_RE.match(rid):
                bad.append((line_no, _outcome("Bulk data resources must carry a valid id", "id")))
                continue
            issues = self.validator.validate(resource)
            if any(i.severity in ("error", "fatal") for i in issues):
                bad.append((line_no, _outcome("", issues=issues)))
                continue
            good.append((line_no, resource, self.extract(resource)))
        return good, bad


_worker_checker: Checker | None = None
_worker_store = None


def _worker_init(at_rest, target: tuple[str, str] | None = None) -> None:
    global _worker_checker, _worker_store
    from .fhir.search_params import SearchRegistry
    from .fhir.validation import Validator
    registry = SearchRegistry.default()

    def index_rows(resource: dict) -> list[tuple]:
        rows = registry.index_extractor(resource["resourceType"])(resource)
        return rows if at_rest is None else at_rest.index_rows(resource["resourceType"], rows)
    _worker_checker = Checker(Validator.default(), index_rows)
    if target is not None:  # this worker writes what it checked, on its own connection
        if target[0] == "postgres":
            from .store.postgres import PostgresStore
            _worker_store = PostgresStore(target[1], min_size=1, max_size=2)
        else:  # SQLite: the workers queue on the store's writer lock and validate while another writes
            from .store.sqlite import SQLiteStore
            _worker_store = SQLiteStore(target[1])
        _worker_store.protect(at_rest)
        _worker_store.set_extractor(lambda r: registry.index_extractor(r["resourceType"])(r))
    from .runtime import settle_after_start
    settle_after_start()


def _worker_check(chunk):
    assert _worker_checker is not None
    return _worker_checker(chunk)


def _worker_check_and_write(chunk):
    """Checks a chunk and writes it in one transaction: (counts or None if the write failed, bad lines)."""
    assert _worker_checker is not None and _worker_store is not None
    good, bad = _worker_checker(chunk)
    try:
        with _worker_store.transaction() as tx:
            counts = tx.put_many([(r, rows) for _, r, rows in good]) if good else (0, 0, 0)
    except Exception as exc:  # noqa: BLE001 - the loader retries the chunk in its own process and reports there
        log.warning("a worker could not write a chunk (%s); it is retried by the loader", exc)
        return None, bad
    return counts, bad


class Loader:
    """Validates and indexes NDJSON lines (in worker processes when workers > 1) and writes them in
    batches through the store's bulk path: from this process with one worker, from the workers themselves
    with several (see `_load_lines_parallel`)."""

    def __init__(self, services, progress: Callable[[int, int], None] | None = None, workers: int = 1) -> None:
        self.services = services
        self.store = services.store
        self.progress = progress
        self.report = LoadReport()
        self.workers = workers
        self._pool = None
        self._checker = Checker(services.validator, self.store.index_rows_for)

    @property
    def parallel_writes(self) -> bool:
        """Workers write what they check, instead of handing it (pickled: about a sixth of the load's CPU) to
        this process to write. PostgreSQL writes them concurrently; on SQLite they take turns at the writer
        lock while the others validate."""
        return self.workers > 1 and self._target() is not None

    def _target(self) -> tuple[str, str] | None:
        """What a worker opens to write: ("postgres", dsn) or ("sqlite", path); None for an in-memory store."""
        if self.store.dialect == "postgres":
            return ("postgres", self.store.dsn)
        path = getattr(self.store, "path", ":memory:")
        return ("sqlite", path) if path != ":memory:" else None

    def _ensure_pool(self) -> Any:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            # Services' run-time definitions (custom SearchParameters, profiles) live in this process;
            # workers are used only when none are loaded.
            target = self._target() if self.parallel_writes else None
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("fork"),
                                             initializer=_worker_init, initargs=(self.store.at_rest, target))
        return self._pool

    def _map(self, chunks: Iterator[list[tuple[int, bytes]]]):
        if self.workers <= 1:
            return map(self._checker, chunks)
        return _ordered_prefetch(self._ensure_pool(), chunks, self.workers * 2)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _error(self, source: str, line_no: int, outcome: dict) -> None:
        self.report.errors.append({"file": source, "line": line_no, "outcome": outcome})
        first = outcome["issue"][0]
        log.warning("%s:%d: %s %s", source, line_no, first.get("diagnostics"), first.get("expression", [""])[0])

    def load_lines(self, lines: Iterable[bytes], source: str, checkpoint: str | None = None,
                   start_line: int = 0) -> None:
        if self.parallel_writes:
            return self._load_lines_parallel(lines, source, checkpoint, start_line)
        last_line = start_line
        for good, bad in self._map(_chunks(lines, start_line, BATCH)):
            for line_no, outcome in bad:
                self._error(source, line_no, outcome)
            last_line = max([last_line] + [g[0] for g in good] + [b[0] for b in bad])
            self._commit([(r, rows) for _, r, rows in good], checkpoint, last_line)
            self._tick()
        if checkpoint:
            self._commit([], checkpoint, last_line, done=True)

    def _load_lines_parallel(self, lines: Iterable[bytes], source: str, checkpoint: str | None,
                             start_line: int) -> None:
        """Workers check and write chunks concurrently; results are taken in input order, so the checkpoint
        (saved here) is always a prefix of the input that is wholly written. Chunks committed out of order
        beyond it are simply loaded again, unchanged, after an interruption. Two chunks naming the same
        resource are never in flight together, so the later line still wins."""
        from collections import deque
        pool = self._ensure_pool()
        in_flight: deque = deque()
        last_line = start_line

        def settle_first() -> None:
            nonlocal last_line
            future, chunk, _ = in_flight.popleft()
            counts, bad = future.result()
            for line_no, outcome in bad:
                self._error(source, line_no, outcome)
            if counts is None:  # the worker's write failed: check and write here (an error here stops the load)
                good, _ = self._checker(chunk)
                self._commit([(r, rows) for _, r, rows in good], None, 0)
            else:
                self.report.created += counts[0]
                self.report.updated += counts[1]
                self.report.unchanged += counts[2]
            last_line = max(last_line, chunk[-1][0])
            if checkpoint:
                with self.store.transaction() as tx:
                    _save_checkpoint(tx, checkpoint, last_line, False)
            self._tick()

        for chunk in _chunks(lines, start_line, BATCH):
            keys = _keys(chunk)
            while in_flight and (len(in_flight) >= self.workers * 2 or
                                 any(not keys.isdisjoint(other) for _, _, other in in_flight)):
                settle_first()
            in_flight.append((pool.submit(_worker_check_and_write, chunk), chunk, keys))
        while in_flight:
            settle_first()
        if checkpoint:
            self._commit([], checkpoint, last_line, done=True)

    def _commit(self, batch, checkpoint: str | None, line_no: int, done: bool = False) -> None:
        with self.store.transaction() as tx:
            if batch:
                created, updated, unchanged = tx.put_many(batch)
                self.report.created += created
                self.report.updated += updated
                self.report.unchanged += unchanged
            if checkpoint:
                _save_checkpoint(tx, checkpoint, line_no, done)

    def refresh_statistics(self) -> None:
        """After the last file: the store's planner statistics, if this load wrote anything (part of the load:
        the data is searchable at speed once it returns)."""
        written = self.report.created + self.report.updated
        if written:
            self.store.refresh_statistics(written)

    def _tick(self) -> None:
        if self.progress:
            self.progress(self.report.loaded, len(self.report.errors))


def _keys(chunk: list[tuple[int, bytes]]) -> set[tuple[str, str]]:
    """(type, id) of each parsable line: which resources a chunk writes (bad lines are the worker's to report)."""
    keys = set()
    for _, raw in chunk:
        try:
            resource = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(resource, dict):
            keys.add((str(resource.get("resourceType")), str(resource.get("id"))))
    return keys


def _ordered_prefetch(pool, chunks, depth: int):
    """Like pool.map, but submits at most `depth` chunks ahead so memory stays flat on huge inputs."""
    from collections import deque
    pending: deque = deque()
    for chunk in chunks:
        pending.append(pool.submit(_worker_check, chunk))
        if len(pending) >= depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _checkpoint_key(path: Path) -> tuple[str, dict]:
    st = path.stat()
    ident = {"path": str(path.resolve()), "size": st.st_size, "mtime": st.st_mtime_ns}
    key = "load:" + hashlib.sha256(orjson.dumps(ident)).hexdigest()[:32]
    return key, ident


def _save_checkpoint(tx, key: str, line: int, done: bool) -> None:
    now = time.time()
    status = "done" if done else "running"
    tx.execute("UPDATE jobs SET status = ?, done = ?, updated = ? WHERE id = ?", (status, line, now, key))
    if not tx.execute("SELECT 1 FROM jobs WHERE id = ?", (key,)):
        tx.execute("INSERT INTO jobs (id, kind, status, done, created, updated) VALUES (?, 'load', ?, ?, ?, ?)",
                   (key, status, line, now, now))


def _resume_point(store, key: str) -> tuple[int, bool]:
    rows = store.query("SELECT done, status FROM jobs WHERE id = ?", [key])
    return (rows[0][0], rows[0][1] == "done") if rows else (0, False)


def expected_total(paths: Iterable[str]) -> int | None:
    """How many resources `paths` hold, when that is cheap to know: NDJSON files only (one per line; a
    manifest's counts are not trusted), none from standard input. The progress bar's 100 %."""
    total = 0
    for item in ndjson_files(paths):
        if item == "-" or not isinstance(item, Path) or item.suffix != ".ndjson":
            return None
        with item.open("rb") as f:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    return total


def ndjson_files(paths: Iterable[str]) -> Iterator[Path | str]:
    for p in paths:
        if p == "-":
            yield "-"
            continue
        path = Path(p)
        if path.is_dir():
            yield from sorted(f for f in path.rglob("*") if f.suffix in (".ndjson", ".json") and f.is_file()
                              and f.name != "manifest.json" and "ground_truth" not in f.parts)
        elif path.exists():
            yield path
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")


def load_bundle(services, path: Path, report: LoadReport) -> None:
    """A JSON file holding a transaction or batch Bundle (e.g. Synthea's) goes through the transaction API."""
    from .request import Caller, RequestContext
    from .api.interactions.transaction import process
    from .fhir.outcome import FHIRError
    try:
        bundle = orjson.loads(path.read_bytes())
        ctx = RequestContext(caller=Caller(subject="cli", kind="system"), base_url="", prefer_return="minimal")
        # A bulk load may name resources that later files bring: references are not checked (docs/rest.md).
        relaxed = replace(services, limits=replace(services.limits, referential_integrity=False))
        result = process(relaxed, ctx, bundle)
        report.created += sum(1 for e in result["entry"] if e["response"]["status"].startswith("201"))
        report.unchanged += sum(1 for e in result["entry"] if e["response"]["status"].startswith("200"))
    except (FHIRError, orjson.JSONDecodeError, AttributeError) as exc:
        outcome = exc.outcome() if isinstance(exc, FHIRError) else _outcome(f"Not a FHIR Bundle: {exc}")
        report.errors.append({"file": str(path), "line": 0, "outcome": outcome})
        log.warning("%s: %s", path, outcome["issue"][0]["diagnostics"])


def load(services, paths: Iterable[str], stdin: IO[bytes] | None = None, restart: bool = False,
         progress: Callable[[int, int], None] | None = None, workers: int = 1) -> LoadReport:
    custom = services.store.query("SELECT COUNT(*) FROM resources WHERE type IN ('SearchParameter', "
                                  "'StructureDefinition') AND deleted = 0", [])[0][0]
    if custom:
        workers = 1  # run-time definitions (custom search parameters, profiles) live in this process only
    loader = Loader(services, progress, workers)
    try:
        _load_all(services, loader, paths, stdin, restart)
    finally:
        loader.close()
    return loader.report


def _load_all(services, loader: Loader, paths: Iterable[str], stdin, restart: bool) -> None:
    started = time.perf_counter()
    for item in ndjson_files(paths):
        if item == "-":
            loader.load_lines(stdin or sys.stdin.buffer, "<stdin>")
            continue
        path = item
        if path.suffix == ".json":
            load_bundle(services, path, loader.report)
            continue
        key, _ = _checkpoint_key(path)
        start, done = (0, False) if restart else _resume_point(services.store, key)
        if done:
            log.info("%s was loaded completely before; skipped (use --restart to load it again)", path)
            continue
        if start:
            log.info("%s: resuming after line %d", path, start)
        with open(path, "rb") as fp:
            loader.load_lines(fp, str(path), key, start)
    loader.refresh_statistics()
    loader.report.seconds = time.perf_counter() - started


class Progress:
    """The load's progress: a bar with the time left on a terminal (when the total is known), log lines
    elsewhere (see progress.py)."""

    def __init__(self, stream: IO[str] = sys.stderr, total: int | None = None) -> None:
        from .progress import Bar
        self.bar = Bar("loading", total, "resources", stream)

    def __call__(self, loaded: int, errors: int) -> None:
        self.bar(loaded, f", {errors:,} rejected" if errors else "")

    def close(self) -> None:
        self.bar.close()


def load_paths(settings, paths: list[str], restart: bool = False, workers: int | None = None,
               total: int | None = None) -> int:
    """`total`: the number of resources expected, when known (the progress bar's 100 %)."""
    from .api.services import Services
    from .security.storage import open_store
    store = open_store(settings.database, settings.data_dir)
    services = Services.build(store)
    from .runtime import settle_after_start
    settle_after_start()
    progress = Progress(total=total if total is not None else expected_total(paths))
    import os
    if workers is None:
        # Workers also write, and wait on the database (or its writer lock) part of the time: one more keeps
        # the cores busy (measured on PostgreSQL: 3 workers on 2 cores load ~45% faster than 2).
        workers = (os.cpu_count() or 1) + 1
    report = load(services, paths, restart=restart, progress=progress, workers=workers)
    progress.close()
    print(f"loaded {report.loaded:,} resources in {report.seconds:.1f} s ({report.rate():,.0f}/s): "
          f"{report.created:,} created, {report.updated:,} updated, {report.unchanged:,} unchanged, "
          f"{len(report.errors)} rejected", file=sys.stderr)
    store.close()
    return 1 if report.errors and not report.loaded else 0
