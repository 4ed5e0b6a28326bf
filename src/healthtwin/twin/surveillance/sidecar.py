"""Run the method a corpus sidecar names, with its control and range, and produce its output columns.

The sidecar's ``function_call`` picks the method (earsC, algo.farrington, farringtonFlexible,
algo.cusum, algo.glrnb), ``control`` the settings, ``range`` the monitored rows and ``training`` the
rows before them. For GLR the in-control means come from the GLM coefficients and the alpha the
sidecar records (``mu0_model_coefficients``, ``alpha_used``), so the detector itself is what is
compared; ``refit=True`` fits them from the training rows instead (statsmodels' negative binomial).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import cusum as cusum_mod
from . import ears as ears_mod
from . import farrington as farr_mod
from . import farrington_flexible as flex_mod
from . import glr as glr_mod
from .reference_io import Series, sidecar_range

Columns = dict[str, np.ndarray]
LOGICAL = {"alarm", "trend"}


def method_of(meta: dict[str, Any]) -> str:
    call = str(meta.get("function_call", ""))
    for prefix, name in (("earsC", "ears"), ("algo.farrington", "farrington"),
                         ("farringtonFlexible", "farringtonFlexible"), ("algo.cusum", "cusum"),
                         ("cusum", "cusum"), ("algo.glrnb", "glrnb"), ("glrnb", "glrnb")):
        if call.startswith(prefix):
            return name
    raise ValueError(f"unknown surveillance method in function_call {call!r}")


def run(meta: dict[str, Any], series: Series, refit: bool = False) -> Columns:
    method = method_of(meta)
    ctrl = meta["control"]
    rng = sidecar_range(meta)
    obs = series.observed
    if rng is not None and (rng[0] < 1 or rng[-1] > series.n):
        raise ValueError(f"range {rng[0]}..{rng[-1]} lies outside the series (1..{series.n})")
    if method == "ears":
        r = ears_mod.ears(obs, method=ctrl.get("method", "C1"), baseline=int(ctrl.get("baseline", 7)),
                          min_sigma=float(ctrl.get("minSigma", 0)), alpha=ctrl.get("alpha"), range_=rng)
        return {"idx": r.range, "observed": obs[r.range - 1], "upperbound": r.upperbound, "alarm": r.alarm}
    if rng is None:
        raise ValueError("the sidecar has no range")
    if method == "cusum":
        m = ctrl.get("m")
        m = None if (m is None or str(m).startswith("NULL")) else m
        r = cusum_mod.cusum(obs, rng, k=float(ctrl.get("k", 1.04)), h=float(ctrl.get("h", 2.26)), m=m,
                            trans=ctrl.get("trans", "standard"), freq=series.freq, start_epoch=series.start[1])
        return {"idx": rng, "observed": obs[rng - 1], "m": r.m, "cusum": r.cusum, "upperbound": r.upperbound,
                "alarm": r.alarm}
    if method == "farrington":
        r = farr_mod.farrington(obs, rng, series.freq, series.epoch if series.epoch_as_date else None,
                                b=int(ctrl.get("b", 5)), w=int(ctrl.get("w", 3)),
                                reweight=bool(ctrl.get("reweight", True)), alpha=float(ctrl.get("alpha", 0.05)),
                                trend=bool(ctrl.get("trend", True)), limit54=tuple(ctrl.get("limit54", (5, 4))),
                                powertrans=str(ctrl.get("powertrans", "2/3")))
        return {"idx": rng, "observed": obs[rng - 1], "expected": r.expected, "upperbound": r.upperbound,
                "alarm": r.alarm, "trend": r.trend, "pnorm_transformed": r.pnorm}
    if method == "farringtonFlexible":
        r = flex_mod.farrington_flexible(obs, rng, series.freq, series.epoch if series.epoch_as_date else None,
                                         flex_mod.FlexibleControl.from_r(ctrl))
        return {"idx": rng, "observed": obs[rng - 1], "expected": r.expected, "upperbound": r.upperbound,
                "alarm": r.alarm, "score": r.score, "pvalue": r.pvalue, "mu0Vector": r.mu0_vector,
                "phi": r.phi, "trend": r.trend, "trendCoef": r.trend_coef}
    # GLR
    mu0_ctrl = ctrl.get("mu0") or {}
    if refit or "mu0_model_coefficients" not in meta:
        mu0, alpha = glr_mod_fit(obs, rng, series.freq, mu0_ctrl, ctrl)
    else:
        mu0 = glr_mod.mu0_from_coefficients(meta["mu0_model_coefficients"], rng, series.freq)
        alpha = float(ctrl["alpha_used"])
    theta = ctrl.get("theta")
    common = dict(alpha=alpha, c_arl=float(ctrl.get("c.ARL", 5)), theta=None if theta is None else float(theta),
                  direction=ctrl.get("dir", "inc"), x_max=float(ctrl.get("xMax", 1e4)),
                  mtilde=int(ctrl.get("Mtilde", 1)), m_window=int(ctrl.get("M", -1)))
    r = glr_mod.glrnb(obs, rng, mu0, **common)  # type: ignore[arg-type]
    return {"idx": rng, "observed": obs[rng - 1], "mu0": mu0, "glr_value": r.value, "cases_upperbound": r.cases,
            "alarm": r.alarm}


def glr_mod_fit(obs: np.ndarray, rng: np.ndarray, freq: int, mu0_ctrl: dict[str, Any], ctrl: dict[str, Any]
                ) -> tuple[np.ndarray, float]:
    from .glr_fit import fit_mu0
    given = ctrl.get("alpha_given")
    alpha = None if (given is None or isinstance(given, str)) else float(given)
    return fit_mu0(obs, rng, freq, S=int(mu0_ctrl.get("S", 1)), trend=bool(mu0_ctrl.get("trend", False)),
                   alpha=alpha)
