"""The surveillance-reference corpus formats: the input series, the sidecar JSON and the output CSVs.

input.csv has ``idx, epoch, date, year, epochInYear, freq, observed``; numbers are written with 17
significant digits, missing values as ``NA`` and logical values as 0/1. The input.json beside it holds
the series' start (year, period), which the CUSUM GLM needs.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Series:
    observed: np.ndarray  # float, nan where missing
    epoch: np.ndarray  # days since 1970-01-01 when epoch_as_date, else 1..n
    freq: int
    epoch_as_date: bool
    start: tuple[int, int]

    @property
    def n(self) -> int:
        return len(self.observed)


def _num(text: str) -> float:
    return float("nan") if text in ("NA", "NaN", "") else float(text)


def read_input(path: Path, start: tuple[int, int] | None = None) -> Series:
    """Read an input.csv; the start comes from the input.json beside it unless given."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise ValueError(f"cannot read input series {path}: {exc.strerror}") from exc
    needed = {"idx", "epoch", "date", "freq", "observed"}
    if not rows or not needed <= set(rows[0]):
        raise ValueError(f"{path} is not a surveillance input series (needs columns {sorted(needed)})")
    try:
        observed = np.array([_num(r["observed"]) for r in rows])
        epoch = np.array([_num(r["epoch"]) for r in rows])
        freq = int(float(rows[0]["freq"]))
    except ValueError as exc:
        raise ValueError(f"{path}: unreadable number ({exc})") from exc
    as_date = rows[0]["date"] not in ("NA", "")
    if start is None:
        meta = path.with_suffix(".json")
        if meta.exists():
            start = tuple(json.loads(meta.read_text())["start"])  # type: ignore[assignment]
        else:
            start = (int(float(rows[0].get("year", 1) or 1)), 1)
    return Series(observed=observed, epoch=epoch, freq=freq, epoch_as_date=as_date, start=start)  # type: ignore[arg-type]


def read_sidecar(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read sidecar {path}: {exc}") from exc
    if not isinstance(meta, dict) or "function_call" not in meta or "control" not in meta:
        raise ValueError(f"{path} is not a surveillance sidecar (needs 'function_call' and 'control')")
    return meta


def sidecar_range(meta: dict[str, Any]) -> np.ndarray | None:
    r = meta.get("range")
    if not r:
        return None
    return np.arange(int(r["first"]), int(r["last"]) + 1)


def fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NA"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return f"{float(value):.17g}"


def write_output(path: Path, columns: dict[str, np.ndarray], logical: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    names = list(columns)
    n = len(next(iter(columns.values())))
    with open(path, "w", newline="") as fh:
        fh.write(",".join(names) + "\n")
        for i in range(n):
            cells = []
            for name in names:
                v = float(columns[name][i])
                if name in logical and not math.isnan(v):
                    cells.append(str(int(v != 0)))
                elif name == "idx" or (name == "observed" and not math.isnan(v)):
                    cells.append(str(int(v)))
                else:
                    cells.append(fmt(v))
            fh.write(",".join(cells) + "\n")


def read_output(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {name: np.array([_num(r[name]) for r in rows]) for name in (rows[0] if rows else {})}


def compare(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray], rtol: float = 1e-6,
            exact: set[str] = frozenset({"alarm", "trend"})) -> dict[str, Any]:  # type: ignore[assignment]
    """Row-by-row comparison: worst relative difference per column and the rows that break it."""
    out: dict[str, Any] = {"rows": len(next(iter(ref.values()))), "columns": {}, "ok": True}
    for name, want in ref.items():
        if name not in ours:
            out["columns"][name] = {"missing": True}
            out["ok"] = False
            continue
        got = ours[name]
        if len(got) != len(want):
            out["columns"][name] = {"length": [len(got), len(want)]}
            out["ok"] = False
            continue
        both_nan = np.isnan(got) & np.isnan(want)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(both_nan, 0.0, np.abs(got - want) / np.maximum(np.abs(want), 1e-300))
            rel = np.where((got == want), 0.0, rel)
        rel = np.where(np.isnan(rel), np.inf, rel)
        bad = rel > (0 if name in exact else rtol)
        out["columns"][name] = {"max_rel": float(rel.max()) if len(rel) else 0.0, "bad_rows": int(bad.sum())}
        if bad.any():
            out["ok"] = False
            out["columns"][name]["first_bad"] = int(np.argmax(bad))
    return out
