"""10-year cardiovascular risk: the WHO 2019 laboratory-based model (fatal and non-fatal myocardial infarction
and stroke), for people aged 40-80 without cardiovascular disease.

Source: The WHO CVD Risk Chart Working Group, "World Health Organization cardiovascular disease risk charts:
revised models to estimate risk in 21 global regions", Lancet Glob Health 2019;7:e1332-45 (appendix: log
hazard ratios of the sex-specific Cox models, derived in the Emerging Risk Factors Collaboration). The
coefficients and 10-year baseline survivals below are the paper's Model 1 as the authors publish it in their
Stata program `whocvdrisk` (S. Kaptoge, University of Cambridge, ceu.phpc.cam.ac.uk/software/erfc,
erfc_score_v03): age centred at 60 years, systolic pressure at 120 mmHg, total cholesterol at 6 mmol/L,
with age interactions. Risk = 1 - (1 - CHD risk)(1 - stroke risk).

The charts then recalibrate each sex and endpoint to a GBD region: risk_region = 1 - exp(-exp(a + b ln(-ln(1 -
risk)))). Azerbaijan is in the GBD region Central Asia. The authors distribute (a, b) only as online Stata
datasets (whocvdrisk: cal2_m1_cons_ep_chdmi, cal2_m1_slope_ep_chdmi, ..._ep_crbv), which cannot be reached
from this machine; RECALIBRATION holds instead the (a, b) recovered from the region's printed chart
(scripts/fit_who_cvd_region.py: the least-squares fit of this model to the Central Asia chart cells in
tests/registries/data/who_cvd_2019_central_asia_lab.txt, 440 of its cells, which the model then reproduces
within their rounding).

The non-laboratory model (Model 2: body mass index in place of total cholesterol, and no diabetes term; age
centred at 60, systolic pressure at 120 mmHg, BMI at 25 kg/m2) is NONLAB, from the same program of the
authors. Its own Central Asia recalibration is published only as the region's non-laboratory chart (or the
authors' cal2_m2 datasets), neither of which could be obtained on this machine: NONLAB_RECALIBRATION is empty,
and `ten_year_risk_nonlab` applies the laboratory model's region parameters instead, as a stated approximation
(the authors recalibrate both models to the same regional incidence; the answer's `recalibration` says so).
With the region's non-laboratory cells, scripts/fit_who_cvd_region.py --nonlab fits the model's own."""
from __future__ import annotations

import math
from dataclasses import dataclass

SOURCE = ("WHO CVD Risk Chart Working Group. Lancet Glob Health 2019;7:e1332-45 (laboratory-based model); "
          "coefficients as published in the authors' Stata program whocvdrisk (erfc_score_v03); Central Asia "
          "recalibration recovered from the region's published chart (whoishRisk WHO_2019_Scores.csv, CEN_ASI)")
NONLAB_SOURCE = ("WHO CVD Risk Chart Working Group. Lancet Glob Health 2019;7:e1332-45 (non-laboratory-based "
                 "model: body mass index instead of cholesterol and diabetes); coefficients as published in the "
                 "authors' Stata program whocvdrisk (erfc_score_v03, Model 2)")
REGION = "central-asia"  # GBD region of Azerbaijan (with Armenia, Georgia, Kazakhstan, Kyrgyzstan, ...)


@dataclass(frozen=True)
class Cox:
    age: float
    chol: float
    sbp: float
    diabetes: float
    smoker: float
    age_chol: float
    age_sbp: float
    age_diabetes: float
    age_smoker: float
    baseline_survival: float  # 10-year, at the centring values

    def risk(self, age: float, chol: float, sbp: float, diabetes: bool, smoker: bool) -> float:
        a, c, s = age - 60.0, chol - 6.0, sbp - 120.0
        d, k = float(diabetes), float(smoker)
        lp = (self.age * a + self.chol * c + self.sbp * s + self.diabetes * d + self.smoker * k
              + self.age_chol * a * c + self.age_sbp * a * s + self.age_diabetes * a * d + self.age_smoker * a * k)
        return 1.0 - self.baseline_survival ** math.exp(lp)


