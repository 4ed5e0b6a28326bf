"""The surveillance-reference files, listed at collection time for parametrised parity tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import corpora_dir

ROOT = corpora_dir() / "surveillance-reference"


def sidecars(*prefixes: str) -> list:
    found = sorted(p for p in ROOT.glob("*/*.json") if p.name != "input.json" and p.name.startswith(prefixes))
    if not found:
        return [pytest.param(None, marks=pytest.mark.skip(
            reason=f"corpus {ROOT} is absent (set HEALTHTWIN_CORPORA to the shared corpora folder)"))]
    return [pytest.param(p, id=f"{p.parent.name}/{p.stem}") for p in found]


def check_parity(sidecar_path: Path, tmp_path: Path) -> None:
    """Run the sidecar through the CLI entry point and compare with the reference CSV row by row."""
    from healthtwin.cli import main
    from healthtwin.twin.surveillance import reference_io as rio

    out = tmp_path / "out.csv"
    rc = main(["surveillance", "run", "--control", str(sidecar_path),
               "--input", str(sidecar_path.parent / "input.csv"), "--out", str(out)])
    assert rc == 0
    result = rio.compare(rio.read_output(out), rio.read_output(sidecar_path.with_suffix(".csv")), rtol=1e-6)
    bad = {k: v for k, v in result["columns"].items() if v.get("bad_rows") or v.get("missing") or "length" in v}
    assert result["ok"], f"{sidecar_path.parent.name}/{sidecar_path.stem}: {bad}"
