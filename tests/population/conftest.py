"""A small generated population shared by the population tests (generated once per session)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import pytest

from healthtwin.population import generate

SMALL_N = 600
SMALL_SEED = 3


@pytest.fixture(scope="session")
def small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pop-small")
    generate(out, SMALL_N, SMALL_SEED, start_year=2019, end_date=dt.date(2024, 12, 31))
    return out


@pytest.fixture(scope="session")
def small_resources(small_dir: Path) -> dict[str, list[dict]]:
    """resourceType -> resources, read back from the NDJSON files."""
    out: dict[str, list[dict]] = {}
    for f in sorted(small_dir.glob("*.ndjson")):
        out[f.stem] = [orjson.loads(line) for line in f.read_bytes().splitlines()]
    return out
