"""The registries that act: immunization (CDSi evaluation and forecasting), prescribing and dispensing,
laboratory orders and results, and the patient summary with the citizen's twin. docs/registries.md."""
