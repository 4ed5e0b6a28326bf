"""Type 2 diabetes risk: the Finnish Diabetes Risk Score (FINDRISC) from the items the record holds.

Source: J. Lindström, J. Tuomilehto, "The Diabetes Risk Score: a practical tool to predict type 2 diabetes
risk", Diabetes Care 2003;26:725-31 (the 8-item score, 0-26 points, with the 10-year risk of its bands). The
record holds age, BMI, antihypertensive treatment and raised glucose; waist, physical activity, diet and
family history are not recorded, so the answer is the partial score of the items known, the points the
unknown items could add, and the band range that follows (named "FINDRISC, partial")."""
from __future__ import annotations

SOURCE = "Lindström J, Tuomilehto J. Diabetes Care 2003;26:725-31 (FINDRISC)"
UNKNOWN_ITEMS = {"waist circumference": 4, "physical activity": 2, "daily vegetables and fruit": 1,
                 "family history of diabetes": 5}
# upper bound of the band (inclusive) -> (band, estimated 10-year risk)
BANDS = ((6, "low", "about 1 in 100"), (11, "slightly elevated", "about 1 in 25"), (14, "moderate", "about 1 in 6"),
         (20, "high", "about 1 in 3"), (26, "very high", "about 1 in 2"))
RAISED_GLUCOSE_MMOL = 6.1  # fasting glucose, WHO 2006: impaired fasting glucose from 6.1 mmol/L
RAISED_HBA1C = 6.0  # %, the upper limit of normal the FINDRISC studies' "high blood glucose" history is read as


def age_points(age: float) -> int:
    return 0 if age < 45 else 2 if age < 55 else 3 if age < 65 else 4


def bmi_points(bmi: float) -> int:
    return 0 if bmi < 25 else 1 if bmi <= 30 else 3


def band(score: int) -> tuple[str, str]:
    for limit, name, risk in BANDS:
        if score <= limit:
            return name, risk
    return BANDS[-1][1], BANDS[-1][2]
