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

Only the laboratory-based model is here: the charts' non-laboratory model (body mass index in place of
cholesterol and diabetes) needs its own log hazard ratios and baseline survivals (the paper's appendix,
table 1.6, model 2) and its own Central Asia recalibration or chart, none of which could be obtained on
this machine, so without a total cholesterol no figure is given."""
from __future__ import annotations

import math
from dataclasses import dataclass

SOURCE = ("WHO CVD Risk Chart Working Group. Lancet Glob Health 2019;7:e1332-45 (laboratory-based model); "
          "coefficients as published in the authors' Stata program whocvdrisk (erfc_score_v03); Central Asia "
          "recalibration recovered from the region's published chart (whoishRisk WHO_2019_Scores.csv, CEN_ASI)")
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
BANDS = ((0.05, "<5%"), (0.10, "5% to <10%"), (0.20, "10% to <20%"), (0.30, "20% to <30%"), (2.0, ">=30%"))


def _recalibrate(risk: float, sex: str, endpoint: str, region: str) -> float:
    a, b = RECALIBRATION.get((region, sex, endpoint), (0.0, 1.0))
    if (a, b) == (0.0, 1.0) or risk <= 0.0:
        return risk
    return 1.0 - math.exp(-math.exp(a + b * math.log(-math.log(1.0 - risk))))


def ten_year_risk(sex: str, age: float, chol: float, sbp: float, diabetes: bool, smoker: bool,
                  region: str = REGION) -> float:
    chd = _recalibrate(MODEL[(sex, "chd")].risk(age, chol, sbp, diabetes, smoker), sex, "chd", region)
    stroke = _recalibrate(MODEL[(sex, "stroke")].risk(age, chol, sbp, diabetes, smoker), sex, "stroke", region)
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
