"""EARS, CUSUM and the Farrington family reproduce R surveillance 1.20.3 on every reference file:
upper bounds, expected values and every other column within a relative difference of 1e-6, alarms and
trend flags identical."""
from __future__ import annotations

import pytest

from tests.twin.surveillance_corpus import check_parity, sidecars


@pytest.mark.parametrize("sidecar", sidecars("earsC_", "cusum_", "farrington"))
def test_reference_file(sidecar, tmp_path):
    check_parity(sidecar, tmp_path)
