"""The statsforecast components on Spark: the same model objects, fitted per series on a cluster.

`models.StatsForecastModel.forecast` hands statsforecast a pandas long table (`unique_id, ds, y`) and fits
every series in the process. Given a Spark DataFrame of that table instead, statsforecast's own fugue
backend (`statsforecast.distributed.fugue.FugueBackend`, chosen by `StatsForecast.forecast` when `df` is not
pandas) partitions it by `unique_id` and fits each series on an executor; the result is a Spark DataFrame
with the same columns. `forecast_on_spark` builds that table exactly as the in-process path does (the
model's scale, the same gap filling and window), runs the model object `model.make()` gives, and reads the
same 23 quantiles back, so a forecast is the in-process one computed elsewhere (tests/twin/
test_forecast_spark.py checks they are equal in local mode, to the float32 the fugue backend's output
schema declares for forecast columns: a relative difference of about 1e-7).

`OnSpark(model, spark)` is that model as an ensemble component (same name, same `forecast(panel, steps)`), and
`spark_models(spark)` the ensemble's default components with each statsforecast one on Spark: pass them to
`ensemble.forecast(panel, steps, models)` or `twin_series.forecast_weekly(series, models=...)` and the
ensemble, its weights and its widening run unchanged.

What it distributes: the per-series components (theta, ETS, ARIMA), whose cost grows with the number of
series. The growth regressions are one fit per panel (a syndrome across every place), small at any national
size; on a cluster they stay on the driver. Needs `pip install 'healthtwin[spark]'` (pyspark and
fugue[spark]) and a Java runtime; `analytics.spark.available()` says why not when they are missing.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import ensemble
from .levels import tidy
from .models import INTERVALS, Panel, Quantiles, StatsForecastModel, filled

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession


def long_table(model: StatsForecastModel, panel: Panel) -> pd.DataFrame:
    """`unique_id, ds, y` on the model's scale: what the in-process path hands statsforecast."""
    frames = []
    for key, values in panel.items():
        y = filled(values)
        if model.window:
            y = y[-model.window:]
        frames.append(pd.DataFrame({"unique_id": str(key), "ds": np.arange(len(y), dtype=np.int64),
                                    "y": model.scale.forward(y).astype(float)}))
    if not frames:
        return pd.DataFrame({"unique_id": pd.Series(dtype=str), "ds": pd.Series(dtype=np.int64),
                             "y": pd.Series(dtype=float)})
    return pd.concat(frames, ignore_index=True)


def spark_frame(spark: "SparkSession", table: pd.DataFrame) -> "DataFrame":
    """The long table as a Spark DataFrame (typed explicitly: an empty or all-integer column infers badly)."""
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType
    schema = StructType([StructField("unique_id", StringType(), False), StructField("ds", LongType(), False),
                         StructField("y", DoubleType(), False)])
    rows = [(str(u), int(d), float(v)) for u, d, v in table[["unique_id", "ds", "y"]].itertuples(index=False)]
    return spark.createDataFrame(rows, schema=schema)


def quantiles_of(model: StatsForecastModel, out: pd.DataFrame) -> Quantiles:
    """statsforecast's point forecast and interval columns as the 23 FluSight quantiles, back on counts."""
    column = [c for c in out.columns if c not in ("unique_id", "ds") and "-lo-" not in c and "-hi-" not in c][0]
    lows = [f"{column}-lo-{w}" for w in INTERVALS]
    highs = [f"{column}-hi-{w}" for w in reversed(INTERVALS)]
    result: Quantiles = {}
    for key, rows in out.sort_values(["unique_id", "ds"]).groupby("unique_id", sort=False):
        z = rows[lows + [column] + highs].to_numpy(dtype=float)
        result[str(key)] = tidy(model.scale.back(z))
    return result


def forecast_on_spark(model: StatsForecastModel, panel: Panel, steps: int, spark: "SparkSession",
                      partitions: int | None = None) -> Quantiles:
    """`model.forecast(panel, steps)`, with the fits run by Spark's executors (one task per partition of
    series; `partitions` defaults to Spark's default parallelism)."""
    from statsforecast import StatsForecast
    table = long_table(model, panel)
    if table.empty:
        return {}
    frame = spark_frame(spark, table)
    if partitions:
        frame = frame.repartition(partitions, "unique_id")
    engine = StatsForecast(models=[model.make()], freq=1, n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on short or flat series, as in process
        result: Any = engine.forecast(df=frame, h=steps, level=INTERVALS)
    return quantiles_of(model, result.toPandas())


class OnSpark:
    """A statsforecast component whose per-series fits run on Spark; to the ensemble it is the same model."""

    def __init__(self, model: StatsForecastModel, spark: "SparkSession", partitions: int | None = None) -> None:
        self.model, self.spark, self.partitions = model, spark, partitions
        self.name = model.name

    def forecast(self, panel: Panel, steps: int) -> Quantiles:
        return forecast_on_spark(self.model, panel, steps, self.spark, self.partitions)


def spark_models(spark: "SparkSession", partitions: int | None = None) -> list[ensemble.Model]:
    """The ensemble's default components, each statsforecast model handed to Spark, the others as they are."""
    return [OnSpark(m, spark, partitions) if isinstance(m, StatsForecastModel) else m
            for m in ensemble.default_models()]
