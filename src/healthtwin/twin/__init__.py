"""The population's twin: time series from the record, outbreak detection, forecasting and crisis
scenarios. docs/twin.md."""
