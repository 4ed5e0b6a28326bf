"""E-prescription and dispensing: the MedicationRequest and MedicationDispense state machines, the dispense-once
rule (a prescription's remaining quantity and repeats kept by the database), and the CDS Hooks service that checks
an order at prescribing (duplicate therapy, allergies, dose limits). docs/registries.md describes the workflow."""
