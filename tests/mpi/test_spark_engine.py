"""The deduplication on Spark (local mode) finds the pairs DuckDB finds, with the same match weights, on a small
dirty population: one model trained once on DuckDB, scored by both engines."""
from __future__ import annotations

import datetime as dt

import pytest

from healthtwin.analytics import spark as hspark

reason = hspark.available()
pytestmark = pytest.mark.skipif(reason is not None, reason=f"Spark tests skipped: {reason}")


@pytest.fixture(scope="module")
def session():
    s = hspark.spark_session("local[2]", app="healthtwin-mpi")
    yield s
    s.stop()


def _population():
    from healthtwin.mpi import features
    from healthtwin.population.generator import generate_stream
    truth: dict = {}
    records = [features.of_patient(p) for _t, p in generate_stream(
        3000, 3, end_date=dt.date(2024, 12, 31), events=set(), ground_truth=truth, dirty=True, patients_only=True)]
    dups = truth["mpi_duplicates"]
    citizen = {r["unique_id"]: dups[r["unique_id"]]["of"] if r["unique_id"] in dups else r["unique_id"]
               for r in records}
    return records, citizen


def _accuracy(links: set[tuple[str, str]], citizen: dict[str, str]) -> tuple[float, float]:
    members: dict[str, int] = {}
    for c in citizen.values():
        members[c] = members.get(c, 0) + 1
    true_pairs = sum(n * (n - 1) // 2 for n in members.values())
    right = sum(1 for l, r in links if citizen[l] == citizen[r])
    return right / len(links), right / true_pairs


def test_spark_scores_the_pairs_duckdb_scores(session):
    import duckdb
    import pandas as pd

    from healthtwin.mpi import features, model, splink_engine, spark_engine
    records, citizen = _population()
    con = duckdb.connect()
    con.register("frame", pd.DataFrame(records, columns=list(features.FIELDS)).astype(object))
    con.execute("CREATE TABLE records AS SELECT * FROM frame")
    duck = splink_engine.dedupe(con, "records", u_pairs=2e5)
    trained = duck.linker.misc.save_model_to_json()
    cols = "unique_id_l, unique_id_r, match_weight, fin_l, fin_r"
    duck_pairs = {(l, r): (w, fl is not None and fl == fr) for l, r, w, fl, fr in
                  con.execute(f"SELECT {cols} FROM {duck.pairs}").fetchall()}

    spark = spark_engine.dedupe_spark(session, spark_engine.records_frame(session, records), model_json=trained)
    assert spark.weights == duck.weights
    spark_pairs = {(r[0], r[1]): (r[2], r[3] is not None and r[3] == r[4]) for r in
                   spark.pairs.select(*[c.strip() for c in cols.split(",")]).collect()}

    assert len(duck_pairs) > 200  # the population has duplicates for the test to find
    assert set(spark_pairs) == set(duck_pairs)
    for pair, (weight, _) in duck_pairs.items():
        assert spark_pairs[pair][0] == pytest.approx(weight, abs=1e-6), pair

    def auto_links(pairs: dict) -> set:
        return {p for p, (w, same_fin) in pairs.items() if w - duck.weights.prior >= model.AUTO_LINK or same_fin}
    duck_links, spark_links = auto_links(duck_pairs), auto_links(spark_pairs)
    assert spark_links == duck_links
    precision, recall = _accuracy(duck_links, citizen)
    assert (precision, recall) == _accuracy(spark_links, citizen)
    # The links are the model's, not noise: the index's targets hold here too.
    assert precision >= 0.99 and recall >= 0.9, (precision, recall)


def test_cli_dedupe_on_spark_gives_the_duckdb_pairs(tmp_path, session, capsys):
    """`healthtwin mpi dedupe --engine spark --model` (the model a DuckDB run saved) writes the same pairs."""
    import csv
    import json

    from healthtwin.cli import main
    from healthtwin.population.generator import generate_stream
    patients = tmp_path / "Patient.ndjson"
    with patients.open("w") as f:
        for _t, p in generate_stream(400, 5, end_date=dt.date(2024, 12, 31), events=set(), ground_truth={},
                                     dirty=True, patients_only=True):
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    saved = tmp_path / "model.json"
    assert main(["mpi", "dedupe", str(patients), "--model-out", str(saved), "--out", str(tmp_path / "duck.csv")]) == 0
    assert main(["mpi", "dedupe", str(patients), "--engine", "spark", "--model", str(saved),
                 "--out", str(tmp_path / "spark.csv")]) == 0
    assert "spark: " in capsys.readouterr().err

    def pairs(name: str) -> dict:
        with (tmp_path / name).open() as f:
            return {(r["left"], r["right"]): (float(r["match_weight"]), r["grade"]) for r in csv.DictReader(f)}
    duck, spark = pairs("duck.csv"), pairs("spark.csv")
    assert duck and spark == duck
    assert any(grade == "certain" for _w, grade in duck.values())
    assert session.range(1).count() == 1  # the CLI left the session it did not start running

