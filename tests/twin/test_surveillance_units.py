"""Behaviour of the detectors and the command outside the reference files: bad input is a clear
error, the legacy Farrington date lookup reports missing reference weeks, outbreaks raise alarms."""
from __future__ import annotations

import json

import numpy as np
import pytest

from healthtwin.cli import main
from healthtwin.twin.surveillance import cusum, ears, farrington, reference_io
from tests.conftest import corpus


def _series_csv(path, counts):
    lines = ["idx,epoch,date,year,epochInYear,freq,observed"]
    lines += [f"{i + 1},{i + 1},NA,2020,{i % 52 + 1},52,{c}" for i, c in enumerate(counts)]
    path.write_text("\n".join(lines) + "\n")


def test_unknown_method_is_a_clear_error(tmp_path, capsys):
    _series_csv(tmp_path / "in.csv", [3] * 30)
    (tmp_path / "s.json").write_text(json.dumps({"function_call": "bogus(sts)", "control": {}}))
    rc = main(["surveillance", "run", "--control", str(tmp_path / "s.json"), "--input", str(tmp_path / "in.csv"),
               "--out", str(tmp_path / "out.csv")])
    assert rc == 2
    assert "unknown surveillance method" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()


def test_range_outside_the_series_is_refused(tmp_path, capsys):
    _series_csv(tmp_path / "in.csv", [3] * 30)
    side = {"function_call": "algo.cusum(sts2disProg(sts), control)", "control": {"k": 1.04, "h": 2.26},
            "range": {"first": 20, "last": 40}}
    (tmp_path / "s.json").write_text(json.dumps(side))
    rc = main(["surveillance", "run", "--control", str(tmp_path / "s.json"), "--input", str(tmp_path / "in.csv"),
               "--out", str(tmp_path / "out.csv")])
    assert rc == 2 and "outside the series" in capsys.readouterr().err


def test_a_step_raises_ears_and_cusum_alarms():
    rng = np.random.default_rng(1)
    counts = rng.poisson(10, 120).astype(float)
    counts[100:106] += 25
    c1 = ears.ears(counts, "C1", alpha=0.001)
    flagged = set(c1.range[c1.alarm == 1].tolist())
    assert flagged & set(range(101, 107))
    cs = cusum.cusum(counts, np.arange(80, 121))
    assert cs.alarm[cs.range == 102][0] == 1
    assert not cs.alarm[cs.range < 100].any()


def test_legacy_farrington_warns_of_missing_reference_weeks():
    side = corpus("surveillance-reference", "salmNewportGermany", "farrington_legacy_alpha0.01.json")
    meta = reference_io.read_sidecar(side)
    series = reference_io.read_input(side.parent / "input.csv")
    r = farrington.farrington(series.observed, reference_io.sidecar_range(meta), series.freq, series.epoch,
                              alpha=0.01)
    assert sorted(set(r.warnings)) == sorted(meta["warnings"]["unique"])


def test_missing_corpus_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        reference_io.read_sidecar(tmp_path / "absent.json")
