"""The same ViewDefinitions on Apache Spark, for data that outgrows one machine (optional extra `spark`).

Input is Parquet with the columns `(resource_type, id, content)`, `content` being the resource's JSON text:
`export_resources_parquet` writes it from a Bulk Data NDJSON folder (or any file DuckDB can read), and the
materializer's `parquet/<view>/` files are the per-view output on the single-machine path. Those are a base
file plus delta files merged on read (layout in `materialize.py`): `read_materialized` applies the same rule
as the DuckDB reader `materialize.parquet_relation`, so do not point `spark.read.parquet` at the folder itself.

Why the Python engine inside Spark rather than a translation to Spark SQL: the view's semantics (forEach,
unionAll, `%rowIndex`, collection rules, FHIRPath edge cases) are implemented and conformance-tested once, in
`views.py`; running that same compiled view in each partition (`mapPartitions`) gives rows identical to the
DuckDB and Python paths by construction, and Spark contributes the distribution, Parquet I/O and the SQL
over the resulting tables. Each partition compiles the view once, so the per-row cost is the engine's.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import orjson

from .views import compile_view

if TYPE_CHECKING:  # pyspark is optional: imported only when used
    from pyspark.sql import DataFrame, SparkSession


def available() -> str | None:
    """None if Spark can run here, else the reason it cannot (for skips and error messages)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install 'healthtwin[spark]')"
    import shutil
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        return "Spark needs a Java runtime (java on PATH or JAVA_HOME)"
    return None


def spark_session(master: str = "local[2]", app: str = "healthtwin-views") -> "SparkSession":
    """A local-mode session whose Python workers use this interpreter (so they import healthtwin)."""
    reason = available()
    if reason:
        raise RuntimeError(reason)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession
    builder = SparkSession.builder.master(master).appName(app)
    # Splink's similarity functions (jaro_winkler, damerau_levenshtein: a jar inside the splink package, no
    # download) go on every session, because a jar joins the classpath only when the JVM starts.
    from splink.backends.spark import similarity_jar_location
    return (builder.config("spark.jars", similarity_jar_location())
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.driver.memory", "1g")
            .getOrCreate())


def export_resources_parquet(ndjson_folder: str | Path, out: str | Path) -> Path:
    """`<out>/<Type>.parquet` with (resource_type, id, content) for each `<Type>.ndjson` of a Bulk Data folder."""
    import duckdb

    from .duckdb_views import ndjson_source
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        for path in sorted(Path(ndjson_folder).glob("*.ndjson")):
            con.execute(f"COPY (SELECT resource_type, id, CAST(content AS VARCHAR) AS content "
                        f"FROM {ndjson_source(str(path))}) TO '{out / (path.stem + '.parquet')}' (FORMAT parquet)")
    finally:
        con.close()
    return out


def _spark_type(ctype: str | None, collection: bool) -> Any:
    from pyspark.sql import types as T
    base: Any = (T.BooleanType() if ctype == "boolean"
                 else T.LongType() if ctype in ("integer", "positiveInt", "unsignedInt", "integer64")
                 else T.DoubleType() if ctype == "decimal" else T.StringType())
    return T.ArrayType(base) if collection else base


def _converter(ctype: str | None, collection: bool) -> Any:
    # Spark checks Python types strictly: a FHIR decimal 68 arrives as int and must become a float.
    if ctype == "decimal":
        one = lambda v: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v  # noqa: E731
    elif ctype in ("integer", "positiveInt", "unsignedInt", "integer64"):
        one = lambda v: int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v  # noqa: E731
    elif ctype == "boolean":
        one = lambda v: v  # noqa: E731
    else:
        one = lambda v: v if v is None or isinstance(v, str) else (  # noqa: E731
            orjson.dumps(v).decode() if isinstance(v, (dict, list)) else str(v).lower() if isinstance(v, bool) else str(v))
    if collection:
        return lambda v: [one(x) for x in v] if isinstance(v, list) else v
    return one


def _partition_rows(view: dict[str, Any]) -> Any:
    def run(rows: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
        compiled = compile_view(view)  # once per partition: closures do not pickle, the view dict does
        convert = [_converter(c.type, c.collection) for c in compiled.columns]
        for row in rows:
            for t in compiled.tuples([orjson.loads(row[0])]):
                yield tuple(f(v) for f, v in zip(convert, t))
    return run


def run_view_spark(spark: "SparkSession", view: dict[str, Any], resources: "DataFrame | str") -> "DataFrame":
    """A DataFrame of the view's rows over `resources` (a DataFrame or a Parquet path/glob)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
    compiled = compile_view(view)  # validate on the driver: errors surface before any job starts
    df = spark.read.parquet(str(resources)) if isinstance(resources, (str, Path)) else resources
    source = df.where(F.col("resource_type") == compiled.resource).select("content")
    schema = T.StructType([T.StructField(c.name, _spark_type(c.type, c.collection), True) for c in compiled.columns])
    return spark.createDataFrame(source.rdd.mapPartitions(_partition_rows(view)), schema)


def read_materialized(spark: "SparkSession", folder: str | Path) -> "DataFrame":
    """The current rows of one view materialized by `materialize.Materializer` (`<data_dir>/parquet/<view>`).

    The newest `base-<gen>.parquet` and the `delta-<gen>.parquet` files above it are read; a row survives
    unless a `D` marker for its `_rkey` has a later generation than the row's. The folder is listed on the
    driver's local file system when called (use the same rule with your own listing for remote storage)."""
    from pyspark.sql import functions as F

    from .materialize import parquet_layout
    lay = parquet_layout(folder)
    if lay.base is None:
        raise FileNotFoundError(f"no materialized view in {folder} (no base-*.parquet)")
    df = spark.read.parquet(*[str(p) for p in lay.files])
    cols = [c for c in df.columns if c not in ("_rkey", "_gen", "_op")]
    rows = df.where(F.col("_op") == "I")
    if lay.deltas:
        void = df.where(F.col("_op") == "D").groupBy("_rkey").agg(F.max("_gen").alias("_void"))
        rows = (rows.join(void, on="_rkey", how="left")
                .where(F.col("_void").isNull() | (F.col("_void") <= F.col("_gen"))))
    return rows.select(*cols)


def materialize_spark(spark: "SparkSession", views: Iterable[dict[str, Any]], resources: str | Path,
                      out: str | Path) -> dict[str, int]:
    """Writes `<out>/<view>/` Parquet for each view (Spark's layout); returns the row count of each."""
    counts = {}
    for view in views:
        df = run_view_spark(spark, view, str(resources)).cache()
        df.write.mode("overwrite").parquet(str(Path(out) / view["name"]))
        counts[view["name"]] = df.count()
        df.unpersist()
    return counts


__all__ = ["available", "spark_session", "export_resources_parquet", "run_view_spark", "materialize_spark",
           "read_materialized"]
