"""Every import points down: the layers of docs/architecture.md, as import-linter contracts in pyproject.toml."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import healthtwin

ROOT = Path(__file__).resolve().parent.parent


def test_every_import_points_down(tmp_path):
    # The package checked is the one under test, not another copy on the path
    assert Path(healthtwin.__file__).resolve().parent == ROOT / "src" / "healthtwin"
    # In its own process: import-linter configures logging in the process it runs in (it disabled the loggers
    # of modules already imported, which broke tests of log output that ran after it in the same worker)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    run = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                          "lint_imports_command()", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_package_is_in_a_layer():
    """A new package (registries, twin, mpi...) is placed in the layers before it lands, or it escapes the check."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    named = {name.strip(" ()") for contract in config["contracts"] if contract["type"] == "layers"
             for layer in contract["layers"] for name in layer.replace(":", "|").split("|")}
    package = ROOT / "src" / "healthtwin"
    present = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    present |= {p.parent.name for p in package.glob("*/__init__.py")}
    assert present - named == set()
