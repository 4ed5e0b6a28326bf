"""Running a recorded scenario: read the record's data, simulate, store the results; and reproducing one.

`execute` is what the job queue runs (web.py) and what `run_now` calls in-process (tests, the command line).
Progress is written into the run record as the run advances, so `GET /analytics/scenarios/{id}` shows it.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any, Callable

import duckdb

from .agent import available, run_agents
from .record_data import gather
from .records import RunStore, code_version
from .run import check, simulate

log = logging.getLogger("healthtwin.twin")


def results_of(inputs: dict[str, Any], data: dict[str, Any], progress: Callable[[float], None] | None = None
               ) -> dict[str, Any]:
    """The results of checked inputs on the record's data: the SEIR projection, and the agent-based run
    when asked (a pure function of its arguments: the agents' randomness is fixed by inputs['seed'])."""
    out = simulate(inputs, data, progress)
    if inputs["model"] == "agent":
        why = available()
        if why is not None:
            raise RuntimeError(why)
        p = out["parameters"]
        out["agent"] = run_agents(inputs, data, p["r0"], p["seed_infections"], p["rho"],
                                  (lambda f: progress(0.8 + 0.19 * f)) if progress else None)
    return out


def execute(runs: RunStore, record: dict[str, Any], connect: Callable[[], duckdb.DuckDBPyConnection]) -> dict[str, Any]:
    t0 = time.perf_counter()
    last = [0.0]

    def progress(fraction: float) -> None:
        if time.perf_counter() - last[0] > 0.5:  # at most two writes a second
            last[0] = time.perf_counter()
            record["progress"] = round(fraction, 3)
            runs.save(record)

    try:
        record["status"] = "running"
        runs.save(record)
        inputs = record["inputs"]
        as_of = dt.date.fromisoformat(inputs["as_of"]) if inputs.get("as_of") else None
        con = connect()
        record["analytics_watermarks"] = watermarks(con) or record.get("analytics_watermarks") or {}
        record["data"] = gather(con, inputs["syndrome"], as_of, inputs["calibration_weeks"] or 4)
        progress(0.02)
        record["results"] = results_of(inputs, record["data"], progress)
        record["status"], record["progress"] = "completed", 1.0
    except Exception as exc:
        log.exception("scenario run %s failed", record["id"])
        record["status"], record["error"] = "failed", str(exc)
    record["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    record["seconds"] = round(time.perf_counter() - t0, 3)
    runs.save(record)
    return record


def watermarks(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The analytics views' watermarks the run's data is read at (what its Provenance names)."""
    cur = con.cursor()
    try:
        rows = cur.execute("SELECT name, watermark FROM _ht_view_state ORDER BY name").fetchall()
    except duckdb.Error:  # no refresh state (a test's bare database)
        return {}
    finally:
        cur.close()
    return {name: (w.isoformat() if isinstance(w, (dt.date, dt.datetime)) else w) for name, w in rows}


def run_now(runs: RunStore, inputs: dict[str, Any], con: duckdb.DuckDBPyConnection,
            caller: str | None = None) -> dict[str, Any]:
    """Check, record and run a scenario in this thread."""
    record = runs.new(check(inputs), caller, {})
    return execute(runs, record, lambda: con)


def reproduce(record: dict[str, Any]) -> dict[str, Any]:
    """The results recomputed from a run record alone (its inputs and data). Refused if the code changed."""
    if record["code"] != code_version():
        raise ValueError(f"the run was made by {record['code']}, this is {code_version()}")
    return results_of(check(record["inputs"]), record["data"])


__all__ = ["execute", "reproduce", "results_of", "run_now"]
