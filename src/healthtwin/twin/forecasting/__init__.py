"""Forecasts of weekly counts as the 23 FluSight quantiles: component models, their quantile-averaging
ensemble, the FluSight flat baseline, the hub's data and CSV format, and the weighted interval score.
docs/twin.md, "Forecasting"."""
