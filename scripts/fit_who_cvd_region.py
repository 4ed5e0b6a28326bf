"""Recovers a GBD region's recalibration of the WHO 2019 laboratory-based CVD model from its printed chart.

The WHO charts recalibrate the sex- and endpoint-specific models to each region:
risk_region = 1 - exp(-exp(a + b ln(-ln(1 - risk)))), with (a, b) for coronary heart disease and for stroke,
by sex (Lancet Glob Health 2019;7:e1332-45, appendix figure 1.3). The authors distribute (a, b) only as online
Stata datasets (whocvdrisk's cal2_m1_cons_ep_chdmi, cal2_m1_slope_ep_chdmi, ..._ep_crbv), which this machine
cannot reach; the region's chart cells are published. Each cell is the combined risk at the middle of its
bands (age 42.5, 47.5 ... 72.5; systolic 110, 130, 150, 170, 190 mmHg; total cholesterol 3.5 ... 7.5 mmol/L),
so (a, b) per sex and endpoint are the least-squares fit of the model to the cells of people without diabetes
(four parameters per sex against 147 to 350 cells); the diabetic cells are left out of the fit, for the tests
to check the result on cells it never saw.

    python scripts/fit_who_cvd_region.py [tests/registries/data/who_cvd_2019_central_asia_lab.txt]
    python scripts/fit_who_cvd_region.py --nonlab FILE      # a non-laboratory chart (cardiovascular.nonlab_chart_cells)

prints the parameters (pasted into registries/citizen_twin/cardiovascular.py, RECALIBRATION, or for --nonlab
NONLAB_RECALIBRATION) and how far the recalibrated model is from every cell. The region's non-laboratory chart
was not available on this machine on 2026-12-02, so NONLAB_RECALIBRATION is still empty."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from healthtwin.registries.citizen_twin.cardiovascular import MODEL, NONLAB, chart_cells, nonlab_chart_cells  # noqa: E402


def model_risk(nonlab: bool):
    """The uncalibrated model's risk of a cell, per sex and endpoint."""
    if nonlab:
        return lambda c, sex, end: NONLAB[(sex, end)].risk(c.age, c.chol, c.sbp, c.smoker)  # chol holds the BMI
    return lambda c, sex, end: MODEL[(sex, end)].risk(c.age, c.chol, c.sbp, c.diabetes, c.smoker)


def fit(cells: list, sex: str, nonlab: bool = False) -> tuple[list[float], np.ndarray]:
    mine = [c for c in cells if c.sex == sex and not c.diabetes]  # the diabetic cells are left to check it
    risk = model_risk(nonlab)

    def predicted(p: np.ndarray) -> np.ndarray:
        out = []
        for c in mine:
            chd, stroke = (1.0 - math.exp(-math.exp(a + b * math.log(-math.log(1.0 - risk(c, sex, end)))))
                           for end, (a, b) in (("chd", p[:2]), ("stroke", p[2:])))
            out.append(100.0 * (1.0 - (1.0 - chd) * (1.0 - stroke)))
        return np.array(out)

    observed = np.array([c.percent for c in mine])
    found = least_squares(lambda p: predicted(p) - observed, [0.0, 1.0, 0.0, 1.0])
    return list(found.x), predicted(found.x) - observed


def main() -> None:
    args = sys.argv[1:]
    nonlab = args[:1] == ["--nonlab"]
    if nonlab and len(args) < 2:
        sys.exit("--nonlab takes the file of the region's non-laboratory chart")
    path = Path(args[-1]) if args[nonlab:] else ROOT / "tests/registries/data/who_cvd_2019_central_asia_lab.txt"
    cells = (nonlab_chart_cells if nonlab else chart_cells)(path.read_text())
    for sex in ("male", "female"):
        (a_chd, b_chd, a_str, b_str), residual = fit(cells, sex, nonlab)
        print(f'("{sex}", "chd"): ({a_chd:.4f}, {b_chd:.4f}), ("{sex}", "stroke"): ({a_str:.4f}, {b_str:.4f})  '
              f"cells {len(residual)}, rms {np.sqrt(np.mean(residual ** 2)):.2f}, max {np.max(np.abs(residual)):.2f} "
              "percentage points")


if __name__ == "__main__":
    main()
