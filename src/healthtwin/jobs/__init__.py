"""The platform's scheduled jobs: a table of jobs with their cadence and a record of every run in the FHIR
store, the catalogue of what runs (catalogue.py), `healthtwin jobs` (cli.py) and the server's in-process tick
(server.py). docs/architecture.md, "Scheduled jobs"."""
