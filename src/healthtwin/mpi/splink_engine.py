"""The batch deduplication: model.py's Fellegi–Sunter model run by Splink 4 on DuckDB.

m probabilities are estimated by expectation maximisation on blocked pairs, u probabilities by random
sampling, the prior from the pairs that share a FIN (a FIN is written on most records and never by two
citizens). Splink then scores every pair the blocking rules produce; pairs whose evidence (weight minus prior) reaches
`model.POSSIBLE` come back as a DuckDB table (`Dedup.pairs`) with `unique_id_l`, `unique_id_r`, `match_weight` and the
compared fields. The same model runs on Spark (spark_engine.py): `train` is shared, and a saved model moves
between the engines with `for_dialect`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from . import model

log = logging.getLogger("healthtwin.mpi")


def _comparison(comp: model.Comparison) -> Any:
    import splink.comparison_library as cl
    first = comp.columns[0]
    levels: list[dict[str, Any]] = [{"sql_condition": f"{first}_l IS NULL OR {first}_r IS NULL",
                                     "label_for_charts": "missing", "is_null_level": True}]
    levels += [{"sql_condition": lv.sql, "label_for_charts": lv.label} for lv in comp.levels]
    levels.append({"sql_condition": "ELSE", "label_for_charts": "different"})
    return cl.CustomComparison(output_column_name=comp.name, comparison_levels=levels)


def settings() -> Any:
    from splink import SettingsCreator, block_on
    return SettingsCreator(
        link_type="dedupe_only", unique_id_column_name="unique_id",
        comparisons=[_comparison(c) for c in model.COMPARISONS],
        blocking_rules_to_generate_predictions=[block_on(*cols) for cols in model.BLOCKING_RULES],
        retain_matching_columns=True, retain_intermediate_calculation_columns=False,
    )


@dataclass
class Dedup:
    pairs: str  # the DuckDB table of scored pairs
    weights: model.Weights
    seconds: dict[str, float] = field(default_factory=dict)
    linker: Any = None


def weights_of(model_json: dict[str, Any]) -> model.Weights:
    """model.Weights from Splink's saved model: log2(m/u) per non-null level, in model.py's order."""
    prior = model_json["probability_two_random_records_match"]
    levels: dict[str, list[float]] = {}
    for comp in model_json["comparisons"]:
        ws = []
        for lv in comp["comparison_levels"]:
            if lv.get("is_null_level"):
                continue
            ws.append(model.bayes(lv.get("m_probability") or 1e-9, lv.get("u_probability") or 1e-9))
        levels[comp["output_column_name"]] = ws
    import math
    return model.Weights(math.log2(prior / (1 - prior)), levels)


def dedupe(con: Any, table: str, *, u_pairs: float = 1e6, em: bool = True, fin_recall: float = 0.6) -> Dedup:
    """Trains the model on `table` (features.FIELDS columns, in the DuckDB connection `con`) and scores its
    blocked pairs. `fin_recall`: the share of true duplicate pairs that share a FIN (the prior's estimate)."""
    from splink import DuckDBAPI, Linker
    logging.getLogger("splink").setLevel(logging.WARNING)
    linker = Linker(table, settings(), DuckDBAPI(connection=con))
    seconds = train(linker, u_pairs=u_pairs, em=em, fin_recall=fin_recall)
    t = time.perf_counter()
    weights = weights_of(linker.misc.save_model_to_json())
    predicted = linker.inference.predict(threshold_match_weight=weights.prior + model.POSSIBLE)
    seconds["predict"] = time.perf_counter() - t
    return Dedup(predicted.physical_name, weights, seconds, linker)


def train(linker: Any, *, u_pairs: float = 1e6, em: bool = True, fin_recall: float = 0.6) -> dict[str, float]:
    """Estimates the prior, u and m of `linker`'s model in place (any Splink backend); returns the seconds taken."""
    from splink import block_on
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    linker.training.estimate_probability_two_random_records_match([block_on("fin")], recall=fin_recall)
    linker.training.estimate_u_using_random_sampling(max_pairs=u_pairs, seed=1)
    seconds["u"] = time.perf_counter() - t
    if em:
        t = time.perf_counter()
        # Each session fixes the comparisons of the fields it blocks on and estimates the others; the three
        # together estimate every comparison, on blocks that stay small at national scale.
        for rule in (("birth", "family_stem"), ("given_key", "family_stem", "father_key"), ("birth", "given_key")):
            linker.training.estimate_parameters_using_expectation_maximisation(block_on(*rule))
        seconds["em"] = time.perf_counter() - t
    return seconds


# model.py writes its SQL for DuckDB; these are the other engines' names for the same functions.
_FUNCTIONS = {"spark": {"jaro_winkler_similarity(": "jaro_winkler("},
              "duckdb": {"jaro_winkler(": "jaro_winkler_similarity("}}


def for_dialect(model_json: dict[str, Any], dialect: str) -> dict[str, Any]:
    """A saved Splink model (trained weights included) with its SQL rewritten for another engine's dialect."""
    import copy
    out = copy.deepcopy(model_json)
    # The blocking rules keep their own dialect ("duckdb"): Splink translates them (quoting differs by engine).
    out["sql_dialect"] = dialect
    for comp in out["comparisons"]:
        for level in comp["comparison_levels"]:
            for old, new in _FUNCTIONS.get(dialect, {}).items():
                level["sql_condition"] = level["sql_condition"].replace(old, new)
    return out
