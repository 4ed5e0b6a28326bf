"""Crisis scenarios: an age-structured regional SEIR model calibrated to the twin's series, interventions,
CHIME-style hospital demand against the hospitals' beds, an agent-based option (Starsim), and run records
that reproduce every figure. docs/twin.md, "Scenarios"."""
