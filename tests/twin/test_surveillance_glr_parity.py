"""The GLR detectors (Poisson GLR, NB GLR, NB LR CUSUM) reproduce R surveillance 1.20.3's statistic,
cases-to-alarm and alarms on every reference file, given the in-control means and alpha the reference
recorded (the corpus README: the detector itself is what is compared)."""
from __future__ import annotations

import pytest

from tests.twin.surveillance_corpus import check_parity, sidecars


@pytest.mark.parametrize("sidecar", sidecars("glr_"))
def test_reference_file(sidecar, tmp_path):
    check_parity(sidecar, tmp_path)
