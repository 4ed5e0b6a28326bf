"""The immunization registry: a CDC CDSi (Logic Specification 4.x) evaluator and forecaster driven by
committed rule files (schedules/: CDC 4.64, WHO, Azerbaijan's calendar), its FHIR operations and the live
ImmunizationRecommendation it keeps (docs/registries.md, "Immunization")."""
