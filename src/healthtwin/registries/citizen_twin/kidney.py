"""Kidney function: eGFR by the CKD-EPI 2021 creatinine equation (without race), its KDIGO category and trend.

Source: L. A. Inker et al., "New creatinine- and cystatin C-based equations to estimate GFR without race",
N Engl J Med 2021;385:1737-49. eGFR = 142 x min(Scr/k, 1)^a x max(Scr/k, 1)^-1.200 x 0.9938^age
[x 1.012 if female], Scr in mg/dL, k = 0.7 (female) or 0.9 (male), a = -0.241 (female) or -0.302 (male).
Categories: KDIGO 2012 Clinical Practice Guideline for CKD (G1 >= 90 ... G5 < 15); a fall of more than
5 mL/min/1.73 m2 a year is rapid progression (KDIGO 2012, 2.1.4)."""
from __future__ import annotations

SOURCE = "Inker LA et al. N Engl J Med 2021;385:1737-49 (CKD-EPI 2021 creatinine)"
STAGES_SOURCE = "KDIGO 2012 Clinical Practice Guideline for the Evaluation and Management of CKD"
UMOL_PER_MG_DL = 88.42
RAPID_DECLINE = -5.0  # mL/min/1.73 m2 per year


def egfr(creatinine_umol: float, age: float, female: bool) -> float:
    scr = creatinine_umol / UMOL_PER_MG_DL
    k, a = (0.7, -0.241) if female else (0.9, -0.302)
    value = 142.0 * min(scr / k, 1.0) ** a * max(scr / k, 1.0) ** -1.200 * 0.9938 ** age
    return value * (1.012 if female else 1.0)


def stage(value: float) -> str:
    for limit, name in ((90, "G1"), (60, "G2"), (45, "G3a"), (30, "G3b"), (15, "G4")):
        if value >= limit:
            return name
    return "G5"


def slope_per_year(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (years, value) points; None with fewer than two distinct times."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    if sxx == 0:
        return None
    return sum((t - mx) * (v - my) for t, v in points) / sxx
