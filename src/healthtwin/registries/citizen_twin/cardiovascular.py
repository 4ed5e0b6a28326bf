"""10-year cardiovascular risk: the WHO 2019 laboratory-based model (fatal and non-fatal myocardial infarction
and stroke), for people aged 40-80 without cardiovascular disease.

Source: The WHO CVD Risk Chart Working Group, "World Health Organization cardiovascular disease risk charts:
revised models to estimate risk in 21 global regions", Lancet Glob Health 2019;7:e1332-45 (appendix: log
hazard ratios of the sex-specific Cox models, derived in the Emerging Risk Factors Collaboration). The
coefficients and 10-year baseline survivals below are the paper's Model 1 as the authors publish it in their
Stata program `whocvdrisk` (S. Kaptoge, University of Cambridge, ceu.phpc.cam.ac.uk/software/erfc,
erfc_score_v03): age centred at 60 years, systolic pressure at 120 mmHg, total cholesterol at 6 mmol/L,
with age interactions. Risk = 1 - (1 - CHD risk)(1 - stroke risk).

The charts then recalibrate each sex and endpoint to a GBD region: risk_cal = 1 - exp(-exp(a + b ln(-ln(1 -
risk)))). Azerbaijan is in the GBD region Central Asia; its (a, b) are distributed only as the authors'
online Stata datasets, which could not be obtained on this machine, so RECALIBRATION holds the identity and
every answer says `recalibration: none (uncalibrated ERFC model)`. Filling RECALIBRATION["central-asia"] from
`whocvdrisk` (cal2_m1_cons_ep_chdmi, cal2_m1_slope_ep_chdmi, ..._ep_crbv by sex) makes the figure the
chart's."""
from __future__ import annotations

import math
from dataclasses import dataclass

SOURCE = ("WHO CVD Risk Chart Working Group. Lancet Glob Health 2019;7:e1332-45 (laboratory-based model); "
          "coefficients as published in the authors' Stata program whocvdrisk (erfc_score_v03)")
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
# (region, sex, endpoint) -> (a, b); absent: identity (no recalibration)
RECALIBRATION: dict[tuple[str, str, str], tuple[float, float]] = {}
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
