"""The batch deduplication on Apache Spark: the same Splink model as splink_engine.py (same comparisons, blocking
rules and training steps), run by Splink's Spark backend, for a record set that outgrows one machine.

Two uses. Given a saved model (`Linker.misc.save_model_to_json()` of a DuckDB run, or a file written by
`healthtwin mpi dedupe --model-out`), Spark only scores the blocked pairs with those trained weights, and the
pairs are those DuckDB finds with the same weights (tests/mpi/test_spark_engine.py). Without one, Spark trains
the model with the same steps (`splink_engine.train`); u is then estimated on a different random sample than
DuckDB's, so the weights agree only to sampling error.

The session is analytics/spark.py's (local mode, this interpreter for the Python workers), which also puts
Splink's similarity functions (a jar inside the splink package, `jaro_winkler`, `damerau_levenshtein`) on the
classpath; model.py's SQL is written for DuckDB and `splink_engine.for_dialect` renames its functions.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from . import features, model
from .splink_engine import for_dialect, settings, train, weights_of

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


@dataclass
class SparkDedup:
    pairs: "DataFrame"  # scored pairs: unique_id_l, unique_id_r, match_weight and the compared fields
    weights: model.Weights
    model_json: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def records_frame(spark: "SparkSession", records: Iterable[dict[str, Any]]) -> "DataFrame":
    """A Spark DataFrame of comparison records (features.of_patient), every column a string (a column that is
    empty in a small sample would otherwise have no type)."""
    from pyspark.sql import types as T
    schema = T.StructType([T.StructField(f, T.StringType(), True) for f in features.FIELDS])
    return spark.createDataFrame([tuple(r.get(f) for f in features.FIELDS) for r in records], schema)


def dedupe_spark(spark: "SparkSession", records: "DataFrame", *, model_json: dict[str, Any] | None = None,
                 u_pairs: float = 1e6, em: bool = True, fin_recall: float = 0.6) -> SparkDedup:
    """Scores the blocked pairs of `records` (features.FIELDS columns) on Spark with a trained model, or trains
    one first (same steps as the DuckDB engine) when `model_json` is None."""
    from splink import Linker, SparkAPI
    logging.getLogger("splink").setLevel(logging.WARNING)
    seconds: dict[str, float] = {}
    # "persist" keeps intermediate tables in memory: "checkpoint", the default, needs a checkpoint folder
    api = SparkAPI(spark_session=spark, break_lineage_method="persist", num_partitions_on_repartition=4)
    if model_json is None:
        linker = Linker(records, for_dialect(settings().create_settings_dict("duckdb"), "spark"), api)
        seconds = train(linker, u_pairs=u_pairs, em=em, fin_recall=fin_recall)
        model_json = linker.misc.save_model_to_json()
    else:
        linker = Linker(records, for_dialect(model_json, "spark"), api)
    weights = weights_of(model_json)
    t = time.perf_counter()
    predicted = linker.inference.predict(threshold_match_weight=weights.prior + model.POSSIBLE)
    pairs = predicted.as_spark_dataframe()
    seconds["predict"] = time.perf_counter() - t
    return SparkDedup(pairs, weights, model_json, seconds)
