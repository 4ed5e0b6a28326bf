"""`healthtwin forecast flusight` end to end on one reference date of the corpus."""
from __future__ import annotations

import numpy as np
import pandas as pd

from healthtwin.cli import main

from ..conftest import corpus


LOCATIONS = ["06", "25", "36", "48", "50", "72", "US"]  # large, small, Puerto Rico and the total: a fast sample


def test_one_reference_date_of_the_corpus(tmp_path, capsys):
    folder = corpus("flusight")
    vintages = next(folder.glob("target-hospital-admissions_vintages_*.csv*"))
    rows = pd.read_csv(vintages, dtype={"location": str})
    data = tmp_path / "data"
    data.mkdir()
    rows[rows["location"].isin(LOCATIONS)].to_csv(data / vintages.name.replace(".gz", ""), index=False)
    out = tmp_path / "2024-01-06-healthtwin.csv"
    assert main(["forecast", "flusight", "--data", str(data), "--reference-date", "2024-01-06",
                 "--out", str(out)]) == 0
    assert "vintage of 2024-01-03" in capsys.readouterr().err
    frame = pd.read_csv(out, dtype={"location": str})
    assert sorted(frame["location"].unique()) == LOCATIONS
    assert len(frame) == len(LOCATIONS) * 4 * 23
    assert set(frame["reference_date"]) == {"2024-01-06"}
    for _, rows in frame.groupby(["location", "horizon"]):
        values = rows.sort_values("output_type_id")["value"].to_numpy()
        assert np.all(np.diff(values) >= 0) and values[0] >= 0


def test_bad_arguments_are_clear_errors(tmp_path, capsys):
    folder = corpus("flusight")
    assert main(["forecast", "flusight", "--data", str(folder), "--reference-date", "2024-01-05",
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert "is a Friday" in capsys.readouterr().err
    assert main(["forecast", "flusight", "--data", str(folder), "--reference-date", "2020-01-04",
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert "no vintage" in capsys.readouterr().err
    assert main(["forecast", "flusight", "--data", str(tmp_path), "--reference-date", "2024-01-06",
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert "holds neither" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()
