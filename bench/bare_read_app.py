"""The floor for read-by-id: a bare Starlette handler returning the same stored bytes from the same database.

Used by bench_read.py; run as `uvicorn bench.bare_read_app:app` with HEALTHTWIN_DATA_DIR / HEALTHTWIN_DATABASE.
"""
from __future__ import annotations

import os
import sqlite3
import threading

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

DATABASE = os.environ.get("HEALTHTWIN_DATABASE")
_local = threading.local()

if DATABASE:
    from psycopg_pool import ConnectionPool
    from starlette.concurrency import run_in_threadpool
    pool = ConnectionPool(DATABASE, min_size=2, max_size=16, kwargs={"autocommit": True, "prepare_threshold": 1})

    def fetch(rtype: str, rid: str):
        with pool.connection() as conn:
            return conn.execute("SELECT content FROM resources WHERE type = %s AND id = %s", (rtype, rid)).fetchone()
else:
    path = os.path.join(os.environ.get("HEALTHTWIN_DATA_DIR", "./data"), "healthtwin.sqlite")

    def fetch(rtype: str, rid: str):
        conn = getattr(_local, "conn", None)
        if conn is None:
            conn = _local.conn = sqlite3.connect(path, check_same_thread=False)
        return conn.execute("SELECT content FROM resources WHERE type = ? AND id = ?", (rtype, rid)).fetchone()


async def read(request):
    args = (request.path_params["type"], request.path_params["id"])
    row = await run_in_threadpool(fetch, *args) if DATABASE else fetch(*args)
    if row is None:
        return Response(b"", status_code=404)
    return Response(bytes(row[0]), media_type="application/fhir+json")


app = Starlette(routes=[Route("/fhir/{type}/{id}", read)])