MODEL: dict[tuple[str, str], Cox] = {
    ("male", "chd"): Cox(0.0719227, 0.2284944, 0.0132183, 0.6410114, 0.5638109,
                         -0.0045806, -0.0001576, -0.0124966, -0.0182545, 0.9540108),
    ("female", "chd"): Cox(0.1020713, 0.2050377, 0.015823, 1.070358, 1.053223,
                           -0.0051932, -0.0001378, -0.0234174, -0.0332666, 0.9894159),
    ("male", "stroke"): Cox(0.0986578, 0.029526, 0.0222629, 0.6268712, 0.4981217,
                            0.00142, -0.0004147, -0.026302, -0.0150561, 0.9849257),
    ("female", "stroke"): Cox(0.1056632, 0.0257782, 0.0206278, 0.8581998, 0.7443627,
                              -0.0021387, -0.0004897, -0.0209826, -0.0200822, 0.9890569),
}
# (region, sex, endpoint) -> (a, b); absent: identity (no recalibration). Central Asia: fitted to its chart
# (scripts/fit_who_cvd_region.py, 2026-12-02: rms 0.28 / 0.29 percentage points over the 293 men's and 147
# women's transcribed cells, none more than 0.64 away: the cells' own rounding).
RECALIBRATION: dict[tuple[str, str, str], tuple[float, float]] = {
    ("central-asia", "male", "chd"): (1.7453, 1.4679), ("central-asia", "male", "stroke"): (-0.5687, 0.6711),
    ("central-asia", "female", "chd"): (1.7632, 1.2049), ("central-asia", "female", "stroke"): (-0.4289, 0.6746),
}


@dataclass(frozen=True)
class CoxNonLab:
    age: float
    bmi: float
    sbp: float
    smoker: float
    age_bmi: float
    age_sbp: float
    age_smoker: float
    baseline_survival: float  # 10-year, at the centring values

    def risk(self, age: float, bmi: float, sbp: float, smoker: bool) -> float:
        a, b, s, k = age - 60.0, bmi - 25.0, sbp - 120.0, float(smoker)
        lp = (self.age * a + self.bmi * b + self.sbp * s + self.smoker * k
              + self.age_bmi * a * b + self.age_sbp * a * s + self.age_smoker * a * k)
        return 1.0 - self.baseline_survival ** math.exp(lp)


# Model 2 (non-laboratory) as the authors publish it in whocvdrisk's erfc_score_v03 ("Non-laboratory/BMI model")
NONLAB: dict[tuple[str, str], CoxNonLab] = {
    ("male", "chd"): CoxNonLab(0.073593, 0.0337219, 0.0133937, 0.5954767,
                               -0.0010432, -0.0001837, -0.0200831, 0.9544258),
    ("female", "chd"): CoxNonLab(0.1049418, 0.0257616, 0.016726, 1.093132,
                                 -0.0006537, -0.0001966, -0.0343739, 0.9887124),
    ("male", "stroke"): CoxNonLab(0.097674, 0.0159518, 0.0227294, 0.4999862,
                                  -0.0003516, -0.0004374, -0.0153895, 0.9848260),
    ("female", "stroke"): CoxNonLab(0.1046105, 0.0036406, 0.0216741, 0.7399405,
                                    -0.0000129, -0.0005311, -0.0203997, 0.9885706),
}
# The non-laboratory model's own (a, b) per region, once fitted to its chart; absent: the laboratory model's.
NONLAB_RECALIBRATION: dict[tuple[str, str, str], tuple[float, float]] = {}
BANDS = ((0.05, "<5%"), (0.10, "5% to <10%"), (0.20, "10% to <20%"), (0.30, "20% to <30%"), (2.0, ">=30%"))


def _recalibrate(risk: float, sex: str, endpoint: str, region: str,
                 table: dict[tuple[str, str, str], tuple[float, float]] = RECALIBRATION) -> float:
    a, b = table.get((region, sex, endpoint), (0.0, 1.0))
    if (a, b) == (0.0, 1.0) or risk <= 0.0:
        return risk
    return 1.0 - math.exp(-math.exp(a + b * math.log(-math.log(1.0 - risk))))


