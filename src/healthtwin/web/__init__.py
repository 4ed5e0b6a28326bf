"""The faces of the twin: the ministry dashboard, the citizen portal and the clinician view, served as
pages that read through the same FHIR API and access rules as any client. docs/web.md."""