def ten_year_risk(sex: str, age: float, chol: float, sbp: float, diabetes: bool, smoker: bool,
                  region: str = REGION) -> float:
    chd = _recalibrate(MODEL[(sex, "chd")].risk(age, chol, sbp, diabetes, smoker), sex, "chd", region)
    stroke = _recalibrate(MODEL[(sex, "stroke")].risk(age, chol, sbp, diabetes, smoker), sex, "stroke", region)
    return 1.0 - (1.0 - chd) * (1.0 - stroke)


def nonlab_recalibration(region: str = REGION) -> dict[tuple[str, str, str], tuple[float, float]]:
    """The (a, b) the non-laboratory model is recalibrated with: its own for the region, else the laboratory
    model's (nonlab_calibration says which)."""
    own = {k: v for k, v in NONLAB_RECALIBRATION.items() if k[0] == region}
    return own or RECALIBRATION


def nonlab_calibration(region: str = REGION) -> str:
    """'own' (fitted to the region's non-laboratory chart), 'laboratory' (the laboratory model's region
    parameters, the approximation) or 'none'."""
    if any(k[0] == region for k in NONLAB_RECALIBRATION):
        return "own"
    return "laboratory" if calibrated(region) else "none"


def ten_year_risk_nonlab(sex: str, age: float, bmi: float, sbp: float, smoker: bool, region: str = REGION) -> float:
    table = nonlab_recalibration(region)
    chd = _recalibrate(NONLAB[(sex, "chd")].risk(age, bmi, sbp, smoker), sex, "chd", region, table)
    stroke = _recalibrate(NONLAB[(sex, "stroke")].risk(age, bmi, sbp, smoker), sex, "stroke", region, table)
    return 1.0 - (1.0 - chd) * (1.0 - stroke)


def band(risk: float) -> str:
    return next(label for limit, label in BANDS if risk < limit)


def calibrated(region: str = REGION) -> bool:
    return any(key[0] == region for key in RECALIBRATION)


# The values a chart cell is computed at: the middle of each band (the charts' cells, Lancet Glob Health 2019)
CHART_AGE = {"40-44": 42.5, "45-49": 47.5, "50-54": 52.5, "55-59": 57.5, "60-64": 62.5, "65-69": 67.5, "70-74": 72.5}
CHART_SBP = (190.0, 170.0, 150.0, 130.0, 110.0)  # the bands >=180, 160-179, 140-159, 120-139, <120 mmHg
CHART_CHOL = {"<4": 3.5, "4-4.9": 4.5, "5-5.9": 5.5, "6-6.9": 6.5, ">=7": 7.5}


@dataclass(frozen=True)
class ChartCell:
    sex: str
    diabetes: bool
    smoker: bool
    age: float
    chol: float
    sbp: float
    percent: int


def chart_cells(text: str) -> list[ChartCell]:
    """A chart transcribed one row a line: `sex diabetes smoker cholesterol-band age-band` and the five
    systolic bands' cells (`.` where the transcription has none); `#` starts a comment."""
    cells = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        sex, dm, smoker, chol, age, *values = line.split()
        for sbp, value in zip(CHART_SBP, values, strict=True):
            if value != ".":
                cells.append(ChartCell(sex, dm == "1", smoker == "1", CHART_AGE[age], CHART_CHOL[chol], sbp,
                                       int(value)))
    return cells


# The non-laboratory chart's BMI bands (kg/m2), at their middles as for cholesterol (open bands half a band out)
CHART_BMI = {"<20": 17.5, "20-24": 22.5, "25-29": 27.5, "30-35": 32.5, ">=35": 37.5}


def nonlab_chart_cells(text: str) -> list[ChartCell]:
    """A non-laboratory chart transcribed one row a line: `sex smoker bmi-band age-band` and the five systolic
    bands' cells (`.` where there is none); the cell's `chol` holds the BMI, `diabetes` is False."""
    cells = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        sex, smoker, bmi, age, *values = line.split()
        for sbp, value in zip(CHART_SBP, values, strict=True):
            if value != ".":
                cells.append(ChartCell(sex, False, smoker == "1", CHART_AGE[age], CHART_BMI[bmi], sbp, int(value)))
    return cells
